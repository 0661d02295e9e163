"""The garbage collector's pauses, measured, and the start-up heap kept out of them.

A worker holds millions of small objects (user histories, count tables), and CPython's full
collections walk every tracked object while the event loop waits: a pause that lands on whichever
list is being built. Two things here: every collection's duration goes to a histogram by generation
(``streamrec_gc_pause_seconds``), so a latency tail can be told apart from the collector's; and
:func:`freeze_startup` moves everything alive once the worker has started (Faust, aiokafka, numpy,
torch if loaded, a restored snapshot) into the permanent generation, which no collection walks again.
"""
from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

_started: dict[int, float] = {}


def install(pauses: Histogram) -> None:
    """Observe every collection's duration in ``pauses`` (labelled by generation)."""

    def callback(phase: str, info: dict[str, Any]) -> None:
        generation = info.get("generation", 0)
        if phase == "start":
            _started[generation] = time.perf_counter()
        elif generation in _started:
            pauses.labels(str(generation)).observe(time.perf_counter() - _started.pop(generation))

    gc.callbacks.append(callback)


def freeze_startup() -> int:
    """Collect once, then exempt every surviving object from later collections; returns how many
    objects were frozen (they are still freed by reference counting when they die)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
