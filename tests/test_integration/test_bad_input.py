"""Thousands of malformed messages mixed with valid ones, against a real worker process.

Hypothesis generates the corpus (malformed JSON, wrong encodings, empty and ~1 MB
payloads, NaN/Infinity literals, huge integers, nested junk, wrong types, missing and
oversize fields, oversize arrays, junk Kafka keys, unknown extra fields, requests with
bad ``k``); it is then published in one go (a few thousand messages) so the test stays
fast. Every message carries a unique key, so each dead letter is matched back to the
exact message (and array element) that caused it. Asserted:

* every bad message/element is in ``events-dlq`` exactly once, with a reason from
  ``DLQ_REASONS`` that fits the defect, and its source topic/partition/offset/index;
* nothing else is: no valid event or request is dead-lettered;
* every valid event is processed (``streamrec_events_processed_total`` grows by exactly
  their number) and every valid request is answered with its ``request_id``;
* the worker never exited or restarted (same process alive, ``/health/live`` answers,
  no crashed agent in its log).

Inputs that crashed the processor when this test was written (invalid UTF-8 inside a JSON
string, deep nesting, integers beyond float range, lone surrogates in ids, over-long integer
ids) are kept apart (``CRASHERS``) with a test each, at the bottom of this file.
"""
from __future__ import annotations

import json
import math
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.cli.scrape import scrape, total
from stream.kafka.broker import free_port
from stream.settings import Settings
from stream.wire.messages import RawMessage
from stream.wire.schema import DLQ_REASONS, EVENT_TYPES
from stream.worker.processor import EventProcessor
from tests.test_integration.conftest import isolated_settings, worker_process

pytestmark = [pytest.mark.timeout(300)]

LIMITS = Settings()  # the default limits the worker runs with: 1 MB/message, 16 KiB/event, 10,000/array, k<=200
ANY_EVENT_REASON = frozenset(DLQ_REASONS) - {"invalid_k"}
UNDECODABLE = frozenset({"not_json", "not_utf8"})


@dataclass
class Case:
    """One Kafka message and what the worker must make of it."""

    topic: str  # "events" or "requests"
    value: bytes | None
    bad: dict[int | None, frozenset[str]] = field(default_factory=dict)  # array index (None: whole) -> reasons
    good: int = 0  # valid events it carries (events) / 1 for a valid request
    request_id: str | None = None
    key_junk: bytes = b""
    key: bytes = b""


def dumps(obj: Any) -> bytes:
    """JSON as a careless producer writes it: NaN/Infinity literals allowed, any unicode."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=True).encode("utf-8")


# -- strategies ------------------------------------------------------------------------------
text = st.text(min_size=1, max_size=16)  # hypothesis never draws lone surrogates here (see CRASHERS)
ids = st.one_of(text, st.integers(0, 10**18))
leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=16))
junk = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                  st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=8)
timestamps = st.one_of(st.floats(0, 2e9), st.integers(0, 2_000_000_000),
                       st.datetimes().map(lambda d: d.isoformat() + "Z"))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
extra_keys = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in {
    "user_id", "item_id", "type", "ts", "value", "event_id", "rec_id", "context"}), junk, max_size=3)


@st.composite
def valid_event(draw: Any) -> dict:
    event = {"user_id": draw(ids), "item_id": draw(ids), "type": draw(st.sampled_from(sorted(EVENT_TYPES))),
             "ts": draw(timestamps), "event_id": f"ok-{uuid.uuid4().hex}"}
    if draw(st.booleans()):
        event["value"] = draw(st.floats(-1e6, 1e6))
    if draw(st.booleans()):
        event["context"] = draw(st.dictionaries(st.text(max_size=8), junk, max_size=3))
    event.update(draw(extra_keys))  # unknown keys are ignored, not rejected
    return event


def _without(name: str):
    return lambda e: {k: v for k, v in e.items() if k != name}


def _with(name: str, value: Any):
    return lambda e: {**e, name: value}


_wrong_id = st.one_of(st.lists(leaf, max_size=3), st.dictionaries(text, leaf, max_size=2), st.booleans(),
                     st.floats(allow_nan=True), st.just(""), st.integers(257, 300).map(lambda n: "u" * n))
#: (how to break a valid event, the one reason that defect must get)
DEFECTS = st.one_of(
    st.tuples(st.sampled_from(["user_id", "item_id", "type", "ts"]).map(_without), st.just("missing_field")),
    st.tuples(st.sampled_from(["user_id", "item_id", "type"]).map(lambda n: _with(n, None)), st.just("missing_field")),
    st.tuples(st.builds(_with, st.sampled_from(["user_id", "item_id"]), _wrong_id), st.just("wrong_type")),
    st.tuples(st.builds(_with, st.just("type"), st.one_of(st.integers(), st.lists(text, max_size=2))),
              st.just("wrong_type")),
    st.tuples(st.builds(_with, st.just("type"), text.filter(lambda t: t not in EVENT_TYPES)), st.just("unknown_type")),
    st.tuples(st.builds(_with, st.just("ts"), st.one_of(
        non_finite, st.booleans(), st.none(), st.lists(leaf, max_size=2), st.just("yesterday"),
        st.just(10**400), st.just(-(10**400)))), st.just("invalid_ts")),
    st.tuples(st.builds(_with, st.just("value"), st.one_of(
        non_finite, st.booleans(), st.text(max_size=5), st.lists(leaf, max_size=2))), st.just("invalid_value")),
    st.tuples(st.builds(_with, st.just("event_id"), st.one_of(st.floats(), st.lists(leaf, max_size=2),
                                                              st.booleans())), st.just("wrong_type")),
    st.tuples(st.builds(_with, st.just("rec_id"), st.integers()), st.just("wrong_type")),
    st.tuples(st.builds(_with, st.just("context"), st.lists(leaf, min_size=1, max_size=3)), st.just("wrong_type")),
    st.tuples(st.builds(_with, st.just("padding"), st.integers(17_000, 20_000).map(lambda n: "p" * n)),
              st.just("oversized_event")),
)


@st.composite
def bad_event(draw: Any) -> tuple[dict, frozenset[str]]:
    """A valid event with exactly one defect, and the reason that defect must get."""
    event = draw(valid_event())
    defect, reason = draw(DEFECTS)
    return defect(event), frozenset({reason})


junk_object = st.dictionaries(st.text(max_size=8).filter(lambda k: k != "user_id"), junk, min_size=0, max_size=5)
non_object = st.one_of(leaf, st.lists(leaf, max_size=3))


@st.composite
def event_message(draw: Any) -> Case:
    kind = draw(st.sampled_from(["single_good", "single_bad", "array", "array", "undecodable", "encoding",
                                 "empty", "non_object", "junk_object", "too_many", "huge_int_id"]))
    if kind == "single_good":
        return Case("events", dumps(draw(valid_event())), good=1)
    if kind == "single_bad":
        event, reasons = draw(bad_event())
        return Case("events", dumps(event), bad={None: reasons})
    if kind == "array":
        elements = draw(st.lists(st.one_of(
            valid_event().map(lambda e: (e, None)), valid_event().map(lambda e: (e, None)), bad_event(), bad_event(),
            non_object.map(lambda v: (v, frozenset({"not_an_object"}))),
            junk_object.map(lambda v: (v, frozenset({"missing_field"})))), min_size=1, max_size=20))
        return Case("events", dumps([e for e, _ in elements]), good=sum(r is None for _, r in elements),
                    bad={i: r for i, (_, r) in enumerate(elements) if r is not None})
    if kind == "undecodable":  # never JSON: a NUL first, then anything (often invalid UTF-8)
        return Case("events", b"\x00" + draw(st.binary(max_size=200)), bad={None: UNDECODABLE})
    if kind == "encoding":  # a valid event in the wrong encoding (BOMs, UTF-16/32)
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"]))
        raw = json.dumps(draw(valid_event()), ensure_ascii=True).encode(codec)
        return Case("events", raw, bad={None: UNDECODABLE})
    if kind == "empty":
        value = draw(st.sampled_from([b"", None, b"[]", b"   "]))
        return Case("events", value, bad={None: frozenset({"empty_batch" if value == b"[]" else "not_json"})})
    if kind == "non_object":
        return Case("events", dumps(draw(leaf)), bad={None: frozenset({"not_an_object"})})
    if kind == "junk_object":
        return Case("events", dumps(draw(junk_object)), bad={None: frozenset({"missing_field"})})
    if kind == "too_many":
        return Case("events", b"[" + b",".join([b"0"] * (LIMITS.serving.max_events_per_message + 1)) + b"]",
                    bad={None: frozenset({"too_many_events"})})
    # an integer id of 5,000 digits: more than any JSON parser here takes
    event = draw(valid_event())
    del event["user_id"]
    raw = b'{"user_id":1' + b"0" * 5_000 + b"," + dumps(event)[1:]
    return Case("events", raw, bad={None: frozenset({"not_json"})})


@st.composite
def request_message(draw: Any) -> Case:
    request = {"request_id": f"rq-{uuid.uuid4().hex}", "user_id": draw(ids), "k": draw(st.integers(1, LIMITS.serving.max_k))}
    if draw(st.booleans()):
        request["exclude"] = draw(st.lists(ids, max_size=4))
    kind = draw(st.sampled_from(["good", "good", "k", "k", "missing", "wrong", "undecodable", "oversized"]))
    if kind == "good":
        return Case("requests", dumps(request), good=1, request_id=request["request_id"])
    if kind == "k":
        request["k"] = draw(st.one_of(st.integers(LIMITS.serving.max_k + 1, 10**30), st.integers(-10**6, 0), non_finite,
                                      st.floats(1.5, 50), st.just("10"), st.booleans(), st.none(),
                                      st.lists(st.integers(), max_size=2)))
        return Case("requests", dumps(request), bad={None: frozenset({"invalid_k"})})
    if kind == "missing":
        del request["user_id"]
        return Case("requests", dumps(request), bad={None: frozenset({"missing_field"})})
    if kind == "wrong":
        name, value = draw(st.one_of(
            st.tuples(st.just("exclude"), st.one_of(text, st.lists(st.lists(leaf), min_size=1, max_size=2))),
            st.tuples(st.just("request_id"), st.integers()),
            st.tuples(st.just("user_id"), st.lists(leaf, max_size=2))))
        request[name] = value
        return Case("requests", dumps(request), bad={None: frozenset({"wrong_type"})})
    if kind == "undecodable":
        return Case("requests", b"{\x00" + draw(st.binary(max_size=50)), bad={None: UNDECODABLE})
    request["padding"] = "p" * (LIMITS.serving.max_event_bytes + 1)
    return Case("requests", dumps(request), bad={None: frozenset({"oversized_message"})})


message = st.one_of(event_message(), event_message(), event_message(), request_message())
junk_key = st.one_of(st.just(b""), st.binary(max_size=6))


def generate_corpus(examples: int) -> list[Case]:
    """Run hypothesis only to *generate*: each example adds a few messages to the corpus."""
    corpus: list[Case] = []

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(message, junk_key), min_size=1, max_size=8))
    def collect(cases: list[tuple[Case, bytes]]) -> None:
        for case, junk_prefix in cases:
            case.key_junk = junk_prefix
            corpus.append(case)

    collect()
    return corpus


def large_payloads() -> list[Case]:
    """Payloads around the 1 MB message limit (and a 20 KB single event)."""
    limit = LIMITS.serving.max_message_bytes
    filler = {"user_id": "big", "item_id": "i", "type": "view", "ts": 1, "pad": "x" * 150}
    near = []  # a legal array just under 1 MB: all its events are processed
    while len(dumps(near)) < limit - 1_000:
        near.append({**filler, "user_id": f"big{len(near) % 97}", "event_id": f"ok-{uuid.uuid4().hex}"})
    over = near + [dict(filler, event_id=f"ok-{uuid.uuid4().hex}") for _ in range(20)]
    assert len(dumps(near)) <= limit < len(dumps(over)) and len(near) <= LIMITS.serving.max_events_per_message
    return [
        Case("events", dumps(near), good=len(near)),
        Case("events", dumps(over), bad={None: frozenset({"oversized_message"})}),
        Case("events", b"x" * (limit + 1), bad={None: frozenset({"oversized_message"})}),
        Case("events", b"\xff" * (limit + 48_576), bad={None: frozenset({"oversized_message"})}),
        Case("events", dumps({**filler, "item_id": "i" * 20_000}), bad={None: frozenset({"oversized_event"})}),
    ]


# -- publishing and reading back -----------------------------------------------------------------

class TopicReader:
    """Reads a topic from the beginning, across calls, with manual assignment."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50,
                                      max_partition_fetch_bytes=8_388_608, fetch_max_bytes=52_428_800)
        partitions = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or [0])]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)

    def poll(self, timeout: float = 0.2) -> Iterator[dict]:
        for records in self.consumer.poll(timeout_ms=int(timeout * 1000)).values():
            for record in records:
                yield json.loads(record.value)

    def close(self) -> None:
        self.consumer.close()


def publish(settings: Settings, cases: list[Case], tag: str) -> dict[int, tuple[int, int]]:
    """Send every case with a unique key; returns {case no: (partition, offset)} as the broker acknowledged."""
    topics = {"events": settings.topics.events, "requests": settings.topics.requests}
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, max_request_size=4_194_304,
                             linger_ms=5, acks=1)
    futures = []
    for n, case in enumerate(cases):
        case.key = case.key_junk + f"|{tag}-{n}".encode()
        futures.append(producer.send(topics[case.topic], key=case.key, value=case.value))
    producer.flush(120)
    producer.close()
    return {n: (future.get().partition, future.get().offset) for n, future in enumerate(futures)}


def ours(letter: dict, tag: str) -> bool:
    return (letter["key"] or "").rsplit("|", 1)[-1].startswith(f"{tag}-")


def case_no(key: str) -> int:
    return int(key.rsplit("-", 1)[1])


def metrics_url(settings: Settings, path: str = "/metrics") -> str:
    return f"http://{settings.metrics.host}:{settings.metrics.port}{path}"


@dataclass
class Outcome:
    letters: list[dict]
    answered: set[str]
    processed: float


def run_corpus(settings: Settings, cases: list[Case], timeout: float) -> Outcome:
    """Publish ``cases`` to a running worker and collect dead letters, answers and the processed count."""
    tag = uuid.uuid4().hex[:6]
    want_letters = sum(len(c.bad) for c in cases)
    want_events = sum(c.good for c in cases if c.topic == "events")
    want_answers = {c.request_id for c in cases if c.request_id}
    dlq = TopicReader(settings.kafka.bootstrap_servers, settings.topics.dlq)
    lists = TopicReader(settings.kafka.bootstrap_servers, settings.topics.recommendations)
    before = total(scrape(metrics_url(settings)), "streamrec_events_processed_total")
    letters: list[dict] = []
    answered: set[str] = set()
    try:
        sent_at = publish(settings, cases, tag)
        deadline = time.monotonic() + timeout
        processed = 0.0
        while time.monotonic() < deadline:
            letters += [v for v in dlq.poll() if ours(v, tag)]
            answered |= {v["request_id"] for v in lists.poll(0.05) if v.get("request_id") in want_answers}
            processed = total(scrape(metrics_url(settings)), "streamrec_events_processed_total") - before
            if len(letters) >= want_letters and processed >= want_events and answered >= want_answers:
                break
        grace = time.monotonic() + 1.0  # anything extra (a good event dead-lettered twice...) shows up here
        while time.monotonic() < grace:
            letters += [v for v in dlq.poll() if ours(v, tag)]
        processed = total(scrape(metrics_url(settings)), "streamrec_events_processed_total") - before
    finally:
        dlq.close()
        lists.close()
    for letter in letters:
        letter["_sent_at"] = sent_at[case_no(letter["key"])]
    return Outcome(letters, answered, processed)


def check(settings: Settings, cases: list[Case], outcome: Outcome) -> None:
    topics = {"events": settings.topics.events, "requests": settings.topics.requests}
    expected = {(n, index): reasons for n, case in enumerate(cases) for index, reasons in case.bad.items()}
    got: dict[tuple[int, int | None], list[dict]] = {}
    for letter in outcome.letters:
        got.setdefault((case_no(letter["key"]), letter["index"]), []).append(letter)
    missing = sorted(set(expected) - set(got), key=str)
    extra = sorted(set(got) - set(expected), key=str)
    twice = [k for k, v in got.items() if len(v) > 1]
    wrong = []
    for where, (letter, *_) in got.items():
        if where not in expected:
            continue
        n = where[0]
        case = cases[n]
        partition, offset = letter["_sent_at"]
        if (letter["reason"] not in expected[where] or letter["reason"] not in DLQ_REASONS or not letter["error"]
                or letter["topic"] != topics[case.topic] or letter["partition"] != partition
                or letter["offset"] != offset or letter["key"] != case.key.decode("utf-8", "replace")):
            wrong.append((where, sorted(expected[where]), {k: v for k, v in letter.items() if k != "original"}))

    def show(keys: list) -> list:
        return [(k, cases[k[0]].topic, (cases[k[0]].value or b"")[:160]) for k in keys[:5]]
    assert not missing, f"{len(missing)} bad inputs never reached the DLQ, e.g. {show(missing)}"
    assert not extra, f"{len(extra)} unexpected dead letters (valid input rejected?), e.g. {show(extra)}"
    assert not twice, f"dead-lettered more than once: {twice[:5]}"
    assert not wrong, f"{len(wrong)} dead letters with the wrong reason/source, e.g. {wrong[:3]}"
    want_events = sum(c.good for c in cases if c.topic == "events")
    assert outcome.processed == want_events, f"processed {outcome.processed} of {want_events} valid events"
    want_answers = {c.request_id for c in cases if c.request_id}
    assert outcome.answered == want_answers, f"{len(want_answers - outcome.answered)} valid requests unanswered"


def assert_never_restarted(settings: Settings, process: Any, pid: int, log_path: Any) -> None:
    assert process.poll() is None and process.pid == pid, "the worker process exited"
    with urllib.request.urlopen(metrics_url(settings, "/health/live"), timeout=5) as response:
        assert json.loads(response.read())["status"] == "live"
    log = log_path.read_text(errors="replace")
    assert "crashed" not in log.lower() and "Traceback" not in log, log[-3000:]


def fresh_settings(kafka_bootstrap: str, tmp_path: Any) -> Settings:
    return isolated_settings(kafka_bootstrap, "bad", partitions=4, metrics_port=free_port(), data_dir=str(tmp_path))


# -- the tests ------------------------------------------------------------------------------------

@pytest.mark.integration
def test_thousands_of_malformed_messages_all_land_in_the_dlq_and_the_rest_is_processed(kafka_bootstrap, tmp_path):
    cases = generate_corpus(examples=320) + large_payloads()
    bad = sum(len(c.bad) for c in cases)
    good = sum(c.good for c in cases)
    assert bad >= 1_000 and good >= 1_000  # the corpus really is thousands of each
    settings = fresh_settings(kafka_bootstrap, tmp_path)
    log_path = tmp_path / "worker.log"
    with worker_process(settings, log_path) as process:
        pid = process.pid
        outcome = run_corpus(settings, cases, timeout=90)
        check(settings, cases, outcome)
        assert_never_restarted(settings, process, pid, log_path)
    print(f"{len(cases)} messages: {bad} bad inputs dead-lettered, {good} valid events processed, "
          f"{len(outcome.answered)} requests answered")


# -- inputs that once crashed the processor (found by this file; fixed in stream/wire/schema.py) --

# (topic, raw bytes, the reason a dead letter should carry, what goes wrong today)
CRASHERS = [
    ("events", b'{"user_id":"\xff","item_id":"i","type":"click","ts":1}', "not_utf8",
     "msgspec raises UnicodeDecodeError (not msgspec.DecodeError) for invalid UTF-8 inside a JSON string; "
     "schema.decode_json lets it escape"),
    ("events", '[{"user_id":"é","item_id":"i","type":"click","ts":1}]'.encode("latin-1"), "not_utf8",
     "latin-1 text in an array: same UnicodeDecodeError"),
    ("requests", b'{"user_id":"u\xc3(","k":3}', "not_utf8", "a request with invalid UTF-8 in a string: same"),
    ("events", b"[" * 1_000 + b"]" * 1_000, "not_json",
     "nesting >= ~1000 levels: msgspec raises RecursionError, which decode_json does not catch"),
    ("events", b'{"user_id":"u","item_id":"i","type":"click","ts":1,"value":1' + b"0" * 400 + b"}", "invalid_value",
     "an integer value beyond float range: math.isfinite raises OverflowError in schema.validate_event"),
    ("events", b'{"user_id":"\\ud800","item_id":"i","type":"click","ts":1}', "wrong_type",
     "a lone surrogate escape in user_id is accepted; encoding its list/key raises UnicodeEncodeError"),
    ("events", b'{"user_id":"u","item_id":"i","type":"click","ts":1,"event_id":"\\udfff"}', "wrong_type",
     "a lone surrogate in event_id is accepted; the list echoes it and encoding raises UnicodeEncodeError"),
]


@pytest.mark.parametrize("topic, raw, reason, why", CRASHERS,
                         ids=[f"{c[0]}-{c[2]}-{n}" for n, c in enumerate(CRASHERS)])
def test_crashing_input_is_dead_lettered(topic, raw, reason, why):
    processor = EventProcessor(Settings())
    message = RawMessage(raw, b"k", topic, 0, 7, 1.0)
    result = (processor.process_events if topic == "events" else processor.process_requests)([message])
    assert [json.loads(d.value)["reason"] for d in result.dead_letters] == [reason]


def test_a_surrogate_item_id_does_not_poison_other_users_lists():
    processor = EventProcessor(Settings())
    processor.process_events([RawMessage(b'{"user_id":"a","item_id":"\\udc80","type":"click","ts":1}', b"a",
                                         "events", 0, 0, 1.0)])
    result = processor.process_events([RawMessage(b'{"user_id":"b","item_id":"x","type":"click","ts":2}', b"b",
                                                  "events", 0, 1, 2.0)])
    assert len(result.recommendations) == 1


def test_an_integer_id_respects_the_256_character_limit():
    """Contract: ids are strings of <= 256 characters or integers turned into strings."""
    event = b'{"user_id":1' + b"0" * 300 + b',"item_id":"i","type":"click","ts":1}'
    result = EventProcessor(Settings()).process_events([RawMessage(event, b"k", "events", 0, 0, 1.0)])
    assert [json.loads(d.value)["reason"] for d in result.dead_letters] == ["wrong_type"]


@pytest.mark.integration
def test_the_worker_survives_the_crashing_inputs(kafka_bootstrap, tmp_path):
    cases = [Case(topic, raw, bad={None: frozenset({reason})}) for topic, raw, reason, _ in CRASHERS]
    cases += [Case("events", dumps({"user_id": f"after{n}", "item_id": "i", "type": "click", "ts": n,
                                    "event_id": f"ok-{uuid.uuid4().hex}"}), good=1) for n in range(50)]
    settings = fresh_settings(kafka_bootstrap, tmp_path)
    log_path = tmp_path / "worker.log"
    with worker_process(settings, log_path) as process:
        pid = process.pid
        outcome = run_corpus(settings, cases, timeout=20)
        check(settings, cases, outcome)
        assert_never_restarted(settings, process, pid, log_path)
