"""What the Python API's producer puts on the wire: the ``events`` contract, every field kept."""
from __future__ import annotations

import json

from online.base import Interaction
from stream.settings import Settings
from stream.wire import schema
from stream.wire.messages import RawMessage
from stream.wire.schema import event_payload
from stream.worker.processor import EventProcessor


def test_an_interaction_keeps_every_field_the_event_schema_accepts():
    event = Interaction("u42", "i7", 1700000000.5, "purchase", 2.5, event_id="e-1", rec_id="rec-9")
    assert set(Interaction._fields) <= set(event_payload(event))
    assert schema.validate_event(json.loads(schema.encode(event_payload(event)))) == event


def test_optional_fields_an_interaction_leaves_empty_stay_off_the_wire():
    assert event_payload(Interaction("u42", "i7", 1.0)) == {
        "user_id": "u42", "item_id": "i7", "type": "click", "ts": 1.0, "value": 1.0}


def test_a_mapping_passes_through_unchanged_context_included():
    event = {"user_id": "u42", "item_id": "i7", "type": "click", "ts": 1.0, "rec_id": "r", "context": {"page": 2}}
    assert event_payload(event) == event


def test_an_event_published_through_the_python_api_can_answer_a_served_list():
    processor = EventProcessor(Settings.of(tuner=True, tuner_feedback="bandit"), clock=lambda: 2000.0)

    def send(events, offset):
        raw = schema.encode([event_payload(e) for e in events])
        return processor.process_events([RawMessage(raw, b"u1", "events", 0, offset, 1000.0)])

    first = send([Interaction("u1", f"i{n}", float(n)) for n in range(6)]
                 + [Interaction("u2", f"i{n}", 10.0 + n) for n in range(3)], 0)
    listing = {json.loads(o.value)["user_id"]: json.loads(o.value) for o in first.recommendations}["u2"]
    send([Interaction("u2", listing["items"][0]["item_id"], 20.0, rec_id=listing["rec_id"])], 1)
    assert (processor.feedback_matched, processor.feedback_unknown) == (1, 0)
