"""Hot swap: newer versions go live, bad files never do, readers never see a half-loaded model."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from models.checkpoint import build_model, checkpoint_path, load_checkpoint, save_checkpoint
from models.errors import CheckpointError, IncompatibleCheckpoint
from models.hot_swap import ModelSlot

HISTORY = ["i1", "i2", "i3"]
ITEMS = [f"i{j}" for j in range(30)]


def test_loads_newer_versions_only(write_checkpoint) -> None:
    slot = ModelSlot()
    first = slot.load_if_newer(write_checkpoint(1))
    assert (first.swapped, first.version, first.previous) == (True, 1, None)
    again = slot.load_if_newer(write_checkpoint(1, directory=write_checkpoint(2).parent / "other"))
    assert not again.swapped and again.candidate == 1 and "not newer" in again.reason
    second = slot.load_if_newer(checkpoint_path(write_checkpoint(1).parent, 2))
    assert (second.swapped, second.version, second.previous) == (True, 2, 1)
    assert slot.scorer is not None and slot.scorer.version == 2 and slot.swaps == 2


def test_announced_stale_version_is_skipped_without_reading(write_checkpoint, tmp_path: Path) -> None:
    slot = ModelSlot()
    slot.load_if_newer(write_checkpoint(5))
    result = slot.load_if_newer(tmp_path / "does-not-exist.pt", version=4)
    assert not result.swapped and result.error is None and slot.version == 5


def _corrupt(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _nan_weights(path: Path) -> Path:
    ckpt = load_checkpoint(path)
    state = {k: (torch.full_like(v, float("nan")) if k == "item_emb.weight" else v)
             for k, v in ckpt.state_dict.items()}
    return save_checkpoint(path, state_dict=state, config=ckpt.config, items=ckpt.items, version=ckpt.version)


def _wrong_shapes(path: Path) -> Path:
    ckpt = load_checkpoint(path)
    state = dict(ckpt.state_dict)
    state["pos_emb.weight"] = torch.zeros(3, 3)
    return save_checkpoint(path, state_dict=state, config=ckpt.config, items=ckpt.items, version=ckpt.version)


@pytest.mark.parametrize("spoil,error", [(_corrupt, CheckpointError), (_nan_weights, CheckpointError),
                                         (_wrong_shapes, IncompatibleCheckpoint)])
def test_bad_file_keeps_the_old_model(write_checkpoint, spoil, error) -> None:
    slot = ModelSlot()
    slot.load_if_newer(write_checkpoint(1))
    old_scorer = slot.scorer
    before = slot.score("u", HISTORY, ITEMS)
    result = slot.load_if_newer(spoil(write_checkpoint(2, seed=1)))
    assert not result.swapped and isinstance(result.error, error) and result.version == 1
    assert slot.scorer is old_scorer and slot.score("u", HISTORY, ITEMS) == before and slot.failures == 1


def test_empty_slot_serves_neutral_answers() -> None:
    slot = ModelSlot()
    assert slot.score("u", HISTORY, ["a", "b"]) == [0.0, 0.0]
    assert slot.candidates("u", HISTORY, 5) == []
    assert slot.learn_many([]) is None


def test_readers_see_old_or_new_never_a_mix(write_checkpoint) -> None:
    paths = [write_checkpoint(v, seed=v) for v in (1, 2, 3)]
    expected = {}
    for path in paths:
        ckpt = load_checkpoint(path)
        with torch.inference_mode():
            scores = build_model(ckpt).full_sort_predict(torch.tensor([[2, 3, 4]])).softmax(-1)[0]
        expected[ckpt.version] = [float(s) for s in scores[1:]]  # the readers ask for ITEMS[1:]
    bad = _corrupt(write_checkpoint(4, seed=4))
    slot = ModelSlot()
    slot.load_if_newer(paths[0])
    stop = threading.Event()
    seen: list[tuple[float, ...]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                seen.append(tuple(slot.score("u", HISTORY, ITEMS[1:])))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    while not seen:  # the readers are serving version 1 before the first swap starts
        threading.Event().wait(0.001)
    results = [slot.load_if_newer(p) for p in (paths[1], bad, paths[2])]
    after = [tuple(slot.score("u", HISTORY, ITEMS[1:])) for _ in range(20)]
    newest = tuple(expected[3])
    for _ in range(5000):  # until a reader thread has been served the newest model too
        if newest in seen[-50:]:
            break
        threading.Event().wait(0.001)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert [r.swapped for r in results] == [True, False, True] and slot.version == 3
    allowed = {tuple(v) for v in expected.values()}
    assert seen and all(s in allowed for s in seen)  # every answer came from one whole model
    assert seen[0] == tuple(expected[1]) and newest in seen  # the readers were served across the swaps
    assert set(after) == {tuple(expected[3])}  # (a reader may still finish on the model it started with)


def test_concurrent_loads_are_serialised(write_checkpoint) -> None:
    paths = [write_checkpoint(v) for v in range(1, 6)]
    slot = ModelSlot()
    threads = [threading.Thread(target=slot.load_if_newer, args=(p,)) for p in reversed(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert slot.version == 5  # whatever the order, the newest wins and an older one never replaces it
