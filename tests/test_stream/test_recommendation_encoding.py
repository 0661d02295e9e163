"""A list on the wire is the contract's JSON object, byte for byte, however it is built.

``schema.recommendation`` encodes from structs (one list per event is the worker's hot path);
the reference is the plain way: a dict with the contract's keys, in the contract's order.
"""
from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from online.base import Interaction
from stream.wire import schema

ids = st.text(min_size=1, max_size=12)
scores = st.floats(allow_nan=True, allow_infinity=True)
maybe_ts = st.none() | st.floats(min_value=0, max_value=2e9)


def as_dict(*, rec_id, user_id, items, k, request_id, event, source_ts, now, model_version, strategy, arm,
            received_ts) -> bytes:
    return msgspec.json.encode({
        "rec_id": rec_id, "request_id": request_id, "user_id": user_id,
        "items": [{"item_id": item, "score": score} for item, score in items],
        "k": k, "strategy": strategy, "arm": arm, "model_version": model_version,
        "event_ts": event.ts if event is not None else None,
        "event_id": event.event_id if event is not None else None,
        "source_ts": source_ts, "received_ts": received_ts, "ts": now,
    })


@given(rec_id=ids, user_id=ids, items=st.lists(st.tuples(ids, scores), max_size=12), k=st.integers(1, 100),
       request_id=st.none() | ids, event=st.none() | st.builds(Interaction, ids, ids, st.floats(0, 2e9),
                                                             event_id=st.none() | ids),
       source_ts=maybe_ts, now=st.floats(0, 2e9), model_version=ids, strategy=ids, arm=ids, received_ts=maybe_ts)
def test_a_list_encodes_as_the_contracts_json_object(**fields):
    assert schema.recommendation(**fields) == as_dict(**fields)


@pytest.mark.parametrize("score", [0.1 + 0.2, 1e-7, 12345.678, -0.0, math.inf, math.nan])
def test_scores_and_timestamps_read_back_as_they_were(score):
    raw = schema.recommendation(rec_id="r-1", user_id="u", items=[("a", score), ("b", 0.5)], k=2, request_id=None,
                                event=Interaction("u", "a", 1_700_000_000.25, event_id="e-9"), source_ts=None,
                                now=1_700_000_000.5, model_version="online", strategy="popularity+next_item")
    back = schema.decode_recommendation(raw)
    assert list(back) == ["rec_id", "request_id", "user_id", "items", "k", "strategy", "arm", "model_version",
                          "event_ts", "event_id", "source_ts", "received_ts", "ts"]
    first = back["items"][0]["score"]
    assert first == score or (first is None and not math.isfinite(score))  # JSON has no inf/NaN: null
    assert (back["event_ts"], back["event_id"], back["ts"]) == (1_700_000_000.25, "e-9", 1_700_000_000.5)
