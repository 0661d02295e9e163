"""Settings: every environment binding lands; flags beat the environment; bad values are refused."""
from __future__ import annotations

import dataclasses

import pytest

from stream.settings import Settings


def _sample_value(default):
    if isinstance(default, bool):
        return (not default), str(not default).lower()
    if isinstance(default, int):
        return default + 3, str(default + 3)
    if isinstance(default, float):
        return default * 2 + 1, str(default * 2 + 1)
    return default + "-x", default + "-x"


@pytest.mark.parametrize("name, env, default", [(n, e, d) for n, e, d, _ in Settings.env_table()])
def test_every_field_is_read_from_its_environment_variable(name, env, default):
    expected, raw = _sample_value(default)
    if name == "k":  # must stay <= max_k
        expected, raw = 5, "5"
    if name == "blend":
        expected, raw = "popularity=1,next_item=2", "popularity=1,next_item=2"
    if name == "metrics_port":
        expected, raw = 7000, "7000"
    choices = {"tuner_policy": "ucb", "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
               "learn_scope": "all", "tuner_feedback": "bandit"}
    if name in choices:
        expected = raw = choices[name]
    assert getattr(Settings.from_env({env: raw}), name) == expected


def test_kafka_bootstrap_servers_is_honoured_and_flags_win():
    env = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    assert Settings.from_env(env).bootstrap_servers == "kafka:9092"
    assert Settings.from_env(env, bootstrap_servers="other:1").bootstrap_servers == "other:1"


def test_defaults_are_the_documented_ones():
    s = Settings.from_env({})
    assert (s.topic_events, s.topic_requests, s.topic_recommendations, s.topic_dlq, s.topic_model_updates,
            s.topic_tuning) == ("events", "rec-requests", "recommendations", "events-dlq", "model-updates", "tuning")
    assert s.k == 10 and s.push is True and s.partitions == 8


@pytest.mark.parametrize("env", [{"STREAMREC_K": "abc"}, {"STREAMREC_PUSH": "maybe"}, {"STREAMREC_PARTITIONS": "0"},
                                 {"STREAMREC_K": "500"}])
def test_bad_values_are_refused_with_the_variable_named(env):
    with pytest.raises(ValueError):
        Settings.from_env(env)


def test_settings_are_frozen_and_replace_validates():
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.k = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        s.replace(k=0)


def test_topics_are_declared_with_partition_counts():
    specs = {spec.name: spec.partitions for spec in Settings(partitions=4).topic_specs()}
    assert specs["events"] == specs["recommendations"] == specs["rec-requests"] == 4
    assert specs["events-dlq"] == 1


def test_the_blend_setting_selects_the_engine_path():
    assert Settings().engine_config().blend is None
    assert Settings(blend="default").engine_config().blend is not None
    weights = dict(Settings(blend="popularity=0.5,next_item=1").engine_config().blend.weights)
    assert weights == {"popularity": 0.5, "next_item": 1.0}


@pytest.mark.parametrize("field, value", [("tuner_policy", "greedy"), ("security_protocol", "TLS"),
                                          ("sasl_mechanism", "GSSAPI"), ("dedup_window", -1),
                                          ("learn_scope", "everything"), ("tuner_feedback", "clicks")])
def test_choices_outside_their_set_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        Settings(**{field: value})


def test_the_sasl_password_is_never_printed():
    assert "hunter2" not in repr(Settings(sasl_password="hunter2"))


def test_turning_the_tuner_on_turns_the_default_blend_on():
    assert Settings(tuner=True).engine_config().blend is not None
    assert Settings().engine_config().blend is None
