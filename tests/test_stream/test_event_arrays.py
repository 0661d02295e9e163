"""A JSON array of events valid throughout is read in one typed pass (``schema.validate_event_array``); it must
give exactly what reading it element by element gives (``decode_json`` + ``validate_event``), and it must
give up (``None``, so that each bad element gets its own reason) on anything that path would not accept whole.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.wire import schema

LIMIT, MAX_EVENTS = 16_384, 10_000
GOOD = {"user_id": "u42", "item_id": "i7", "type": "click", "ts": 1700000000.5}


def element_by_element(raw: bytes, max_event_bytes: int = LIMIT) -> list | None:
    """The per-element path's events, or None when it would send anything to the DLQ."""
    try:
        payload = schema.decode_json(raw)
    except schema.Invalid:
        return None
    if not isinstance(payload, list) or not payload or len(payload) > MAX_EVENTS:
        return None
    events = []
    for obj in payload:
        try:
            if len(raw) > max_event_bytes and schema.encoded_size(obj) > max_event_bytes:
                return None
            events.append(schema.validate_event(obj))
        except schema.Invalid:
            return None
    return events


def agree(raw: bytes, max_event_bytes: int = LIMIT) -> list | None:
    fast = schema.validate_event_array(raw, max_event_bytes, MAX_EVENTS)
    slow = element_by_element(raw, max_event_bytes)
    assert fast is None or fast == slow, (raw[:300], fast, slow)
    return fast


def test_a_valid_array_is_read_in_one_pass_with_every_field_as_the_element_path_reads_it():
    events = [GOOD, {**GOOD, "user_id": 42, "item_id": 7, "ts": "2023-11-14T22:13:20Z"},
              {**GOOD, "value": 3, "event_id": 99, "rec_id": "r1", "context": {"page": "home"}, "extra": [1]},
              {**GOOD, "user_id": "ünïcode", "item_id": "日本", "type": "rating", "value": 4.5, "ts": 17}]
    read = agree(json.dumps(events).encode())
    assert read is not None and [e.user_id for e in read] == ["u42", "42", "u42", "ünïcode"]
    assert read[1].ts == 1700000000.0 and read[2].event_id == "99" and read[3].value == 4.5


@pytest.mark.parametrize("bad", [
    {**GOOD, "user_id": ""}, {**GOOD, "user_id": None}, {**GOOD, "user_id": True}, {**GOOD, "item_id": "i" * 257},
    {**GOOD, "user_id": 10**300}, {**GOOD, "type": "dance"}, {**GOOD, "type": 3}, {**GOOD, "ts": True},
    {**GOOD, "ts": "yesterday"}, {**GOOD, "ts": None}, {**GOOD, "value": None}, {**GOOD, "value": "1"},
    {**GOOD, "value": False}, {**GOOD, "rec_id": 5}, {**GOOD, "rec_id": ""}, {**GOOD, "context": []},
    {**GOOD, "event_id": ""}, {"user_id": "u", "item_id": "i", "type": "view"}, "an event?", [GOOD],
])
def test_an_array_with_one_bad_element_is_left_to_the_element_path(bad):
    assert agree(json.dumps([GOOD, bad, GOOD]).encode()) is None


@pytest.mark.parametrize("raw", [
    b"[]", b"[" + b",".join([json.dumps(GOOD).encode()] * (MAX_EVENTS + 1)) + b"]",
    b'[{"user_id":"\\ud800","item_id":"i","type":"view","ts":1}]',  # a lone surrogate
    b'[{"user_id":"u","item_id":"i","type":"view","ts":NaN}]', b'[{"user_id":"u"', b"\xff[",
    b'[{"user_id":"u","item_id":"i","type":"view","ts":1e999}]',
])
def test_arrays_the_element_path_refuses_are_left_to_it(raw):
    assert agree(raw) is None


def test_a_repeated_key_is_read_as_the_element_path_reads_it_the_last_one_wins():
    read = agree(b'[{"user_id":"u1","item_id":"i","type":"view","ts":1,"user_id":"u2"}]')
    assert read is not None and read[0].user_id == "u2"


def test_an_element_near_the_size_limit_is_measured_by_the_element_path():
    # a message over the per-event limit, one element whose numbers grow when re-encoded (9e15 ->
    # 9000000000000000.0): the typed pass must not judge its size itself
    padding = {**GOOD, "context": {"xs": [9e15] * 700}}
    raw = json.dumps([GOOD, padding] * 3).encode().replace(b"9000000000000000.0", b"9e15")
    assert len(raw) > 4_000
    assert agree(raw, max_event_bytes=len(raw) // 2) is None
    small = json.dumps([GOOD] * 40).encode()  # over a small limit, every element far below it
    assert agree(small, max_event_bytes=len(small) - 1) is not None
    # large elements that could be over the limit but are not: measured, and still read in one pass
    large = json.dumps([{**GOOD, "context": {"note": "x" * 3_000}}] * 6).encode()
    assert agree(large, max_event_bytes=4_000) is not None
    assert agree(large, max_event_bytes=2_000) is None  # (each element is ~3,100 bytes: over this one)


ids = st.one_of(st.text(min_size=0, max_size=6), st.integers(-10**3, 10**3), st.none(), st.booleans())
elements = st.fixed_dictionaries(
    {"user_id": ids, "item_id": ids,
     "type": st.sampled_from(["view", "click", "rating", "skip", "dance", ""]),
     "ts": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**12),
                     st.sampled_from(["2023-11-14T22:13:20Z", "soon", " 17 "]), st.booleans())},
    optional={"value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(), st.none()),
              "event_id": ids, "rec_id": ids, "context": st.one_of(st.none(), st.dictionaries(st.text(max_size=3),
                                                                                           st.integers()))})


@settings(max_examples=300, deadline=None)
@given(st.lists(elements, min_size=1, max_size=8))
def test_the_typed_pass_never_reads_an_array_otherwise_than_the_element_path(array):
    agree(json.dumps(array).encode())
