"""The garbage collector's pauses, measured, and the start-up heap kept out of them.

A worker holds millions of small objects (user histories, count tables), and CPython's full
collections walk every tracked object while the event loop waits: a pause that lands on whichever
list is being built. Two things here: every collection's duration goes to a histogram by generation
(``streamrec_gc_pause_seconds``), so a latency tail can be told apart from the collector's; and
:func:`freeze_startup` moves everything alive once the worker has started (Faust, aiokafka, numpy,
torch if loaded, a restored snapshot) into the permanent generation, which no collection walks again.
:func:`late_import_frozen` does the same once more around the first encoder version's load, which imports
what serving it needs (numba, parts of torch: about 1,100 modules and 200,000 objects that live as long
as the process, without which every later full collection took 70-140 ms more).
"""
from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
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



@contextmanager
def late_import_frozen() -> Iterator[None]:
    """Around a late import of code that lives as long as the process (the encoder's first load): no
    collection while it runs, since each one would walk everything imported so far (three full collections
    of 25-80 ms during the encoder's first load), then everything alive frozen, as at start-up.

    The price, paid once: cyclic garbage made meanwhile is frozen with it (about 7,000 objects for the
    encoder's first load), and collections wait for the few seconds the import takes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
