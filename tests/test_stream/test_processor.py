"""A worker's micro-batch, without a broker: learn, push lists, dead-letter bad input."""
from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from stream.settings import Settings
from stream.wire.messages import RawMessage
from stream.worker.metrics import WorkerMetrics
from stream.worker.processor import EventProcessor
from stream.worker.progress import TopicPartition
from tests.test_online.helpers import EncoderVersion


def _msg(value, offset=0, partition=0):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return RawMessage(raw, b"k", "events", partition, offset, 1000.0)


def _event(user, item, ts=1.0, **extra):
    return {"user_id": user, "item_id": item, "type": "click", "ts": ts, **extra}


def make(**changes):
    registry = CollectorRegistry()
    return EventProcessor(Settings.of(**changes), metrics=WorkerMetrics.create(registry), clock=lambda: 2000.0), registry


def test_single_events_and_arrays_are_both_learned_and_each_user_gets_one_fresh_list():
    processor, _ = make()
    result = processor.process_events([
        _msg(_event("u1", "a", event_id="e1")),
        _msg([_event("u2", "a"), _event("u2", "b"), _event("u1", "b", event_id="e3")]),
    ])
    assert result.events == 4 and not result.dead_letters
    lists = {json.loads(o.value)["user_id"]: json.loads(o.value) for o in result.recommendations}
    assert set(lists) == {"u1", "u2"}
    assert lists["u1"]["event_id"] == "e3"  # the list reflects the user's latest event
    assert lists["u1"]["source_ts"] == 1000.0
    for listing in lists.values():
        assert not {"a", "b"} & {entry["item_id"] for entry in listing["items"]}  # never what they touched


def test_every_list_says_when_the_worker_received_its_event_so_its_own_share_of_the_latency_is_known():
    processor, _ = make()
    result = processor.process_events([_msg(_event("u1", "a")), _msg(_event("u2", "b"))], received=1999.5)
    stamps = [json.loads(o.value) for o in result.recommendations]
    assert [(s["source_ts"], s["received_ts"], s["ts"]) for s in stamps] == [(1000.0, 1999.5, 2000.0)] * 2
    unstamped = processor.process_events([_msg(_event("u3", "c"))])
    assert json.loads(unstamped.recommendations[0].value)["received_ts"] is None


def test_bad_messages_and_bad_array_elements_become_dead_letters_with_reason_and_offset():
    processor, registry = make()
    result = processor.process_events([
        _msg(b"not json", offset=5),
        _msg([_event("u1", "a"), {"user_id": "u1"}, _event("u1", "b", type="teleport")], offset=6),
        _msg(b'{"user_id": "u", "item_id": "i", "type": "click", "ts": NaN}', offset=7),
    ])
    letters = [json.loads(o.value) for o in result.dead_letters]
    assert [(dl["reason"], dl["offset"], dl["index"]) for dl in letters] == [
        ("not_json", 5, None), ("missing_field", 6, 1), ("unknown_type", 6, 2), ("invalid_ts", 7, None)]
    assert letters[0]["original"] == "not json"
    assert all(o.topic == "events-dlq" for o in result.dead_letters)
    assert result.events == 1  # the good element of the array is kept
    assert registry.get_sample_value("streamrec_events_dlq_total", {"reason": "missing_field"}) == 1
    assert registry.get_sample_value("streamrec_events_processed_total", {"type": "click"}) == 1


def test_size_limits_apply_to_messages_and_to_single_events():
    processor, _ = make(max_message_bytes=2_000, max_event_bytes=200)
    big_event = _event("u1", "a", context={"pad": "x" * 300})
    result = processor.process_events([_msg(big_event), _msg([_event("u1", "b")] * 50), _msg([big_event, _event("u2", "c")])])
    assert [json.loads(o.value)["reason"] for o in result.dead_letters] == \
        ["oversized_event", "oversized_message", "oversized_event"]
    assert result.events == 1


def test_impressions_are_counted_but_not_learned_as_positives():
    processor, registry = make()
    processor.process_events([_msg(_event("u1", "a", type="impression"))])
    assert processor.engine.n_items == 0
    assert registry.get_sample_value("streamrec_events_processed_total", {"type": "impression"}) == 1


def test_push_mode_can_be_switched_off():
    processor, _ = make(push=False)
    assert processor.process_events([_msg(_event("u1", "a"))]).recommendations == []


def test_requests_are_answered_with_their_id_and_k_and_bad_requests_are_dead_lettered():
    processor, _ = make()
    processor.process_events([_msg([_event("u1", f"i{n}") for n in range(30)])])
    result = processor.process_requests([
        _msg({"request_id": "r1", "user_id": "new-user", "k": 5, "exclude": ["i0"]}),
        _msg({"request_id": "r2", "user_id": "u1", "k": 10_000}),
    ])
    (answer,) = [json.loads(o.value) for o in result.recommendations]
    assert answer["request_id"] == "r1" and answer["k"] == 5 and len(answer["items"]) == 5
    assert "i0" not in {entry["item_id"] for entry in answer["items"]}
    assert [json.loads(o.value)["reason"] for o in result.dead_letters] == ["invalid_k"]


def test_the_prequential_hit_rate_metric_follows_the_served_lists():
    processor, registry = make()
    processor.process_events([_msg([_event("u1", "a"), _event("u1", "b")])])  # teaches a -> b
    processor.process_events([_msg(_event("u2", "a"))])  # u2 is served a list with "b" first
    processor.process_events([_msg(_event("u2", "b"))])  # ...and then touches "b": a hit
    assert registry.get_sample_value("streamrec_prequential_hit_rate", {"k": "10", "window": "all"}) == 1.0


def test_the_list_names_the_strategy_that_made_it_and_the_blend_can_serve():
    fixed, _ = make()
    blended, _ = make(blend="default")
    for processor, strategy in ((fixed, "popularity+next_item"), (blended, "blend")):
        processor.process_events([_msg([_event("u1", "a"), _event("u1", "b"), _event("u2", "a")])])
        (listing,) = [json.loads(o.value) for o in processor.process_events([_msg(_event("u3", "a"))]).recommendations]
        assert listing["strategy"] == strategy
        assert "b" in [entry["item_id"] for entry in listing["items"]]  # b follows a, in either engine


def test_an_unforeseen_error_in_validation_dead_letters_the_message_instead_of_crashing(monkeypatch):
    processor, registry = make()

    def broken(obj):
        raise KeyError("a bug")

    monkeypatch.setattr("stream.wire.schema.validate_event", broken)
    # the typed pass over a whole array too: the array is then read element by element, each dead-lettered
    monkeypatch.setattr("stream.wire.schema.validate_event_array", lambda raw, size, count: broken(raw))
    result = processor.process_events([_msg(_event("u1", "a")), _msg([_event("u1", "b"), _event("u2", "c")])])
    assert [(json.loads(o.value)["reason"], json.loads(o.value)["index"]) for o in result.dead_letters] == [
        ("unprocessable", None), ("unprocessable", 0), ("unprocessable", 1)]
    assert registry.get_sample_value("streamrec_events_dlq_total", {"reason": "unprocessable"}) == 3


def test_a_model_that_fails_to_learn_sends_the_batch_to_the_dlq_and_the_worker_goes_on():
    processor, registry = make()

    def broken(interactions):
        raise FloatingPointError("a model bug")

    processor.engine.learn_many = broken
    result = processor.process_events([_msg(_event("u1", "a"), offset=1), _msg(b"not json", offset=2)])
    reasons = sorted(json.loads(o.value)["reason"] for o in result.dead_letters)
    assert reasons == ["not_json", "processing_failed"] and not result.recommendations
    assert json.loads([o for o in result.dead_letters if o.reason == "processing_failed"][0].value)["offset"] == 1


def test_with_bandit_feedback_an_event_naming_a_served_list_rewards_the_arms_that_made_it():
    processor, registry = make(tuner=True, tuner_feedback="bandit")
    first = processor.process_events([_msg([_event("u1", f"i{n}", ts=n) for n in range(6)]
                                           + [_event("u2", f"i{n}", ts=10 + n) for n in range(3)])])
    served = {json.loads(o.value)["user_id"]: json.loads(o.value) for o in first.recommendations}
    listing = served["u2"]
    assert listing["arm"] != "default"  # the sampled arms, whose propensities the tuner logged
    clicked = listing["items"][0]["item_id"]
    processor.process_events([_msg(_event("u2", clicked, ts=20, rec_id=listing["rec_id"])),
                              _msg(_event("u2", "i0", ts=21, rec_id="somebody-elses-list"))])
    assert (processor.feedback_matched, processor.feedback_unknown) == (1, 1)
    bandits = processor.engine.engine  # inside the self-tuned engine
    assert bandits.logged >= 1 and processor.engine.tuning_snapshot()["feedback"] == "bandit"
    assert sum(bandits.ips.get("mf", {}).values()) > 0  # the served mf arm got its reward / propensity


def test_with_full_feedback_rec_ids_are_not_needed_and_not_counted():
    processor, _ = make(tuner=True)
    processor.process_events([_msg(_event("u1", "a", rec_id="x"))])
    assert (processor.feedback_matched, processor.feedback_unknown) == (0, 0)


def test_an_undecodable_record_batch_is_one_dead_letter_with_its_offset_range_and_raw_bytes():
    import base64

    from stream.kafka.batch_guard import UndecodableBatch

    processor, registry = make()
    raw = b"\x00\x01lz4-compressed-bytes\xff"
    batch = UndecodableBatch(raw, error="UnsupportedCodecError: lz4", first_offset=10, last_offset=14, codec="lz4",
                             records=5)
    result = processor.process_events([_msg(_event("u1", "a"), offset=9),
                                       RawMessage(batch, None, "events", 0, 14, 1000.0),
                                       _msg(_event("u2", "b"), offset=15)])
    (letter,) = [json.loads(o.value) for o in result.dead_letters]
    assert (letter["reason"], letter["offset"], letter["last_offset"]) == ("undecodable_batch", 10, 14)
    assert letter["original_encoding"] == "base64" and base64.b64decode(letter["original"]) == raw
    assert "lz4" in letter["error"] and "10-14" in letter["error"]
    assert result.events == 2  # the batches around it are learned
    assert registry.get_sample_value("streamrec_events_dlq_total", {"reason": "undecodable_batch"}) == 1
    assert processor.progress.next_offset(TopicPartition("events", 0)) == 16  # the snapshot covers it: a restart does not re-read it

    requests = processor.process_requests([RawMessage(batch, None, "rec-requests", 0, 14, 1000.0)])
    assert [json.loads(o.value)["reason"] for o in requests.dead_letters] == ["undecodable_batch"]

    assert processor.learn_replica([RawMessage(batch, None, "events", 1, 14, 1000.0)]) == 0  # its owner dead-letters


def _list_for_u3(processor):
    processor.process_events([_msg([_event("u1", "a"), _event("u1", "b"), _event("u2", "a")])])
    (listing,) = [json.loads(o.value) for o in processor.process_events([_msg(_event("u3", "a"))]).recommendations]
    return listing


def test_a_list_the_online_models_served_alone_names_the_online_model():
    for changes in ({}, {"blend": "default"}, {"blend": "popularity,cooccurrence,encoder"}, {"tuner": True}):
        processor, _ = make(**changes)  # the last but one declares an encoder no version has filled yet
        assert _list_for_u3(processor)["model_version"] == "online", changes


def test_a_list_the_encoder_helped_serve_names_the_encoder_version_that_served_it():
    for changes in ({"blend": "popularity=0.2,cooccurrence=1,encoder=1"},
                    {"blend": "popularity=0.2,cooccurrence=1,next_item=0.3,encoder=1", "tuner": True}):
        processor, _ = make(**changes)
        processor.engine.blend.fill("encoder", EncoderVersion(3, {"z": 1.0}))
        listing = _list_for_u3(processor)
        assert listing["model_version"] == "encoder-v3", changes
        assert "z" in [entry["item_id"] for entry in listing["items"]]
        processor.engine.blend.fill("encoder", EncoderVersion(4, {"z": 1.0}))
        assert _list_for_u3(processor)["model_version"] == "encoder-v4", changes
