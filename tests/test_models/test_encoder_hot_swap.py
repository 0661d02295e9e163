"""Hot swap: the loader loads newer versions and never a bad file; the blend's StrategySlot serves them,
and a request is answered by one whole model, the one held when it began."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

import models.hot_swap as hot_swap
from models.checkpoint import build_model, checkpoint_path, load_checkpoint, save_checkpoint
from models.errors import CheckpointError, IncompatibleCheckpoint
from models.hot_swap import EncoderLoader
from models.serving import EncoderScorer
from online.blend import StrategySlot

HISTORY = ["i1", "i2", "i3"]
ITEMS = [f"i{j}" for j in range(30)]


def _serve(slot: StrategySlot, items: list[str] = ITEMS) -> list[float]:
    """One request through the slot, as the blend makes it."""
    return list(slot.scorer("u", HISTORY).score(items))


# ---- the loader --------------------------------------------------------------------------

def test_loads_newer_versions_only(write_checkpoint) -> None:
    loader = EncoderLoader()
    first = loader.load_if_newer(write_checkpoint(1))
    assert (first.loaded, first.version, first.previous) == (True, 1, None)
    assert isinstance(first.scorer, EncoderScorer) and first.scorer.version == 1
    again = loader.load_if_newer(write_checkpoint(1, directory=write_checkpoint(2).parent / "other"))
    assert not again.loaded and again.candidate == 1 and "not newer" in again.reason
    assert again.scorer is None and again.error is None
    second = loader.load_if_newer(checkpoint_path(write_checkpoint(1).parent, 2))
    assert (second.loaded, second.version, second.previous) == (True, 2, 1)
    assert second.scorer is not None and second.scorer.version == 2 and second.scorer is not first.scorer
    assert loader.version == 2 and loader.loads == 2 and loader.failures == 0


def test_announced_stale_version_is_skipped_without_reading(write_checkpoint, tmp_path: Path) -> None:
    loader = EncoderLoader()
    loader.load_if_newer(write_checkpoint(5))
    result = loader.load_if_newer(tmp_path / "does-not-exist.pt", version=4)
    assert not result.loaded and result.error is None and result.scorer is None
    assert result.candidate == 4 and loader.version == 5 and loader.failures == 0


def test_the_loader_holds_nothing_served() -> None:
    loader = EncoderLoader()
    for name in ("current", "scorer", "score", "candidates", "learn_many", "name"):
        assert not hasattr(loader, name), name


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
def test_bad_file_is_refused_with_its_reason_and_the_served_model_stays(write_checkpoint, spoil, error) -> None:
    loader = EncoderLoader()
    slot = StrategySlot("encoder")
    slot.swap(loader.load_if_newer(write_checkpoint(1)).scorer)
    old_scorer = slot.strategy
    before = _serve(slot)
    result = loader.load_if_newer(spoil(write_checkpoint(2, seed=1)))
    assert not result.loaded and isinstance(result.error, error) and result.version == 1
    assert result.scorer is None and result.reason == str(result.error) and result.candidate in (2, None)
    assert loader.version == 1 and loader.failures == 1 and loader.loads == 1
    assert slot.strategy is old_scorer and _serve(slot) == before  # nothing to swap in: version 1 still serves
    after = loader.load_if_newer(write_checkpoint(3, seed=3))  # and the loader keeps going
    assert (after.loaded, after.version, after.previous) == (True, 3, 1) and after.scorer.version == 3


def test_concurrent_loads_are_serialised(write_checkpoint, monkeypatch) -> None:
    paths = [write_checkpoint(v) for v in range(1, 6)]
    active, most = [0], [0]
    guard = threading.Lock()
    read = hot_swap.load_checkpoint

    def counting_read(path):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.01)  # give another thread the chance to overlap, if it could
            return read(path)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(hot_swap, "load_checkpoint", counting_read)
    loader = EncoderLoader()
    results = []
    threads = [threading.Thread(target=lambda p=p: results.append(loader.load_if_newer(p))) for p in reversed(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1  # one load at a time
    assert loader.version == 5  # whatever the order, the newest wins and an older one never replaces it
    loaded = [r.version for r in results if r.loaded]  # in the order the loads finished
    assert loaded == sorted(set(loaded)) and loaded[-1] == 5 and loader.loads == len(loaded)
    assert all("not newer" in r.reason and r.scorer is None for r in results if not r.loaded)
    assert loader.failures == 0


# ---- serving through the blend's slot ----------------------------------------------------

def test_empty_slot_serves_neutral_answers() -> None:
    slot = StrategySlot("encoder")
    assert slot.score("u", HISTORY, ["a", "b"]) == [0.0, 0.0]
    assert slot.candidates("u", HISTORY, 5) == []
    assert slot.learn_many([]) is None
    view = slot.scorer("u", HISTORY)
    assert list(view.score(["a", "b"])) == [0.0, 0.0] and view.candidates(5) == [] and view.version is None


def _expected(paths: list[Path]) -> dict[int, list[float]]:
    """Each version's scores of ITEMS[1:] for HISTORY, from a scorer of its own checkpoint alone (that the
    scorer's numbers are the encoder's is ``test_encoder_serving.py``'s and ``test_incremental_states.py``'s)."""
    expected = {}
    for path in paths:
        ckpt = load_checkpoint(path)
        alone = EncoderScorer(build_model(ckpt), ckpt.items, version=ckpt.version)
        expected[ckpt.version] = alone.score("u", HISTORY, ITEMS[1:])
    return expected


def test_a_request_finishes_on_the_version_it_began_with(write_checkpoint) -> None:
    paths = [write_checkpoint(v, seed=v) for v in (1, 2)]
    expected = _expected(paths)
    loader = EncoderLoader()
    slot = StrategySlot("encoder")
    slot.swap(loader.load_if_newer(paths[0]).scorer)
    pinned = slot.scorer("u", HISTORY)  # a request begins on version 1
    first = pinned.candidates(5)
    result = loader.load_if_newer(paths[1])
    assert slot.swap(result.scorer).version == 1  # version 2 swapped in mid-request
    assert pinned.version == 1 and list(pinned.score(ITEMS[1:])) == expected[1]
    assert pinned.candidates(5) == first
    fresh = slot.scorer("u", HISTORY)  # the next request gets version 2
    assert fresh.version == 2 and list(fresh.score(ITEMS[1:])) == expected[2]


def test_readers_see_old_or_new_never_a_mix(write_checkpoint) -> None:
    paths = [write_checkpoint(v, seed=v) for v in (1, 2, 3)]
    expected = _expected(paths)  # the readers ask for ITEMS[1:]
    bad = _corrupt(write_checkpoint(4, seed=4))
    loader = EncoderLoader()
    slot = StrategySlot("encoder")
    slot.swap(loader.load_if_newer(paths[0]).scorer)
    stop = threading.Event()
    seen: list[tuple[float, ...]] = []
    pinned: list[tuple[int, tuple[float, ...]]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                request = slot.scorer("u", HISTORY)
                scores = tuple(request.score(ITEMS[1:]))
                seen.append(scores)
                pinned.append((request.version, scores))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def swap_in(path: Path):
        result = loader.load_if_newer(path)
        if result.loaded:  # the caller serves what the loader loaded
            slot.swap(result.scorer)
        return result

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    while not seen:  # the readers are serving version 1 before the first swap starts
        threading.Event().wait(0.001)
    results = [swap_in(p) for p in (paths[1], bad, paths[2])]
    after = [tuple(_serve(slot, ITEMS[1:])) for _ in range(20)]
    newest = tuple(expected[3])
    for _ in range(5000):  # until a reader thread has been served the newest model too
        if newest in seen[-50:]:
            break
        threading.Event().wait(0.001)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert [r.loaded for r in results] == [True, False, True] and loader.version == 3
    assert slot.strategy is results[2].scorer and slot.strategy.version == 3
    allowed = {tuple(v) for v in expected.values()}
    assert seen and all(s in allowed for s in seen)  # every answer came from one whole model
    assert all(scores == tuple(expected[version]) for version, scores in pinned)  # ... the one it was pinned to
    assert seen[0] == tuple(expected[1]) and newest in seen  # the readers were served across the swaps
    assert set(after) == {tuple(expected[3])}  # (a reader may still finish on the model it started with)


def test_loading_a_version_imports_no_compiler(write_checkpoint) -> None:
    """A worker's first load once imported torch._dynamo and sympy (the embeddings' random init on the meta
    device: ~900 modules, a second, 150,000 objects every full collection walked); a shell for a
    checkpoint's weights takes no init."""
    path = write_checkpoint(1)
    assert _printed_by_a_fresh_process(
        "import sys, torch\n"
        "from models.checkpoint import build_model, load_checkpoint\n"
        "before = 'torch._dynamo' in sys.modules\n"
        f"model = build_model(load_checkpoint({str(path)!r}))\n"
        "print(before, 'torch._dynamo' in sys.modules, 'sympy' in sys.modules)") == ["False", "False", "False"]


def test_a_prepared_loader_serves_nothing_and_its_first_load_imports_nothing_more(write_checkpoint) -> None:
    """``prepare`` pays, on a throwaway model, what only a process's first load pays (imports, the compiled
    kernel read from its cache), so that a worker can pay it before any list waits: afterwards the first
    real load imports no module at all (without it, ~190: numba's typing and more). It loads no version."""
    path = write_checkpoint(1)
    assert _printed_by_a_fresh_process(
        "import sys\n"
        "from models import EncoderLoader\n"
        "loader = EncoderLoader()\n"
        "loader.prepare()\n"
        "print(loader.version, loader.loads, loader.failures)\n"
        "before = set(sys.modules)\n"
        f"result = loader.load_if_newer({str(path)!r})\n"
        "print(result.loaded, result.version, len(set(sys.modules) - before))") == ["None", "0", "0", "True", "1", "0"]


def _printed_by_a_fresh_process(probe: str) -> list[str]:
    """What ``probe`` prints, run by a new interpreter in the repository (a process's first imports are the
    subject, and this one's are long done)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=root).stdout.split()
