"""The events contract: what is accepted, and the reason for everything that is not."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.wire import schema
from stream.wire.schema import Invalid

GOOD = {"user_id": "u42", "item_id": "i7", "type": "click", "ts": 1700000000.5}


def test_a_contract_event_becomes_an_interaction():
    event = schema.validate_event({**GOOD, "event_id": "e1", "value": 2.0, "rec_id": "r", "context": {}})
    assert (event.user_id, event.item_id, event.type, event.ts, event.value, event.event_id) == \
        ("u42", "i7", "click", 1700000000.5, 2.0, "e1")


def test_integer_ids_are_accepted_as_strings_and_iso_timestamps_as_epoch_seconds():
    event = schema.validate_event({"user_id": 42, "item_id": 7, "type": "view", "ts": "2023-11-14T22:13:20Z"})
    assert (event.user_id, event.item_id, event.ts) == ("42", "7", 1700000000.0)


@pytest.mark.parametrize("change, reason", [
    ({"user_id": None}, "missing_field"),
    ({"item_id": ["i7"]}, "wrong_type"),
    ({"user_id": True}, "wrong_type"),
    ({"user_id": ""}, "wrong_type"),
    ({"user_id": "x" * 300}, "wrong_type"),
    ({"type": "teleport"}, "unknown_type"),
    ({"type": 3}, "wrong_type"),
    ({"ts": float("nan")}, "invalid_ts"),
    ({"ts": float("inf")}, "invalid_ts"),
    ({"ts": "yesterday"}, "invalid_ts"),
    ({"ts": [1]}, "invalid_ts"),
    ({"value": float("nan")}, "invalid_value"),
    ({"value": "1"}, "invalid_value"),
    ({"context": "x"}, "wrong_type"),
    ({"event_id": 1.5}, "wrong_type"),
])
def test_each_broken_field_has_its_reason(change, reason):
    obj = {**GOOD, **change}
    obj = {k: v for k, v in obj.items() if v is not None}
    with pytest.raises(Invalid) as caught:
        schema.validate_event(obj)
    assert caught.value.reason == reason


def test_missing_ts_and_type_are_missing_fields():
    for field in ("ts", "type"):
        with pytest.raises(Invalid) as caught:
            schema.validate_event({k: v for k, v in GOOD.items() if k != field})
        assert caught.value.reason == "missing_field"


def test_nan_literals_are_parsed_so_the_reason_names_the_field():
    payload = schema.decode_json(b'{"user_id": "u", "item_id": "i", "type": "click", "ts": NaN}')
    assert math.isnan(payload["ts"])


@pytest.mark.parametrize("raw, reason", [(b"\xff\xfe", "not_utf8"), (b"{not json", "not_json"), (b"[1,", "not_json")])
def test_undecodable_bytes(raw, reason):
    with pytest.raises(Invalid) as caught:
        schema.decode_json(raw)
    assert caught.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                        max_size=4),
                    max_leaves=12))
def test_any_json_value_is_either_an_event_or_invalid_never_a_crash(value):
    try:
        event = schema.validate_event(value)
    except Invalid as bad:
        assert bad.reason in schema.DLQ_REASONS
    else:
        assert event.user_id and event.item_id and math.isfinite(event.ts)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=30), st.lists(st.tuples(st.text(min_size=1, max_size=10),
                                                           st.floats(allow_nan=False, allow_infinity=False)),
                                                 max_size=10))
def test_recommendation_lists_round_trip_as_json(user_id, items):
    raw = schema.recommendation(rec_id="r1", user_id=user_id, items=items, k=10, request_id=None, event=None,
                                source_ts=None, now=1.0, model_version="v")
    decoded = json.loads(raw)
    assert decoded["user_id"] == user_id
    assert [entry["item_id"] for entry in decoded["items"]] == [item for item, _ in items]
    assert set(decoded) >= {"rec_id", "request_id", "user_id", "items", "k", "strategy", "arm", "model_version",
                            "event_ts", "ts"}


def test_a_dead_letter_keeps_undecodable_bytes_as_base64():
    letter = json.loads(schema.dead_letter(raw=b"\xff\x00", reason="not_utf8", detail="d", topic="events",
                                           partition=3, offset=17, now=1.0))
    assert (letter["reason"], letter["partition"], letter["offset"], letter["original_encoding"]) == \
        ("not_utf8", 3, 17, "base64")
