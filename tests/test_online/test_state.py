"""Snapshots: restore gives the same rankings and learns on identically; bad files are refused."""
from __future__ import annotations

import pickle

import pytest

from online.blend import BlendConfig
from online.engine import EngineConfig, StreamingRecommender
from online.errors import SnapshotError
from online.state import FORMAT_VERSION, MAGIC, load_snapshot, save_snapshot
from tests.test_online.helpers import stream

CONFIG = EngineConfig(k=5).replace(blend=BlendConfig.parse("popularity=0.2,cooccurrence=1,next_item=0.3,mf=0.3,"
                                                          "river_mf=0.1,encoder=0.1"), mf_factors=4, river_factors=3)


def _ranks(engine, users=("u0", "u1", "u5", "u11", "stranger")):
    return [engine.recommend(user, record=False).items for user in users]


def test_round_trip_keeps_rankings_offsets_and_future_learning(tmp_path):
    engine = StreamingRecommender(CONFIG)
    events = stream(400)
    engine.learn_many(events[:300])
    path = save_snapshot(engine, tmp_path / "snap" / "engine.snap", offsets={"events": {"0": 300}},
                         metadata={"worker": "w1"})
    restored = load_snapshot(path)
    assert restored.offsets == {"events": {"0": 300}} and restored.metadata == {"worker": "w1"}
    assert restored.format == FORMAT_VERSION and restored.created > 0
    copy = restored.engine
    assert _ranks(copy) == _ranks(engine)
    assert copy.blend.weights == engine.blend.weights and copy.stats() == engine.stats()
    engine.learn_many(events[300:])
    copy.learn_many(events[300:])
    assert _ranks(copy) == _ranks(engine)
    assert not list(tmp_path.joinpath("snap").glob("*.tmp"))


def test_the_encoder_is_not_in_the_snapshot(tmp_path):
    engine = StreamingRecommender(CONFIG)
    engine.blend.strategies["encoder"].swap(engine.popularity)
    copy = load_snapshot(save_snapshot(engine, tmp_path / "e.snap")).engine
    assert copy.blend.strategies["encoder"].strategy is None


def test_refuses_missing_foreign_corrupt_and_future_files(tmp_path):
    with pytest.raises(SnapshotError, match="no snapshot"):
        load_snapshot(tmp_path / "missing")
    (tmp_path / "foreign").write_bytes(b"hello")
    with pytest.raises(SnapshotError, match="not a streamrec"):
        load_snapshot(tmp_path / "foreign")
    good = save_snapshot(StreamingRecommender(), tmp_path / "good")
    (tmp_path / "cut").write_bytes(good.read_bytes()[:60])
    with pytest.raises(SnapshotError, match="corrupt"):
        load_snapshot(tmp_path / "cut")
    (tmp_path / "future").write_bytes(MAGIC + pickle.dumps({"format": FORMAT_VERSION + 1}))
    with pytest.raises(SnapshotError, match="format"):
        load_snapshot(tmp_path / "future")
    (tmp_path / "other").write_bytes(MAGIC + pickle.dumps({"format": FORMAT_VERSION, "engine": 42}))
    with pytest.raises(SnapshotError, match="no engine"):
        load_snapshot(tmp_path / "other")


def test_a_failed_write_leaves_the_old_snapshot(tmp_path, monkeypatch):
    path = save_snapshot(StreamingRecommender(), tmp_path / "engine.snap", offsets={"n": 1})

    def broken(fd, data):
        raise OSError("disk full")

    monkeypatch.setattr("online.state.os.fsync", lambda fd: broken(fd, b""))
    with pytest.raises(OSError):
        save_snapshot(StreamingRecommender(), path, offsets={"n": 2})
    assert load_snapshot(path).offsets == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["engine.snap"]


def test_a_snapshot_whose_followers_cache_is_in_the_old_form_ranks_as_before():
    """Before 2026-12-03 an entry of ``NextItem``'s strongest-followers cache was ``(weight, [(item, share), ...])``;
    such a cache is dropped on load (it is rebuilt on demand), and the lists are the same."""
    engine = StreamingRecommender(EngineConfig(k=5))
    engine.learn_many(stream(300))
    before = _ranks(engine)
    model = engine.next_item
    old = {item: (entry[0], list(zip(entry[1], entry[2]))) for item, entry in model._top.items()}
    assert old, "the lists above filled the cache"
    model._top = old  # as an old snapshot would hold it
    restored = pickle.loads(pickle.dumps(engine))
    assert restored.next_item._top == {}
    assert _ranks(restored) == before
