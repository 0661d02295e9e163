"""The worker's long-lived objects stay out of the garbage collector's full walks (``stream.worker.gc_pauses``)."""
from __future__ import annotations

import gc

import pytest

from stream.worker import gc_pauses


@pytest.fixture()
def unfrozen():
    yield
    gc.unfreeze()  # the permanent generation back to the oldest one: later tests see a normal heap


def test_what_a_late_import_leaves_alive_is_frozen_with_no_collection_while_it_ran(unfrozen) -> None:
    starts: list[int] = []
    watch = lambda phase, info: starts.append(info["generation"]) if phase == "start" else None  # noqa: E731
    gc.callbacks.append(watch)
    try:
        with gc_pauses.late_import_frozen():
            assert not gc.isenabled()
            imported = [[n] for n in range(100_000)]  # enough allocations to trigger collections if enabled
        assert starts == []
    finally:
        gc.callbacks.remove(watch)
    assert gc.isenabled()
    walked = {id(obj) for obj in gc.get_objects()}
    assert not any(id(obj) in walked for obj in imported[:: 1_000])
    assert gc.get_freeze_count() >= len(imported)


def test_a_collector_disabled_before_stays_disabled(unfrozen) -> None:
    gc.disable()
    try:
        with gc_pauses.late_import_frozen():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_start_up_freeze_leaves_nothing_alive_for_a_full_collection_to_walk(unfrozen) -> None:
    alive = [[n] for n in range(10_000)]
    assert gc_pauses.freeze_startup() >= len(alive)
    walked = {id(obj) for obj in gc.get_objects()}
    assert not any(id(obj) in walked for obj in alive)
