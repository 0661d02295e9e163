"""State is bounded: caps on users, items, follower tables and remembered pools hold under load."""
from __future__ import annotations

from online.base import Interaction
from online.blend import BlendConfig
from online.engine import EngineConfig, StreamingRecommender


def test_every_table_respects_its_cap():
    config = EngineConfig(k=5, max_users=6, max_items=9, max_seen=4, history_len=3).replace(
        followers_cap=2, cooc_cap=3, mf_factors=4, river_factors=3,
        blend=BlendConfig.parse("popularity,next_item,cooccurrence,mf,river_mf"))
    engine = StreamingRecommender(config)
    events = [Interaction(f"u{n % 40}", f"i{(n * 7) % 53}", float(n)) for n in range(1200)]
    for start in range(0, len(events), 10):
        chunk = events[start:start + 10]
        engine.learn_many(chunk)
        for user in {e.user_id for e in chunk}:
            engine.recommend(user)
    assert engine.n_users <= 6 and engine.users_evicted > 0
    assert all(len(s.history) <= 3 and len(s.seen) <= 4 for s in engine._users.values())
    strategies = engine.blend.strategies
    assert len(strategies["popularity"]) <= 9
    for name in ("next_item", "cooccurrence"):
        seq = strategies[name]
        assert len(seq._followers) <= 9 and len(seq._recent) <= 6
        assert all(len(table) <= 2 * seq.followers_cap for table in seq._followers.values())
    mf = strategies["mf"]
    assert mf.n_users <= 6 and mf.n_items <= 9 and len(mf._P) <= 6 and len(mf._Q) <= 9
    river = strategies["river_mf"]
    assert len(river._model.u_latents) <= 6 and len(river._model.i_latents) <= 9
    assert len(engine.blend.learner._pools) <= 6
    ranked = engine.recommend("u1").items
    assert len(ranked) == len({item for item, _ in ranked})
