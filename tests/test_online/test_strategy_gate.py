"""The encoder earns its place in every list (``online.shadow.StrategyGate``): a strategy whose lists lose
significantly more hits than they win on the stream is muted (held, measured, not served), and comes back
when that is no longer so."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from online.base import Interaction
from online.blend import BlendConfig
from online.engine import EngineConfig, StreamingRecommender
from online.shadow import StrategyGate, StrategyShadow
from stream.settings import Settings
from stream.worker.metrics import WorkerMetrics
from stream.worker.processor import EventProcessor
from tests.test_online.helpers import EncoderVersion, stream
from tests.test_stream.test_processor import _event, _msg

#: an encoder that fills the top of every list with items nobody touches
JUNK = {f"junk{n}": 50.0 - n for n in range(10)}
BLEND = BlendConfig.parse("popularity=0.2,next_item=0.2")


@pytest.mark.parametrize(("owed", "lost", "serving"), [
    (0, 0, True),      # no record: serve
    (0, 4, True),      # four losses in a row happen by chance one time in eight
    (0, 7, False),     # seven do not (McNemar's z -2.27)
    (40, 60, True),    # more losses, not significantly more (z -1.9)
    (40, 70, False),   # significantly more (z -2.76)
    (100, 10, True),   # a strategy that helps
])
def test_the_gate_mutes_only_when_losses_outnumber_wins_beyond_chance(owed, lost, serving):
    gate = StrategyGate(z_mute=1.96)
    gate.add(owed, lost, version=1)
    assert gate.serving is serving


def test_a_new_version_is_judged_mostly_on_its_own_lists():
    gate = StrategyGate()
    gate.add(owed=10, lost=40, version=1)
    assert not gate.serving and gate.mutes == 1
    gate.add(0, 0, version=2)  # the record so far counts half: still clearly worse
    assert (gate.owed, gate.lost) == (5.0, 20.0) and not gate.serving
    gate.add(owed=30, lost=5)  # the new version wins
    assert gate.serving
    gate.add(owed=0, lost=0, version=2)  # the same version again: nothing halves
    assert (gate.owed, gate.lost) == (35.0, 25.0)


def test_the_gate_refuses_settings_that_mean_nothing():
    with pytest.raises(ValueError):
        StrategyGate(z_mute=0)
    with pytest.raises(ValueError):
        StrategyGate(carry=1.5)


def test_a_muted_slot_serves_nothing_but_keeps_its_version_for_handovers_and_for_measuring():
    engine = StreamingRecommender(EngineConfig(k=5, blend=BLEND))
    engine.learn_many(stream(300))
    slot = engine.blend.fill("encoder", EncoderVersion(4, JUNK), weight=1.0)
    assert engine.recommend("u1").versions == (("encoder", 4),)
    slot.muted = True
    muted = engine.recommend("u1")
    assert muted.versions == () and not any(item.startswith("junk") for item, _ in muted.items)
    assert slot.strategy.version == 4  # still held
    with_it = engine.recommend("u1", record=False, substitutes={"encoder": slot.unmuted()})
    assert with_it.versions == (("encoder", 4),) and with_it.items[0][0] == "junk0"


def test_while_muted_the_list_with_the_strategy_is_ranked_beside_the_served_one():
    engine = StreamingRecommender(EngineConfig(k=5, blend=BLEND))
    engine.learn_many(stream(300))
    engine.blend.fill("encoder", EncoderVersion(4, JUNK), weight=1.0).muted = True
    shadow = StrategyShadow("encoder", unweighed=False)
    served = engine.recommend("u1")
    shadow.observe(engine, "u1", None, (), served, muted=True)
    hit = served.items[0][0]  # the user's next item is the served list's first: a hit lost to the encoder
    assert shadow.score([Interaction("u1", hit, 1e6)]) == (0, 1)
    assert (shadow.hits, shadow.shadow_hits) == (0, 1)  # "hits": the list with it; "shadow": without it


def _worker(gate_z: float) -> tuple[EventProcessor, CollectorRegistry]:
    """A worker whose blend ranks by the weighted sum: an encoder at weight 1 then moves every list. (Under the
    network ranker, which learns from the stream which strategies' scores to follow, the junk here did not lose
    enough hits for the gate to mute it.)"""
    registry = CollectorRegistry()
    settings = Settings.of(blend="popularity=0.2,next_item=0.2", k=5, encoder_shadow_every=1, encoder_gate_z=gate_z,
                           ranker="weighted_sum")
    return EventProcessor(settings, metrics=WorkerMetrics.create(registry), clock=lambda: 2000.0), registry


def _replay(processor: EventProcessor, events: list[Interaction], offset: int = 0) -> list:
    """Each event as its own message, one micro-batch each: the lists served for them."""
    lists = []
    for n, event in enumerate(events):
        result = processor.process_events([_msg(_event(event.user_id, event.item_id, ts=event.ts), offset + n)])
        lists.extend(result.recommendations)
    return lists


def _served(encoder, gate_z: float, n_events: int) -> tuple[EventProcessor, CollectorRegistry, list]:
    """A worker that learned 300 events, then serves ``encoder`` at weight 1 through the rest: its lists."""
    processor, registry = _worker(gate_z)
    events = stream(n_events, items=100, seed=3)
    _replay(processor, events[:300])
    processor.engine.blend.fill("encoder", encoder, weight=1.0)
    return processor, registry, _replay(processor, events[300:], offset=300)


def test_a_worker_mutes_an_encoder_that_costs_hits_and_says_so_in_its_metrics():
    processor, registry, lists = _served(EncoderVersion(2, JUNK), gate_z=1.96, n_events=1_200)
    gate = processor.encoder_gate
    assert gate is not None and not gate.serving and gate.lost > gate.owed
    assert registry.get_sample_value("streamrec_encoder_gate") == 0.0
    assert registry.get_sample_value("streamrec_encoder_gate_z") < -1.96
    served_by = [output.value for output in lists[-100:]]
    assert all(b'"model_version":"online"' in value for value in served_by)  # served without it
    assert processor.engine.blend.strategies["encoder"].strategy.version == 2  # held, measured
    assert processor.encoder_shadow.evaluated > 600  # the measurement went on while muted


def test_without_the_gate_the_same_encoder_keeps_serving():
    processor, registry, lists = _served(EncoderVersion(2, JUNK), gate_z=0, n_events=600)
    assert processor.encoder_gate is None and processor.encoder_shadow.lost > processor.encoder_shadow.owed
    assert all(b'"model_version":"encoder-v2"' in output.value for output in lists[-50:])
    assert registry.get_sample_value("streamrec_encoder_gate") == 1.0  # nothing muted


class WalkEncoder:
    """An encoder that knows how ``stream``'s users walk: from item ``i<p>`` to ``i<p+1>`` most of the time
    (the next-item model learns only the steps it has seen someone take)."""

    name, version = "encoder", 7

    def __init__(self, items: int) -> None:
        self.items = items

    def learn_many(self, interactions) -> None:
        pass

    def _next(self, history) -> str | None:
        return f"i{(int(history[-1][1:]) + 1) % self.items}" if history else None

    def candidates(self, user_id, history, n):
        step = self._next(history)
        return [step] if step else []

    def score(self, user_id, history, items):
        step = self._next(history)
        return [1.0 if item == step else 0.0 for item in items]


def test_an_encoder_that_helps_is_never_muted():
    processor, _, lists = _served(WalkEncoder(100), gate_z=1.96, n_events=1_200)
    gate, shadow = processor.encoder_gate, processor.encoder_shadow
    assert gate is not None and gate.mutes == 0 and gate.serving and shadow.owed > 2 * shadow.lost
    assert all(b'"model_version":"encoder-v7"' in output.value for output in lists[-50:])


class PreparingJunk(EncoderVersion):
    """JUNK that batches like the real encoder: remembers the users each micro-batch prepared."""

    def __init__(self) -> None:
        super().__init__(3, JUNK)
        self.prepared: list[list[str]] = []

    def prepare(self, requests) -> int:
        self.prepared.append([user_id for user_id, _ in requests])
        return 0


def test_while_muted_a_worker_prepares_the_encoder_only_for_the_users_it_measures():
    registry = CollectorRegistry()
    settings = Settings.of(blend="popularity=0.2,next_item=0.2", k=5, encoder_shadow_every=2, encoder_gate_z=1.96,
                           ranker="weighted_sum")
    processor = EventProcessor(settings, metrics=WorkerMetrics.create(registry), clock=lambda: 2000.0)
    events = stream(2_400, users=40, items=100, seed=3)
    _replay(processor, events[:300])
    junk = PreparingJunk()
    processor.engine.blend.fill("encoder", junk, weight=1.0)
    _replay(processor, events[300:], offset=300)
    assert not processor.encoder_gate.serving
    measured = processor.encoder_shadow.measures
    late = [user for batch in junk.prepared[-200:] for user in batch]
    assert late and all(measured(user) for user in late)
    assert any(not measured(user) for batch in junk.prepared[:5] for user in batch)  # served: everyone
