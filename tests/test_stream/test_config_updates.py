"""``config-updates``: the tuner's winners on the wire, and how a worker serves them (or refuses to)."""
from __future__ import annotations

import asyncio
import json
import math
import random

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from online.base import Interaction
from online.blend import BlendConfig
from online.engine import EngineConfig
from stream.settings import Settings
from stream.wire.config_updates import decode_config_update, encode_config_update, engine_names
from stream.worker.config_handover import ConfigHandover, engine_knobs
from stream.worker.metrics import WorkerMetrics
from stream.worker.processor import EventProcessor

DEFAULTS = Settings()
SEARCHED = EngineConfig(k=10, blend=BlendConfig.parse("popularity=0.2,cooccurrence=1.0,mf=0.4")).replace(
    mf_lr=0.0371234567, cooc_half_life=None, history_len=77)


def _announce(engine_config: EngineConfig, version: int = 1, **evidence) -> bytes:
    return encode_config_update(version, engine_config, {"gain": 0.1, **evidence}, settings=DEFAULTS,
                                ts=1_700_000_000.5)


def _note(**changes) -> bytes:
    note = json.loads(_announce(SEARCHED))
    note.update(changes)
    return json.dumps(note).encode()


# -- the wire ---------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [EngineConfig(), EngineConfig(k=7, blend=BlendConfig()), SEARCHED],
                         ids=["fixed-mix", "default-blend", "searched"])
def test_an_announcement_round_trips_to_the_same_engine_config(config):
    raw = _announce(config, version=4, se=math.inf, config="popularity=0.2 ...")
    update = decode_config_update(raw, DEFAULTS)
    assert update.config == config and update.version == 4 and update.ts == 1_700_000_000.5
    assert update.evidence == {"gain": 0.1, "se": None, "config": "popularity=0.2 ..."}  # strict JSON: inf -> null
    note = json.loads(raw)
    assert set(note["settings"]) == set(engine_names(DEFAULTS)) and "k" in note["settings"]
    assert all(isinstance(text, str) for text in note["settings"].values())


def test_the_settings_strings_are_what_the_environment_and_eval_set_read():
    note = json.loads(_announce(SEARCHED))
    env = DEFAULTS.with_engine(SEARCHED).to_env()
    assert note["settings"]["mf_lr"] == env["STREAMREC_MF_LR"] and note["settings"]["cooc_half_life"] == "none"
    assert Settings.from_env({f"STREAMREC_{name.upper()}": text for name, text in note["settings"].items()}
                             ).engine_config() == SEARCHED


HOSTILE = {
    "empty": b"",
    "none": None,
    "not json": b"this is not json",
    "not utf-8": b"\xff\xfe\x00",
    "a list": b"[1, 2]",
    "a string": b'"config"',
    "no version": _note(version=None).replace(b'"version": null, ', b""),
    "no settings": json.dumps({"version": 2}).encode(),
    "version a string": _note(version="two"),
    "version true": _note(version=True),
    "version 1.5": _note(version=1.5),
    "version 0": _note(version=0),
    "version huge float": b'{"version": 1e999, "settings": {"k": "10"}}',
    "NaN version": b'{"version": NaN, "settings": {"k": "10"}}',
    "NaN in the evidence": _announce(SEARCHED).replace(b'"gain": 0.1', b'"gain": NaN'),
    "Infinity in the evidence": _announce(SEARCHED).replace(b'"gain": 0.1', b'"gain": -Infinity'),
    "settings a list": _note(settings=["blend"]),
    "settings empty": _note(settings={}),
    "a value not a string": _note(settings={"half_life": 5000.0}),
    "an unknown setting": _note(settings={"warp_factor": "9"}),
    "a setting outside the engine": _note(settings={"bootstrap_servers": "evil:9092"}),
    "a non-engine setting": _note(settings={"self_tune": "false"}),
    "half_life nan": _note(settings={"half_life": "nan"}),
    "half_life inf": _note(settings={"half_life": "inf"}),
    "a weight inf": _note(settings={"blend": "popularity=inf"}),
    "a bad blend": _note(settings={"blend": "popularity=1,,=="}),
    "an unknown strategy": _note(settings={"blend": "telepathy=1"}),
    "an int that is not": _note(settings={"history_len": "1e3"}),
    "a value the engine refuses": _note(settings={"history_len": "0"}),
    "evidence a list": _note(evidence=[1]),
    "ts a string": _note(ts="yesterday"),
    "deep nesting": b'{"version": 1, "settings": {"k": "10"}, "evidence": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "oversized": b'{"version": 1, "pad": "' + b"x" * 1_100_000 + b'"}',
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_announcement_is_a_value_error_with_a_reason(raw):
    with pytest.raises(ValueError) as error:
        decode_config_update(raw, DEFAULTS)
    assert str(error.value)


@given(st.binary(max_size=300))
@hypothesis_settings(max_examples=200, deadline=None)
def test_any_bytes_decode_or_raise_value_error_only(raw):
    try:
        decode_config_update(raw, DEFAULTS)
    except ValueError:
        pass


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=3), max_leaves=10)


@given(version=_JSON, strings=st.dictionaries(st.sampled_from(engine_names(DEFAULTS) + ("nope",)),
                                              _JSON | st.text(max_size=12), max_size=4), evidence=_JSON, ts=_JSON)
@hypothesis_settings(max_examples=200, deadline=None)
def test_any_json_announcement_decodes_or_raises_value_error_only(version, strings, evidence, ts):
    raw = json.dumps({"version": version, "settings": strings, "evidence": evidence, "ts": ts}).encode()
    try:
        update = decode_config_update(raw, DEFAULTS)
    except ValueError:
        return
    assert isinstance(update.config, EngineConfig) and update.version >= 1


# -- the worker's handover --------------------------------------------------------------------

def _cycle(n: int, seed: int = 0, users: int = 30, items: int = 60) -> list[Interaction]:
    """Users walk an item cycle (i -> i+1): order is everything."""
    rng = random.Random(seed)
    position = {f"u{u}": rng.randrange(items) for u in range(users)}
    out = []
    for t in range(n):
        user = f"u{rng.randrange(users)}"
        position[user] = (position[user] + 1) % items
        out.append(Interaction(user, f"i{position[user]}", float(t)))
    return out


def _worker(**flat):
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    settings = Settings.of(**{"blend": "popularity=1", **flat})
    processor = EventProcessor(settings, metrics=metrics)
    processor.engine.learn_many(_cycle(1_500))
    handover = ConfigHandover(settings, processor, metrics, asyncio.Lock(), processes=False)
    return processor, handover, registry


def _sample(registry, name, **labels):
    return registry.get_sample_value(name, labels or None)


def test_a_worker_self_tunes_by_default_and_searches_nothing_itself():
    processor = EventProcessor(Settings())
    assert callable(getattr(processor.engine, "commit", None)) and processor.engine.searcher is None
    assert not callable(getattr(EventProcessor(Settings.of(self_tune=False)).engine, "commit", None))
    both = EventProcessor(Settings.of(tuner=True)).engine  # the bandits tune inside the self-tuned engine
    assert callable(getattr(both, "commit", None)) and both.tuning_snapshot()["models"]["mf"]
    bandits_only = EventProcessor(Settings.of(tuner=True, self_tune=False)).engine
    assert not callable(getattr(bandits_only, "commit", None)) and bandits_only.tuning_snapshot()


def test_a_config_that_cannot_be_built_is_refused_and_the_old_engine_keeps_serving():
    processor, handover, registry = _worker()
    engine, config = processor.engine.engine, processor.engine.config
    before = processor.engine.recommend("u1", record=False).items
    broken = EngineConfig(k=10, blend=BlendConfig.parse("mf=1")).replace(mf_factors=0)  # ImplicitMF refuses it
    assert asyncio.run(handover.handle([_announce(broken)])) is None
    assert _sample(registry, "streamrec_config_swaps_total", result="refused") == 1
    assert _sample(registry, "streamrec_config_swaps_total", result="applied") == 0
    assert _sample(registry, "streamrec_config_version") == 0
    assert processor.engine.engine is engine and processor.engine.config == config
    assert processor.engine.recommend("u1", record=False).items == before


def test_an_unreadable_announcement_is_refused_and_changes_nothing():
    processor, handover, registry = _worker()
    engine = processor.engine.engine
    asyncio.run(handover.handle([b"not json", HOSTILE["a setting outside the engine"]]))
    assert _sample(registry, "streamrec_config_swaps_total", result="refused") == 2
    assert processor.engine.engine is engine


def test_the_newest_version_is_served_warm_and_every_user_keeps_what_they_have_seen():
    processor, handover, registry = _worker()
    seen = set(processor.engine.user_state("u1").seen)
    older, newer = EngineConfig(k=10, blend=BlendConfig()), SEARCHED
    swap = asyncio.run(handover.handle([_announce(older, version=1), _announce(newer, version=2)]))
    assert swap.applied and swap.how == "rebuilt" and processor.engine.config == newer
    assert _sample(registry, "streamrec_config_swaps_total", result="applied") == 1
    assert _sample(registry, "streamrec_config_version") == 2
    assert seen <= set(processor.engine.user_state("u1").seen)
    assert not seen & {item for item, _ in processor.engine.recommend("u1").items}
    assert _sample(registry, "streamrec_engine_knob", knob="mf_lr") == pytest.approx(0.0371234567)
    assert _sample(registry, "streamrec_engine_knob", knob="weight:cooccurrence") == 1.0
    assert _sample(registry, "streamrec_engine_knob", knob="history_len") == 77
    asyncio.run(handover.handle([_announce(older, version=1)]))  # history: never served again
    assert processor.engine.config == newer and _sample(registry, "streamrec_config_version") == 2


def test_a_change_of_weights_or_in_place_knobs_is_applied_in_place_and_the_knobs_follow():
    processor, handover, registry = _worker(blend="default")
    engine = processor.engine.engine
    handover.record_knobs()
    config = processor.engine.config
    reweighted = EngineConfig(k=config.k, blend=config.blend.with_weights(popularity=0.9), strategies=config.strategies)
    swap = asyncio.run(handover.handle([_announce(reweighted, version=3)]))
    assert swap.applied and swap.how == "in place" and processor.engine.engine is engine
    assert _sample(registry, "streamrec_engine_knob", knob="weight:popularity") == 0.9
    shorter_memory = reweighted.replace(half_life=300.0, cooc_lookback=2)  # knobs the live models take
    swap = asyncio.run(handover.handle([_announce(shorter_memory, version=4)]))
    assert swap.applied and swap.how == "in place" and processor.engine.engine is engine
    assert engine.popularity.half_life == 300.0 and engine.blend.strategies["cooccurrence"].lookback == 2
    assert _sample(registry, "streamrec_engine_knob", knob="half_life") == 300.0


def test_the_served_encoder_moves_into_the_rebuilt_engine():
    from tests.test_online.helpers import EncoderVersion

    processor, handover, _ = _worker()
    encoder = EncoderVersion(5, {"z": 1.0})
    processor.engine.blend.fill("encoder", encoder)
    assert asyncio.run(handover.handle([_announce(SEARCHED)])).applied
    assert processor.engine.blend.strategies["encoder"].strategy is encoder


def test_a_worker_that_does_not_self_tune_ignores_announcements():
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    processor = EventProcessor(Settings.of(self_tune=False), metrics=metrics)
    handover = ConfigHandover(processor.settings, processor, metrics, asyncio.Lock(), processes=False)
    assert asyncio.run(handover.handle([_announce(SEARCHED)])) is None
    assert processor.engine.config == Settings().engine_config()


def test_the_build_runs_in_another_process():
    processor, handover, registry = _worker()
    handover.processes = True
    try:
        swap = asyncio.run(handover.handle([_announce(SEARCHED)]))
    finally:
        handover.close()
    assert swap.applied and processor.engine.config == SEARCHED
    assert processor.engine.events_learned == 1_500  # the kept events were learned there, none twice


def test_the_knobs_are_the_numeric_ones_of_the_search_space():
    knobs = engine_knobs(DEFAULTS, SEARCHED)
    assert knobs["weight:mf"] == 0.4 and knobs["mf_lr"] == pytest.approx(0.0371234567)
    assert "normalise" not in knobs and "cooc_half_life" not in knobs  # a category, and a knob switched off
    assert knobs["learn_weights"] == 1.0
    assert "weight:popularity" not in engine_knobs(DEFAULTS, EngineConfig())  # the fixed mix: its own weights


@pytest.mark.parametrize("processes", [False, True], ids=["in slices", "in the build process"])
def test_a_rebuilt_engine_keeps_what_the_other_workers_deltas_taught(processes):
    from online.engine import StreamingRecommender
    from online.sharing import DeltaCollector

    processor, handover, _ = _worker()
    other = StreamingRecommender()  # another worker, whose users touch items this one never sees
    collector = DeltaCollector(source=7)
    collector.cover(0, 199)
    other.learn_many([Interaction(f"w{n % 9}", f"far{n % 13}", float(n)) for n in range(200)], deltas=collector)
    assert processor.engine.apply_item_deltas(collector.seal())
    processor.engine.learn_many(_cycle(300, seed=1))  # the delta falls inside the kept window
    items, positions = processor.engine.n_items, dict(processor.engine.item_positions)
    handover.processes = processes
    try:
        swap = asyncio.run(handover.handle([_announce(SEARCHED)]))
    finally:
        handover.close()
    assert swap.applied and swap.how == "rebuilt"
    assert processor.engine.n_items == items  # the 13 "far" items are still known
    assert processor.engine.item_positions == positions  # and a re-read copy of the delta is skipped
    assert processor.engine.events_learned == 1_800
