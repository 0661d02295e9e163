"""``config-updates``: the engine configs the tuner (``streamrec tuner``) found better, with their evidence.

One JSON object per announcement::

    {"version": 3, "settings": {"blend": "popularity=0.2,cooccurrence=1.0", "k": "10", ...},
     "evidence": {"gain": 0.12, "serving_hr": 0.25, ...}, "ts": 1700000000.5}

``settings`` holds every setting of the engine section and ``k``, by flat name, as the
strings :meth:`stream.settings.Setting.format` writes (the same strings as ``STREAMREC_*``
variables and ``streamrec eval --set``), so the config is read back by the one settings
parser. ``evidence`` is ``online.search.SearchResult.evidence()``; ``version`` grows by one
per announcement; workers serve the newest (``stream.worker.config_handover``).

This module sits below ``stream.settings`` (layering): the caller hands in a ``Settings``
(``Settings()``; only its parser and its engine section's names are used), so nothing
here imports the settings.

Anyone who can produce to the topic can write anything into it: :func:`decode_config_update`
raises ``ValueError`` saying what is wrong (not JSON, not an object, a missing or wrong-typed
field, an unknown or non-engine setting, a value the settings refuse, NaN or infinity
anywhere, nesting too deep) and never anything else.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: A larger announcement is refused unread (a real one is a few kilobytes).
MAX_BYTES = 1_000_000
#: The serving setting that travels with the engine section.
_SERVING_NAMES = ("k",)


@dataclass(frozen=True)
class ConfigUpdate:
    """One announcement, decoded: the config to serve (an ``online.engine.EngineConfig``), why, and when."""

    version: int
    config: Any
    evidence: Mapping[str, Any] = field(default_factory=dict)
    ts: float | None = None
    settings: Mapping[str, str] = field(default_factory=dict)


def engine_names(settings: Any) -> tuple[str, ...]:
    """The flat names an announcement may carry: the engine section's, and ``k``."""
    return tuple(leaf.flat for leaf in settings.leaves() if leaf.section == "engine") + _SERVING_NAMES


def config_strings(config: Any, settings: Any) -> dict[str, str]:
    """``config`` (an ``EngineConfig``) as ``{flat name: string}`` over :func:`engine_names`."""
    serving = settings.with_engine(config)
    by_flat = {leaf.flat: leaf for leaf in settings.leaves()}
    return {name: by_flat[name].format(serving.get(name)) for name in engine_names(settings)}


def _plain(value: Any) -> Any:
    """``value`` as strict JSON data: non-finite floats become ``None`` (a search with no finished
    trial reports an infinite standard error), anything unknown its ``str``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return str(value)


def encode_config_update(version: int, config: Any, evidence: Mapping[str, Any], *, settings: Any,
                         ts: float) -> bytes:
    """The announcement of ``config`` as version ``version`` (``settings``: any ``Settings``, for the
    names and the formatting)."""
    note = {"version": int(version), "settings": config_strings(config, settings),
            "evidence": _plain(dict(evidence)), "ts": float(ts)}
    return json.dumps(note, allow_nan=False).encode()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _whole_number(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise ValueError(f"{what} {value!r} is not a whole number")
    return int(value)


def decode_config_update(raw: bytes | None, settings: Any) -> ConfigUpdate:
    """The announcement in ``raw``, its config built by ``settings`` (give ``Settings()``: the
    announcement carries every engine setting; any it leaves out takes ``settings``' value).

    ``ValueError`` for anything unreadable (see the module docstring), nothing else.
    """
    try:
        if raw is None or len(raw) == 0:
            raise ValueError("empty message")
        if len(raw) > MAX_BYTES:
            raise ValueError(f"{len(raw)} bytes > {MAX_BYTES}")
        note = json.loads(raw, parse_constant=_refuse_constant)
        if not isinstance(note, dict):
            raise ValueError(f"not a JSON object but {type(note).__name__}")
        missing = [name for name in ("version", "settings") if name not in note]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        version = _whole_number(note["version"], "version")
        if version < 1:
            raise ValueError(f"version {version} is not >= 1")
        strings = note["settings"]
        if not isinstance(strings, dict) or not strings:
            raise ValueError("settings is not a non-empty object of setting names to strings")
        allowed = set(engine_names(settings))
        unknown = sorted(name for name in strings if name not in allowed)
        if unknown:
            raise ValueError(f"settings outside the engine section: {', '.join(map(repr, unknown[:5]))}")
        wrong = sorted(name for name, text in strings.items() if not isinstance(text, str))
        if wrong:
            raise ValueError(f"settings whose values are not strings: {', '.join(wrong[:5])}")
        chosen = settings.with_strings(strings, source="config-updates")
        for name in strings:
            value = chosen.get(name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}={strings[name]!r} is not finite")
        config = chosen.engine_config()
        evidence = note.get("evidence", {})
        if evidence is None:
            evidence = {}
        if not isinstance(evidence, dict):
            raise ValueError(f"evidence is not an object but {type(evidence).__name__}")
        ts = note.get("ts")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
            raise ValueError(f"ts {ts!r} is not a number")
        return ConfigUpdate(version, config, evidence, None if ts is None else float(ts), dict(strings))
    except ValueError:
        raise
    except Exception as exc:  # TypeError, RecursionError, a record's own complaint: all mean "unreadable"
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
