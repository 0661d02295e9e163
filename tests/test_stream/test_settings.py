"""Settings: one tree of frozen sections; every setting is reachable by its environment variable, its flag
and ``streamrec eval --set`` with the same result; bad values are refused naming where they came from;
the engine's and the tuner's sections default to exactly the online records' defaults."""
from __future__ import annotations

import dataclasses

import pytest

from online.blend import BlendConfig
from online.engine import EngineConfig
from online.registry import STRATEGY_FIELDS, StrategyConfigs
from online.tuning import TunerConfig
from stream.cli.evaluate import UsageError, apply_sets, settings_with_sets
from stream.cli.main import build_parser, settings_from_args
from stream.cli.processes import worker_environment
from stream.settings import Setting, Settings, leaves, parse_setting, sections, setting

LEAVES = leaves()
# Values a generic rule (default + 3, default * 2 + 1, another choice) would make invalid.
SPECIAL = {"k": (5, "5"), "metrics_port": (7000, "7000"), "trainer_metrics_port": (7001, "7001"),
           "blend": ("popularity=1,next_item=2", "popularity=1,next_item=2"),
           "tuner_weight_step": (0.5, "0.5"), "tuner_floor": (0.1, "0.1"), "tuner_explore": (0.5, "0.5"),
           "tuner_params": ((("mf", "l2"), ("mf", "lr")), "mf.l2,mf.lr"), "tuner_seed": (None, "none"),
           "search_warm_fraction": (0.25, "0.25"), "search_holdout": (0.5, "0.5"),
           "encoder_gate_carry": (0.25, "0.25"),
           "search_strategies": (("popularity", "mf"), "popularity,mf")}


def sample(leaf: Setting) -> tuple[object, str]:
    """A valid value other than the default, and its raw string."""
    if leaf.flat in SPECIAL:
        return SPECIAL[leaf.flat]
    default = leaf.default
    if leaf.choices:
        other = next(c for c in leaf.choices if c != default)
        return other, str(other)
    if isinstance(default, bool):
        return (not default), str(not default).lower()
    if isinstance(default, int):
        return default + 3, str(default + 3)
    if isinstance(default, float) or default is None:
        value = (default or 1.0) * 2 + 1
        return value, str(value)
    return default + "-x", default + "-x"


def _flag_args(leaf: Setting, raw: str) -> list[str]:
    if leaf.kind is bool:
        return [leaf.flag if raw == "true" else "--no-" + leaf.flag[2:]]
    return [f"{leaf.flag}={raw}"]


@pytest.fixture
def clean_environment(monkeypatch):
    for leaf in LEAVES:
        monkeypatch.delenv(leaf.env, raising=False)


@pytest.mark.parametrize("leaf", LEAVES, ids=[leaf.flat for leaf in LEAVES])
def test_every_setting_is_reachable_by_environment_flag_and_set_with_the_same_result(leaf, clean_environment):
    expected, raw = sample(leaf)
    by_env = Settings.from_env({leaf.env: raw})
    by_flag = settings_from_args(build_parser().parse_args(["worker", *_flag_args(leaf, raw)]))
    by_set = settings_with_sets(Settings(), [f"{leaf.flat}={raw}"])
    assert by_env.get(leaf.flat) == by_flag.get(leaf.flat) == by_set.get(leaf.flat) == expected
    assert getattr(getattr(by_env, leaf.section), leaf.name) == expected  # where it sits in the tree
    assert by_env == by_flag == by_set == Settings.of(**{leaf.flat: expected})


@pytest.mark.parametrize("leaf", [leaf for leaf in LEAVES if leaf.section == "engine" and leaf.name in
                                  {f.name for f in dataclasses.fields(BlendConfig)} | {f.name for f in
                                                                                       dataclasses.fields(EngineConfig)}
                                  and leaf.flat not in ("k", "blend")], ids=lambda leaf: leaf.flat)
def test_set_on_the_engine_record_equals_the_setting(leaf):
    expected, raw = sample(leaf)
    from_settings = Settings.of(blend="default", **{leaf.flat: expected}).engine_config()
    from_set = apply_sets(Settings.of(blend="default").engine_config(), [f"{leaf.flat}={raw}"])
    assert from_set == from_settings


def test_set_accepts_every_tuner_field_and_strategy_weights():
    settings = settings_with_sets(Settings(), ["tuner_period=300", "tuner_policy=ucb", "cooccurrence=0.5"])
    assert settings.tuner_config() == TunerConfig(period=300, policy="ucb")
    config = apply_sets(EngineConfig(blend=BlendConfig()), ["cooccurrence=0.5", "mf_lr=0.2"])
    assert dict(config.blend.weights)["cooccurrence"] == 0.5 and config.strategies["mf"].lr == 0.2


def test_a_wrong_value_names_its_environment_variable_flag_or_set(clean_environment):
    with pytest.raises(ValueError, match="STREAMREC_K"):
        Settings.from_env({"STREAMREC_K": "abc"})
    with pytest.raises(ValueError, match="--partitions"):
        settings_from_args(build_parser().parse_args(["worker", "--partitions", "many"]))
    with pytest.raises(ValueError, match="STREAMREC_TUNER_POLICY"):
        Settings.from_env({"STREAMREC_TUNER_POLICY": "greedy"})
    with pytest.raises(UsageError, match="--set tuner_period"):
        settings_with_sets(Settings(), ["tuner_period=often"])
    with pytest.raises(UsageError, match="unknown name 'no_such'"):
        settings_with_sets(Settings(), ["no_such=1"])
    with pytest.raises(UsageError, match="--set mf"):
        apply_sets(EngineConfig(), ["mf=heavy"])


@pytest.mark.parametrize("env", [{"STREAMREC_K": "abc"}, {"STREAMREC_PUSH": "maybe"}, {"STREAMREC_PARTITIONS": "0"},
                                 {"STREAMREC_K": "500"}, {"STREAMREC_MF_SAMPLING": "never"},
                                 {"STREAMREC_TUNER_PARAMS": "mf"}, {"STREAMREC_TUNER_LR_LOW": "9"}])
def test_bad_values_are_refused(env):
    with pytest.raises(ValueError):
        Settings.from_env(env)


def test_kafka_bootstrap_servers_is_honoured_and_flags_win():
    env = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    assert Settings.from_env(env).kafka.bootstrap_servers == "kafka:9092"
    assert Settings.from_env(env, bootstrap_servers="other:1").kafka.bootstrap_servers == "other:1"
    assert Settings.from_env(env, flags={"bootstrap_servers": "flag:2"}).kafka.bootstrap_servers == "flag:2"


def test_names_outside_are_todays():
    assert [name for name, _, _ in sections()] == ["kafka", "topics", "serving", "engine", "tuner", "search",
                                                    "encoder", "durability", "security", "metrics"]
    assert setting("self_tune").env == "STREAMREC_SELF_TUNE" and setting("search_trials").path == "search.trials"
    events = setting("topic_events")
    assert (events.path, events.env, events.flag) == ("topics.events", "STREAMREC_TOPIC_EVENTS", "--topic-events")
    assert setting("bootstrap_servers").env == "KAFKA_BOOTSTRAP_SERVERS"
    assert setting("tuner").path == "tuner.enabled" and setting("tuner_policy").path == "tuner.policy"
    assert setting("mf_lr").env == "STREAMREC_MF_LR" and setting("tuner_period").flag == "--tuner-period"
    assert len({leaf.flat for leaf in LEAVES}) == len({leaf.env for leaf in LEAVES}) == len(LEAVES)


def test_defaults_are_the_documented_ones():
    s = Settings.from_env({})
    assert (s.topics.events, s.topics.requests, s.topics.recommendations, s.topics.dlq, s.topics.model_updates,
            s.topics.tuning) == ("events", "rec-requests", "recommendations", "events-dlq", "model-updates", "tuning")
    assert s.serving.k == 10 and s.serving.push is True and s.kafka.partitions == 8


def test_defaults_equal_the_online_records_defaults():
    assert Settings().engine_config() == EngineConfig()
    assert Settings.of(blend="default").engine_config() == EngineConfig(blend=BlendConfig())
    assert Settings.of(tuner=True).engine_config().blend == BlendConfig()
    assert Settings().tuner_config() == TunerConfig()
    records = {"engine": (EngineConfig, BlendConfig), "tuner": (TunerConfig,)}
    for section, types in records.items():
        for record in types:
            for f in dataclasses.fields(record):
                if f.name in ("k", "blend", "weights", "strategies", "per_strategy"):
                    continue
                leaf = next(leaf for leaf in LEAVES if leaf.section == section and leaf.name == f.name)
                assert leaf.default == f.default, leaf.flat
    for flat, value in StrategyConfigs().flat().items():  # every field of every registered strategy's config
        assert next(leaf for leaf in LEAVES if leaf.section == "engine" and leaf.flat == flat).default == value


def test_the_engine_and_tuner_sections_carry_every_record_field():
    engine = {leaf.name for leaf in LEAVES if leaf.section == "engine"}
    assert engine == {f.name for f in dataclasses.fields(EngineConfig) + dataclasses.fields(BlendConfig)} \
        - {"k", "weights", "strategies", "per_strategy"} | set(STRATEGY_FIELDS)
    tuner = {leaf.name for leaf in LEAVES if leaf.section == "tuner"}
    assert tuner == {f.name for f in dataclasses.fields(TunerConfig)} | {"enabled", "publish_s"}
    assert all(leaf.flat == "tuner_" + leaf.name for leaf in LEAVES if leaf.section == "tuner" and leaf.name != "enabled")


def test_the_tree_is_frozen_and_replace_validates():
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.serving = s.serving  # type: ignore[misc]
    for name, _, leaves_of_section in sections():
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(getattr(s, name), leaves_of_section[0].name, None)
    with pytest.raises(ValueError):
        s.replace(k=0)
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.of(topic_event="typo")
    assert s.replace(k=5).serving.k == 5 and s.serving.k == 10


def test_a_child_process_gets_exactly_these_settings():
    changed = Settings.of(**{leaf.flat: sample(leaf)[0] for leaf in LEAVES})
    assert all(changed.get(leaf.flat) != leaf.default for leaf in LEAVES)
    assert Settings.from_env(worker_environment(changed)) == changed
    assert Settings.from_env(worker_environment(Settings())) == Settings()


def test_the_one_parser_reads_every_type():
    assert parse_setting("cooc_half_life", "none")[1] is None
    assert parse_setting("cooc_half_life", "250")[1] == 250.0
    assert parse_setting("tuner_seed", "7")[1] == 7
    assert parse_setting("push", "off")[1] is False
    assert parse_setting("tuner_params", "none")[1] == ()
    with pytest.raises(ValueError, match="not one of"):
        parse_setting("normalise", "zscore")


def test_topics_are_declared_with_partition_counts():
    specs = {spec.name: spec.partitions for spec in Settings.of(partitions=4).topic_specs()}
    assert specs["events"] == specs["recommendations"] == specs["rec-requests"] == 4
    assert specs["events-dlq"] == 1


def test_the_blend_setting_selects_the_engine_path():
    assert Settings().engine_config().blend is None
    assert Settings.of(blend="default").engine_config().blend is not None
    weights = dict(Settings.of(blend="popularity=0.5,next_item=1").engine_config().blend.weights)
    assert weights == {"popularity": 0.5, "next_item": 1.0}
    assert Settings.of(blend="mf", mf_lr=0.3).engine_config().strategies["mf"].lr == 0.3


@pytest.mark.parametrize("field, value", [("tuner_policy", "greedy"), ("security_protocol", "TLS"),
                                          ("sasl_mechanism", "GSSAPI"), ("dedup_window", -1),
                                          ("learn_scope", "everything"), ("tuner_feedback", "clicks"),
                                          ("normalise", "zscore")])
def test_choices_outside_their_set_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        Settings.of(**{field: value})


def test_the_sasl_password_is_never_printed():
    assert "hunter2" not in repr(Settings.of(sasl_password="hunter2"))


def test_turning_the_tuner_on_turns_the_default_blend_on():
    assert Settings.of(tuner=True).engine_config().blend is not None
    assert Settings().engine_config().blend is None
