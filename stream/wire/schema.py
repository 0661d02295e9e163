"""The wire contracts of design.md for the data topics, both ways, for every client.

- ``events``: :func:`event_payload` + :func:`encode` (one object or a JSON array of them);
  :func:`decode_json` + :func:`validate_event` (timestamps through :func:`parse_timestamp`).
- ``rec-requests``: :func:`encode_request`; :func:`decode_json` + :func:`validate_request`.
- ``recommendations``: :func:`recommendation`; :func:`decode_recommendation`.
- ``events-dlq``: :func:`dead_letter`.

The control topics (``model-updates``, ``tuning``) are in ``stream.wire.announcements``.

Validation returns a reason instead of raising, because a bad event is data to be
routed (to ``events-dlq``), not an error to crash on. Reasons are a small fixed
set so that ``streamrec_events_dlq_total{reason}`` keeps a bounded label set.
"""
from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import starmap
from typing import Annotated, Any

import msgspec

from online.base import Interaction

EVENT_TYPES = frozenset({"view", "click", "add_to_cart", "purchase", "rating", "impression", "skip"})
#: Event types that say the user did *not* choose the item; counted, never learned as positives.
NON_POSITIVE_TYPES = frozenset({"impression", "skip"})

DLQ_REASONS = (
    "oversized_message", "not_utf8", "not_json", "not_an_object", "empty_batch", "too_many_events",
    "oversized_event", "missing_field", "wrong_type", "unknown_type", "invalid_ts", "invalid_value",
    "invalid_k",
    # a record batch the consumer could not decode at all (codec, corrupt payload, CRC):
    # one dead letter for the whole batch, its offset range and raw bytes (stream.kafka.batch_guard)
    "undecodable_batch",
    # not a contract violation we foresaw: a bug in validation ("unprocessable") or in a model
    # while learning the message's events ("processing_failed"); logged with the traceback
    "unprocessable", "processing_failed",
)
MAX_ID_LENGTH = 256

_decode = msgspec.json.decode
_encoder = msgspec.json.Encoder()
encode = _encoder.encode


class Invalid(Exception):
    """A message or event broke the contract; ``reason`` is one of :data:`DLQ_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_json(raw: bytes) -> Any:
    """Parse JSON; NaN/Infinity literals (which msgspec rejects) are parsed so that the
    event is rejected for its invalid *value*, which is the more useful reason."""
    try:
        return _decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter inside strings
        pass
    except RecursionError:
        raise Invalid("not_json", "nested too deeply") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid("not_utf8", str(exc)) from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Invalid("not_json", str(exc)[:200]) from None


def parse_timestamp(raw: object) -> float:
    """Epoch seconds from a number or an ISO 8601 string; ``ValueError`` otherwise."""
    if isinstance(raw, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(raw, (int, float)):
        value = float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            value = float(text)
        except ValueError:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            value = moment.timestamp()
    else:
        raise ValueError(f"a {type(raw).__name__} is not a timestamp")
    if not math.isfinite(value):
        raise ValueError("timestamp is not finite")
    return value


def event_payload(event: Interaction | Mapping[str, Any]) -> dict[str, Any]:
    """The ``events`` contract object for an interaction (mappings pass through).

    Every field of :class:`~online.base.Interaction` is kept, so what :func:`validate_event`
    reads back is the same interaction: ``rec_id`` in particular, without which an event cannot
    name the list it answers and the tuner's bandit feedback never closes. Optional fields that
    are ``None`` stay off the wire.
    """
    if isinstance(event, Interaction):
        out = {"user_id": event.user_id, "item_id": event.item_id, "type": event.type, "ts": event.ts,
               "value": event.value}
        if event.event_id is not None:
            out["event_id"] = event.event_id
        if event.rec_id is not None:
            out["rec_id"] = event.rec_id
        return out
    return dict(event)


def _identifier(obj: dict, name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise Invalid("missing_field", f"{name} is required")
    return _identifier_value(value, name)


def _identifier_value(value: Any, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value) if -10 ** MAX_ID_LENGTH < value < 10 ** MAX_ID_LENGTH else ""
    elif not isinstance(value, str):
        raise Invalid("wrong_type", f"{name} must be a string or an integer, not {type(value).__name__}")
    if not value or len(value) > MAX_ID_LENGTH:
        raise Invalid("wrong_type", f"{name} must be 1..{MAX_ID_LENGTH} characters")
    _check_unicode(value, name)
    return value


def _check_unicode(value: str, name: str) -> None:
    """JSON can carry lone surrogates ("\\ud800") that no UTF-8 encoder accepts; an id holding one
    would be learned and then break every list that contains it."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid("wrong_type", f"{name} is not valid Unicode (a lone surrogate)") from None


def dead_letter_original(obj: Any) -> bytes:
    """An array element as JSON for its dead letter: NaN stays NaN, lone surrogates stay escaped."""
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()
    except (TypeError, ValueError, RecursionError):
        return repr(obj)[:10_000].encode("utf-8", "backslashreplace")


def encoded_size(obj: Any) -> int:
    """Bytes ``obj`` takes as JSON (for the per-event size limit inside an array)."""
    try:
        return len(encode(obj))
    except (UnicodeEncodeError, TypeError, ValueError, OverflowError, RecursionError):
        return len(dead_letter_original(obj))


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]


class _WellFormedEvent(msgspec.Struct):
    """What a valid event object decodes to in :func:`validate_event_array`'s one typed pass (C-level
    checks of types and id lengths); the rest of :func:`validate_event`'s rules are applied after it."""

    user_id: _Id | int
    item_id: _Id | int
    type: str
    ts: float | str
    value: float = 1.0
    event_id: _Id | int | None = None
    rec_id: _Id | None = None
    context: dict | None = None


_event_array = msgspec.json.Decoder(list[_WellFormedEvent])
_raw_array = msgspec.json.Decoder(list[msgspec.Raw])
_one_event = msgspec.json.Decoder(_WellFormedEvent)
#: An element re-encodes to at most this many times its bytes as sent (whitespace and escapes only shrink;
#: the worst growth is a short float such as ``9e15``, 4 bytes, written ``9000000000000000.0``).
_REENCODED_AT_MOST = 8


def validate_event_array(raw: bytes, max_event_bytes: int, max_events: int) -> list[Interaction] | None:
    """The events of a JSON-array message that is valid throughout, in one typed pass; ``None`` for any other
    message, which :func:`decode_json` and :func:`validate_event` per element then judge (with the reason of
    each bad element). For a valid message the events are those that path returns, field for field.

    An element's size is measured (as :func:`encoded_size`, the element path's rule) only when it could
    exceed ``max_event_bytes``: its bytes as sent, times how much re-encoding can grow them, are above it.
    """
    try:
        if len(raw) <= max_event_bytes:  # no element can be too big
            decoded = _event_array.decode(raw)
        else:
            elements = _raw_array.decode(raw)
            for element in elements:
                if (len(element) * _REENCODED_AT_MOST > max_event_bytes
                        and encoded_size(_decode(element)) > max_event_bytes):
                    return None
            decoded = [_one_event.decode(element) for element in elements]
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None
    if not decoded or len(decoded) > max_events:
        return None
    events = []
    try:
        for event in decoded:
            user_id, item_id, ts, event_id, rec_id = (event.user_id, event.item_id, event.ts, event.event_id,
                                                      event.rec_id)
            if not (type(user_id) is str and user_id.isascii()):
                user_id = _identifier_value(user_id, "user_id")
            if not (type(item_id) is str and item_id.isascii()):
                item_id = _identifier_value(item_id, "item_id")
            if event.type not in EVENT_TYPES:
                return None
            if type(ts) is not float or not math.isfinite(ts):
                ts = parse_timestamp(ts)
            if not math.isfinite(event.value):
                return None
            if event_id is not None:
                event_id = _identifier_value(event_id, "event_id")
            if rec_id is not None and not rec_id.isascii():
                _check_unicode(rec_id, "rec_id")
            events.append(Interaction(user_id, item_id, ts, event.type, event.value, event_id, rec_id))
    except (Invalid, ValueError, OverflowError):
        return None
    return events


def validate_event(obj: Any) -> Interaction:
    """One decoded event object -> :class:`Interaction`, or :class:`Invalid`."""
    if not isinstance(obj, dict):
        raise Invalid("not_an_object", f"an event must be a JSON object, not {type(obj).__name__}")
    user_id = _identifier(obj, "user_id")
    item_id = _identifier(obj, "item_id")
    kind = obj.get("type")
    if kind is None:
        raise Invalid("missing_field", "type is required")
    if not isinstance(kind, str):
        raise Invalid("wrong_type", "type must be a string")
    if kind not in EVENT_TYPES:
        raise Invalid("unknown_type", f"type {kind[:40]!r} is not one of {sorted(EVENT_TYPES)}")
    if "ts" not in obj:
        raise Invalid("missing_field", "ts is required")
    try:
        ts = parse_timestamp(obj["ts"])
    except (ValueError, OverflowError) as exc:
        raise Invalid("invalid_ts", str(exc)[:200]) from None
    value = obj.get("value", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid("invalid_value", "value must be a finite number")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float range
        raise Invalid("invalid_value", "value must be a finite number") from None
    if not math.isfinite(value):
        raise Invalid("invalid_value", "value must be a finite number")
    event_id = obj.get("event_id")
    if event_id is not None:
        event_id = _identifier(obj, "event_id")
    for optional, kind_ in (("rec_id", str), ("context", dict)):
        if obj.get(optional) is not None and not isinstance(obj[optional], kind_):
            raise Invalid("wrong_type", f"{optional} must be a {kind_.__name__}")
    rec_id = obj.get("rec_id")
    if rec_id is not None:
        rec_id = _identifier(obj, "rec_id")
    return Interaction(user_id, item_id, ts, kind, value, event_id, rec_id)


@dataclass(frozen=True)
class Request:
    """A validated ``rec-requests`` message."""

    request_id: str | None
    user_id: str
    k: int
    exclude: tuple[str, ...]


def validate_request(obj: Any, default_k: int, max_k: int) -> Request:
    if not isinstance(obj, dict):
        raise Invalid("not_an_object", "a request must be a JSON object")
    user_id = _identifier(obj, "user_id")
    request_id = obj.get("request_id")
    if request_id is not None:
        if not isinstance(request_id, str):
            raise Invalid("wrong_type", "request_id must be a string")
        request_id = _identifier(obj, "request_id")
    k = obj.get("k", default_k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        raise Invalid("invalid_k", f"k must be an integer in 1..{max_k}")
    exclude = obj.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(x, (str, int)) for x in exclude):
        raise Invalid("wrong_type", "exclude must be a list of item ids")
    for item in exclude:
        if isinstance(item, str):
            _check_unicode(item, "exclude")
    return Request(request_id, user_id, k, tuple(str(x) for x in exclude))


def encode_request(*, request_id: str, user_id: str, k: int, exclude: Iterable[str] = ()) -> bytes:
    """Encode one ``rec-requests`` message (what :func:`validate_request` reads)."""
    return encode({"request_id": request_id, "user_id": user_id, "k": k, "exclude": list(exclude)})


def recommendation(*, rec_id: str, user_id: str, items: list[tuple[str, float]], k: int,
                   request_id: str | None, event: Interaction | None, source_ts: float | None,
                   now: float, model_version: str, strategy: str = "blend", arm: str = "default",
                   received_ts: float | None = None) -> bytes:
    """Encode one list as the ``recommendations`` contract.

    Beyond design.md's fields: ``event_id`` (the user's latest event the list reflects,
    so a consumer can score "was the next item in the last list") and ``source_ts`` (the
    broker timestamp of the message that triggered it, for end-to-end latency), and
    ``received_ts`` (when the worker fetched it: ``ts - received_ts`` is the worker's share).
    """
    # the same JSON object as a dict with these keys in this order would give (tests/test_stream/
    # test_recommendation_encoding.py), built from structs: a list per event is the worker's hot path
    return encode(_Recommendation(
        rec_id, request_id, user_id, list(starmap(_Item, items)), k, strategy, arm, model_version,
        event.ts if event is not None else None, event.event_id if event is not None else None,
        source_ts, received_ts, now))


class _Item(msgspec.Struct, gc=False):
    """One entry of a list on the wire (field order is key order)."""

    item_id: str
    score: float


class _Recommendation(msgspec.Struct, gc=False):
    """A ``recommendations`` message on the wire (field order is key order): :func:`recommendation`."""

    rec_id: str
    request_id: str | None
    user_id: str
    items: list[_Item]
    k: int
    strategy: str
    arm: str
    model_version: str
    event_ts: float | None
    event_id: str | None
    source_ts: float | None
    received_ts: float | None
    ts: float


def decode_recommendation(raw: bytes) -> Any:
    """A ``recommendations`` message as a dict; raises on anything that is not JSON."""
    return _decode(raw)


def dead_letter(*, raw: bytes, reason: str, detail: str, topic: str, partition: int, offset: int,
                index: int | None = None, key: bytes | None = None, now: float,
                last_offset: int | None = None, truncated: bool = False) -> bytes:
    """Encode a dead letter: the original bytes, why, and where they came from.

    ``last_offset`` is set when the letter stands for a range of offsets (an undecodable
    record batch, ``offset``..``last_offset``); ``truncated`` when ``raw`` was cut short.
    """
    try:
        original, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        original, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return encode({
        "reason": reason,
        "error": detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "index": index,
        "key": key.decode("utf-8", "replace") if key is not None else None,
        "original": original,
        "original_encoding": encoding,
        **({"last_offset": last_offset} if last_offset is not None else {}),
        **({"original_truncated": True} if truncated else {}),
        "ts": now,
    })
