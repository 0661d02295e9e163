"""What one strategy adds, measured on the stream (``online.shadow``): each served list beside the list
served without it, both scored on the user's next event; and the worker's metrics that show it."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from online.base import Interaction
from online.blend import BlendConfig
from online.engine import EngineConfig, StreamingRecommender
from online.search.loop import SelfTunedRecommender
from online.shadow import StrategyShadow
from stream.settings import Settings
from stream.worker.metrics import WorkerMetrics
from stream.worker.processor import EventProcessor
from tests.test_online.helpers import EncoderVersion, stream
from tests.test_stream.test_processor import _event, _msg

#: an encoder that puts an item nobody has touched yet first for everyone
BOOSTS_NEW = {"new": 50.0, "i1": 1.0}
BLEND = BlendConfig.parse("popularity=0.2,next_item=0.2")


def _engine():
    engine = StreamingRecommender(EngineConfig(k=5, blend=BLEND))
    engine.learn_many(stream(300))
    return engine


def test_a_hit_is_owed_to_the_encoder_when_only_the_list_with_it_had_the_item():
    engine = _engine()
    engine.blend.fill("encoder", EncoderVersion(3, BOOSTS_NEW), weight=1.0)
    shadow = StrategyShadow("encoder")
    ranking = engine.recommend("u1")
    assert ("encoder", 3) in ranking.versions
    shadow.observe(engine, "u1", None, (), ranking)
    served = [item for item, _ in ranking.items]
    assert "new" in served
    shadow.score([Interaction("u1", "new", 1e6)])
    assert (shadow.evaluated, shadow.hits, shadow.shadow_hits, shadow.owed, shadow.lost) == (1, 1, 0, 1, 0)
    assert engine.blend.weights["encoder"] > 0  # ranking the shadow changed nothing served


def test_the_shadow_is_ranked_by_the_plain_engine_under_the_self_tuning_loop():
    tuned = SelfTunedRecommender(EngineConfig(k=5, blend=BLEND), searcher=None)
    tuned.learn_many(stream(300))
    tuned.blend.fill("encoder", EncoderVersion(1, BOOSTS_NEW), weight=1.0)
    shadow = StrategyShadow("encoder")
    shadow.observe(tuned, "u2", None, (), tuned.recommend("u2"))
    shadow.score([Interaction("u2", "new", 1e6)])
    assert shadow.owed == 1 and shadow.hits == 1 and shadow.shadow_hits == 0


@pytest.mark.parametrize("unweighed", [True, False])
def test_lists_the_encoder_did_not_weigh_in_on_are_their_own_shadow_or_not_measured(unweighed):
    engine = _engine()  # no encoder slot at all
    shadow = StrategyShadow("encoder", unweighed=unweighed)
    for event in stream(100, seed=1):
        shadow.score([event])
        engine.learn_many([event])
        shadow.observe(engine, event.user_id, None, (), engine.recommend(event.user_id))
    if unweighed:
        assert shadow.evaluated > 50 and shadow.hits == shadow.shadow_hits and shadow.owed == shadow.lost == 0
    else:
        assert shadow.evaluated == 0


def test_one_user_in_every_is_measured_and_always_the_same_ones():
    shadow = StrategyShadow(every=4)
    users = [f"user{n}" for n in range(4_000)]
    measured = [user for user in users if shadow.measures(user)]
    assert 800 < len(measured) < 1_200
    assert measured == [user for user in users if StrategyShadow(every=4).measures(user)]
    with pytest.raises(ValueError):
        StrategyShadow(every=0)


def test_a_worker_reports_hr_with_and_without_the_encoder_while_it_serves():
    registry = CollectorRegistry()
    processor = EventProcessor(Settings.of(blend="popularity=0.2,next_item=0.2", k=5, encoder_shadow_every=1),
                               metrics=WorkerMetrics.create(registry), clock=lambda: 2000.0)
    processor.process_events([_msg([_event(f"u{n % 5}", f"i{n % 7}", ts=n) for n in range(40)], offset=0)])
    processor.engine.blend.fill("encoder", EncoderVersion(2, {"new": 50.0}), weight=1.0)
    processor.process_events([_msg([_event(f"u{n}", "i1", ts=100 + n) for n in range(5)], offset=1)])  # lists
    processor.process_events([_msg([_event(f"u{n}", "new", ts=200 + n) for n in range(5)], offset=2)])  # scored

    def sample(name, **labels):
        return registry.get_sample_value(name, labels)

    assert sample("streamrec_encoder_shadow_hits", kind="evaluated") == 5
    assert sample("streamrec_encoder_shadow_hit_rate", lists="served") == 1.0
    assert sample("streamrec_encoder_shadow_hit_rate", lists="without_encoder") < 1.0
    assert sample("streamrec_encoder_shadow_hits", kind="owed") >= 1
    off = EventProcessor(Settings.of(encoder_shadow_every=0), clock=lambda: 2000.0)
    assert off.encoder_shadow is None
