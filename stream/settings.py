"""The one typed settings tree, and the only place that reads the environment.

``Settings`` is a frozen tree of sections (``settings.kafka``, ``.topics``, ``.serving``,
``.engine``, ``.tuner``, ``.encoder``, ``.durability``, ``.security``, ``.metrics``), each a
frozen dataclass. Every leaf has a unique *flat name* (``topic_events``, ``tuner_policy``), an
environment variable (``STREAMREC_TOPIC_EVENTS``) and a flag (``--topic-events``):
:func:`setting` finds a leaf by flat name and :meth:`Setting.parse` is the one parser of raw
strings, used by :meth:`Settings.from_env`, the CLI flags and ``streamrec eval --set``.
Precedence: flag > environment > default.

The engine section carries every field of :class:`~online.engine.EngineConfig`, of every
registered strategy's config (``online.registry``, by flat name: ``cooc_window``) and of
:class:`~online.blend.BlendConfig` (the blend's weights are the ``blend`` spec string), the tuner
section every field of :class:`~online.tuning.TunerConfig`; those fields, their types and
defaults are generated from the dataclasses, so the two cannot disagree.
:meth:`Settings.engine_config` and :meth:`Settings.tuner_config` build the records back.

Code and tests construct with flat names, ``Settings.of(bootstrap_servers=..., partitions=4)``,
and derive a changed copy with ``settings.replace(k=5)``; both validate again.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from online.blend import NORMALISATIONS, BlendConfig
from online.engine import EngineConfig
from online.registry import STRATEGY_FIELDS, StrategyConfigs
from online.rerank import OPTIMIZERS
from online.search.loop import Schedule
from online.search.study import SearchConfig
from online.tuning.config import FEEDBACK, POLICIES, TunerConfig
from stream.wire.topics import TopicSpec

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: The type of ``TunerConfig.params``: ``(model, hyper-parameter)`` pairs, written ``mf.lr,mf.l2``.
Pairs = tuple[tuple[str, str], ...]
#: A list of names, written ``a,b,c`` (``search_strategies``).
Names = tuple[str, ...]


def _leaf(default: Any, help: str, *, flat: str | None = None, env: str | None = None,
          choices: tuple[Any, ...] = (), repr: bool = True) -> Any:
    """A section field: its default, meaning, flat name (default: the field's name), environment
    variable (default ``STREAMREC_<FLAT NAME>``) and allowed values (categorical fields)."""
    return field(default=default, repr=repr, metadata={"help": help, "flat": flat, "env": env, "choices": choices})


class _Section:
    """Base of the sections: choices and per-section rules checked on construction."""

    def __post_init__(self) -> None:
        problems = []
        for f in fields(self):  # type: ignore[arg-type]
            choices = f.metadata.get("choices", ())
            value = getattr(self, f.name)
            if choices and value not in choices:
                problems.append(f"{f.metadata.get('flat') or f.name} must be one of "
                                f"{', '.join(map(str, choices))} (got {value!r})")
        problems += self._problems()
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        return []

    def _at_least(self, minimum: int, *names: str) -> list[str]:
        return [f"{name} must be >= {minimum} (got {getattr(self, name)})" for name in names
                if getattr(self, name) < minimum]


@dataclass(frozen=True)
class KafkaSettings(_Section):
    """Kafka connection and consumer group."""

    bootstrap_servers: str = _leaf("127.0.0.1:9092", "Kafka bootstrap servers, host:port[,host:port]",
                                   env="KAFKA_BOOTSTRAP_SERVERS")
    app_id: str = _leaf("streamrec", "Faust app id = consumer group of the workers")
    partitions: int = _leaf(8, "partitions of events, rec-requests and recommendations")
    session_timeout_s: float = _leaf(6.0, "consumer group session timeout, seconds")
    rebalance_timeout_s: float = _leaf(
        1.0, "consumer group rebalance timeout, seconds (Tansu holds every join this long)")
    fetch_max_wait_ms: int = _leaf(10, "consumer long-poll wait (Faust hard-codes 1500 ms; we override)")

    def _problems(self) -> list[str]:
        problems = self._at_least(1, "partitions")
        if self.session_timeout_s <= 0 or self.rebalance_timeout_s <= 0:
            problems.append("group timeouts must be positive")
        return problems


@dataclass(frozen=True)
class TopicSettings(_Section):
    """Topic names."""

    events: str = _leaf("events", "events topic", flat="topic_events")
    requests: str = _leaf("rec-requests", "recommendation requests topic", flat="topic_requests")
    recommendations: str = _leaf("recommendations", "recommendation lists topic", flat="topic_recommendations")
    dlq: str = _leaf("events-dlq", "dead-letter topic", flat="topic_dlq")
    model_updates: str = _leaf("model-updates", "encoder version announcements", flat="topic_model_updates")
    tuning: str = _leaf("tuning", "tuner snapshots", flat="topic_tuning")
    config_updates: str = _leaf("config-updates", "winning engine configs of the tuner, with their evidence",
                                flat="topic_config_updates")
    item_deltas: str = _leaf("item-deltas", "item-level deltas each worker publishes for the others (learn scope "
                             "shared)", flat="topic_item_deltas")


@dataclass(frozen=True)
class ServingSettings(_Section):
    """Serving: lists, micro-batches, input limits."""

    k: int = _leaf(EngineConfig.k, "default list length")
    max_k: int = _leaf(200, "largest k a request may ask for")
    push: bool = _leaf(True, "publish a fresh list for every user in each processed batch")
    batch_max: int = _leaf(2_000, "about the most events a micro-batch holds (learned as one, one list per user)")
    max_message_bytes: int = _leaf(1_000_000, "larger events messages go to the DLQ")
    max_event_bytes: int = _leaf(16_384, "an event object larger than this goes to the DLQ")
    max_events_per_message: int = _leaf(10_000, "a longer JSON array goes to the DLQ")

    def _problems(self) -> list[str]:
        problems = self._at_least(1, "k", "max_k", "batch_max", "max_message_bytes", "max_event_bytes",
                                  "max_events_per_message")
        if self.k > self.max_k:
            problems.append(f"k={self.k} exceeds max_k={self.max_k}")
        return problems


# --- generated sections: the engine's and the tuner's records, field by field -------------------

#: Meanings of the generated fields (the registry's knob help is the fallback).
_HELP = {
    # EngineConfig
    "popularity_weight": "weight of decayed popularity in the fixed mix (blend off)",
    "next_item_weight": "weight of next-item votes in the fixed mix (blend off)",
    "popularity_candidates": "popular items the fixed mix offers to every list, besides the next-item votes",
    "history_len": "recent items kept per user",
    "max_seen": "items remembered per user as seen (never recommended again)",
    "max_users": "users kept in memory; least recently active evicted",
    "max_items": "items kept in memory",
    # BlendConfig (besides the registry's knobs)
    "seed": "seed of the blend's models",
    "learn_optimizer": "optimizer of the weight learner",
    # TunerConfig
    "tuner_policy": "bandit policy of the tuner: thompson, ucb, exp3 or epsilon",
    "tuner_seed": "seed of the tuner's policies and serving draws (none: unseeded)",
    "tuner_feedback": "full: every event scores every arm (it is the user's next item); bandit: only events "
                      "naming a served list (rec_id) reward it, the served arm is sampled with a logged "
                      "propensity, the others get IPS estimates",
    "tuner_params": "(model, hyper-parameter) pairs tuned with shadows, as 'model.param,...' (none: no shadows)",
    "tuner_lr_step": "shadows sit at value / lr_step and value * lr_step",
    "tuner_lr_low": "lowest learning rate the search may reach",
    "tuner_lr_high": "highest learning rate the search may reach",
    "tuner_period": "events between two learning-rate decisions",
    "tuner_tune_weights": "also search the strategy weights",
    "tuner_weight_step": "share a weight move adds to one strategy (then renormalised)",
    "tuner_weight_period": "events between two weight moves",
    "tuner_floor": "smallest share a strategy keeps",
    "tuner_explore": "share of the serving distribution spread over all open arms (bandit feedback)",
    "tuner_check_every": "events between two safety checks of the models",
    "tuner_bar_events": "events a reset arm is barred",
    "tuner_max_norm": "parameter norm that counts as diverged",
    "tuner_collapse": "reward ratio that counts as collapse",
    "tuner_min_evidence": "scored events each arm needs before a decision is taken",
    "tuner_gate": "standard errors by which a proposed arm must beat the served one (paired)",
    "tuner_max_evidence": "scored events per arm that evidence accumulates up to",
    "tuner_drift_delta": "ADWIN's confidence on the served reward (a detected change re-opens exploration)",
    "tuner_reward_window": "events in the recent reward rate",
    "tuner_max_pending": "served lists kept waiting for their feedback",
    # SearchConfig and Schedule (self-tuning of the whole engine, online.search)
    "search_trials": "configs tried per search (a search stops at this or at search_timeout_s)",
    "search_timeout_s": "longest a search runs, seconds (none: no limit)",
    "search_warm_fraction": "share of the window a trial learns before it starts scoring",
    "search_batch": "micro-batch of a trial's replay, events (1: as streamrec eval)",
    "search_checkpoints": "points of a trial's replay where the pruner may stop a losing trial",
    "search_min_gain": "relative HR@k gain over the serving config a winner needs",
    "search_z": "paired standard errors by which a winner must beat the serving config",
    "search_holdout": "share of a window's scored events (the most recent) kept out of choosing the winner, "
                      "on which it must prove its gain",
    "search_seed": "seed of the sampler (none: unseeded)",
    "search_strategies": "strategies the search may switch on, comma-separated",
    "search_startup_trials": "random trials before TPE models the space",
    "search_first": "events before the first search",
    "search_every": "events between two searches",
    "search_window": "most recent events a search replays",
    "search_keep": "most recent events a worker keeps to rebuild its engine under a new config",
    "search_drift": "search early when ADWIN sees the served hit rate change",
    "search_drift_delta": "ADWIN's confidence for the early search",
}


def _registry_help_and_choices() -> tuple[dict[str, str], dict[str, tuple[Any, ...]]]:
    """Meaning and choices of every knob, by flat name."""
    from online.registry import BLEND_KNOBS, ENGINE_KNOBS, REGISTRY

    flat_knobs = [(knob.field, knob) for knob in (*ENGINE_KNOBS, *BLEND_KNOBS)]
    flat_knobs += [(spec.flat(knob.field), knob) for spec in REGISTRY.values() for knob in spec.knobs]
    helps: dict[str, str] = {}
    choices: dict[str, tuple[Any, ...]] = {}
    for flat, knob in flat_knobs:
        helps.setdefault(flat, knob.help)
        if knob.kind == "categorical" and not all(isinstance(c, bool) for c in knob.choices):
            choices[flat] = tuple(knob.choices)
    return helps, choices


_KNOB_HELP, _KNOB_CHOICES = _registry_help_and_choices()
_CHOICES: dict[str, tuple[Any, ...]] = {
    **_KNOB_CHOICES, "normalise": NORMALISATIONS, "learn_optimizer": OPTIMIZERS,
    "tuner_policy": tuple(POLICIES), "tuner_feedback": FEEDBACK,
}


def _generated(record: type, skip: tuple[str, ...], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Section fields mirroring ``record``'s: same name (flat name ``prefix + name``), type and default."""
    hints = typing.get_type_hints(record)
    out = []
    for f in fields(record):
        if f.name in skip:
            continue
        flat = prefix + f.name
        help_text = _HELP.get(flat) or _KNOB_HELP.get(f.name)
        if not help_text:
            raise TypeError(f"no meaning written for {record.__name__}.{f.name}: add it to _HELP")
        out.append((f.name, hints[f.name], _leaf(f.default, help_text, flat=flat if prefix else None,
                                                 choices=_CHOICES.get(flat, ()))))
    return out


def _generated_strategies() -> list[tuple[str, Any, Any]]:
    """Section fields for every field of every registered strategy's config, by flat name."""
    from online.registry import REGISTRY

    out = []
    for spec in REGISTRY.values():
        hints = typing.get_type_hints(spec.Config)
        for f in fields(spec.Config):
            flat = spec.flat(f.name)
            out.append((flat, hints[f.name], _leaf(f.default, _KNOB_HELP[flat], choices=_CHOICES.get(flat, ()))))
    return out


def _make_section(name: str, doc: str, leaves: list[tuple[str, Any, Any]], problems: Any) -> type:
    cls = dataclasses.make_dataclass(name, leaves, bases=(_Section,), frozen=True,
                                     namespace={"_problems": problems, "__doc__": doc})
    cls.__module__ = __name__
    return cls


_BLEND_FIELDS = tuple(f.name for f in fields(BlendConfig) if f.name not in ("weights", "per_strategy"))
_ENGINE_FIELDS = tuple(f.name for f in fields(EngineConfig) if f.name not in ("k", "blend", "strategies"))
_STRATEGY_FIELDS = tuple(STRATEGY_FIELDS)


def _record_problems(section: Any, record: type, names: tuple[str, ...]) -> list[str]:
    """What the online record built from ``section``'s fields ``names`` refuses (it owns the rules)."""
    try:
        record(**{name: getattr(section, name) for name in names})
    except ValueError as exc:
        return [str(exc)]
    return []


def _engine_problems(self: Any) -> list[str]:
    problems = self._at_least(1, "history_len", "max_users", "max_items")
    if self.half_life <= 0:
        problems.append("half_life must be positive")
    try:
        StrategyConfigs().replace(**{name: getattr(self, name) for name in _STRATEGY_FIELDS})
    except ValueError as exc:
        problems.append(str(exc))
    return problems + _record_problems(self, BlendConfig, _BLEND_FIELDS)


EngineSettings = _make_section(
    "EngineSettings",
    "Engine: the online models and the blend (every EngineConfig field, every field of every registered "
    "strategy's config by its flat name, every BlendConfig field; the blend's weights are the ``blend`` spec).",
    [("blend", str, _leaf("", "learned blend of strategies: '' = off (fast popularity + next-item), 'default' = "
                              "the recommended blend, or 'name=weight,...' over popularity, next_item, "
                              "cooccurrence, mf, river_mf"))]
    + _generated(EngineConfig, ("k", "blend", "strategies")) + _generated_strategies()
    + _generated(BlendConfig, ("weights", "per_strategy")),
    _engine_problems)

_TUNER_FIELDS = tuple(f.name for f in fields(TunerConfig))


def _tuner_problems(self: Any) -> list[str]:
    problems = []
    if self.publish_s <= 0:
        problems.append("tuner_publish_s must be > 0")
    return problems + _record_problems(self, TunerConfig, _TUNER_FIELDS)


TunerSettings = _make_section(
    "TunerSettings", "Online tuning (every TunerConfig field, flat names prefixed ``tuner_``).",
    [("enabled", bool, _leaf(False, "tune learning rates and blend weights online (turns the default blend on if "
                                    "none is set)", flat="tuner", env="STREAMREC_TUNER")),
     ("publish_s", float, _leaf(5.0, "seconds between tuner snapshots on the tuning topic", flat="tuner_publish_s"))]
    + _generated(TunerConfig, (), prefix="tuner_"),
    _tuner_problems)


_SEARCH_FIELDS = tuple(f.name for f in fields(SearchConfig))
_SCHEDULE_FIELDS = tuple(f.name for f in fields(Schedule))


def _search_problems(self: Any) -> list[str]:
    nice = [] if 0 <= self.nice <= 19 else [f"search_nice must be in [0, 19] (got {self.nice})"]
    return (nice + _record_problems(self, SearchConfig, _SEARCH_FIELDS)
            + _record_problems(self, Schedule, _SCHEDULE_FIELDS))


SearchSettings = _make_section(
    "SearchSettings",
    "Self-tuning of the whole engine (every SearchConfig and Schedule field, flat names prefixed ``search_``).",
    [("enabled", bool, _leaf(True, "search the engine's whole config on the recent stream and serve winners "
                                   "(the tuner process searches, workers swap warm; eval runs both)",
                             flat="self_tune", env="STREAMREC_SELF_TUNE")),
     ("storage", str, _leaf("sqlite:////tmp/streamrec/tuner.db",
                            "Optuna storage of the tuner's study: an SQLite file or any database URL several "
                            "tuners share (optuna-dashboard opens it)", flat="search_storage")),
     ("study", str, _leaf("streamrec", "name of the tuner's study in that storage", flat="search_study")),
     ("nice", int, _leaf(10, "CPU priority the tuner process (the searches) lowers itself by (os.nice; 0 = "
                             "unchanged): where it shares cores with workers, serving comes first",
                         flat="search_nice")),
     ("idle", bool, _leaf(True, "Linux: the tuner process also runs in the idle scheduling class (SCHED_IDLE), as "
                                "the trainer does (trainer_idle): searches get only CPU no other process wants",
                          flat="search_idle"))]
    + _generated(SearchConfig, (), prefix="search_") + _generated(Schedule, (), prefix="search_"),
    _search_problems)


@dataclass(frozen=True)
class EncoderSettings(_Section):
    """Trainer and encoder."""

    trainer_dir: str = _leaf("/tmp/streamrec/checkpoints",
                             "where the trainer writes checkpoints (workers must be able to read it)")
    trainer_refresh_s: float = _leaf(60.0, "seconds between encoder refreshes")
    trainer_min_new_events: int = _leaf(1_000, "new events needed before a refresh")
    trainer_epochs: int = _leaf(20, "most epochs per refresh; early stopping on the newest events decides")
    trainer_device: str = _leaf("auto", "auto, cpu or cuda")
    trainer_size: str = _leaf("small", "encoder size preset: tiny (tests), small (CPU), paper or large (GPU)",
                              choices=("tiny", "small", "paper", "large"))
    trainer_history: int = _leaf(200, "most recent items the trainer keeps per user (training windows of "
                                      "the encoder's context length are cut from them)")
    trainer_warm_start: bool = _leaf(True, "start each version from the last served one (new items appended) "
                                           "and fine-tune on what is new, old windows replayed; off = from scratch")
    trainer_replay: float = _leaf(1.0, "old training windows replayed per new one when warm-starting")
    trainer_holdout: float = _leaf(0.1, "share of the events since the last version held out (200 to 2000 "
                                        "events) for early stopping; a version worse there than the served "
                                        "one is not served")
    trainer_patience: int = _leaf(2, "epochs without gain on the held-out events before a refresh stops")
    trainer_nice: int = _leaf(10, "CPU priority the trainer process lowers itself by (os.nice; 0 = "
                                  "unchanged): where it shares cores with workers, serving comes first")
    trainer_idle: bool = _leaf(True, "Linux: the trainer also runs in the idle scheduling class (SCHED_IDLE): "
                                     "it gets only CPU that no other process wants, and a waking worker takes "
                                     "the core from it at once; where no other process wants the CPU (a "
                                     "dedicated trainer box) it loses nothing")
    poll_s: float = _leaf(10.0, "how often every worker also checks the checkpoint directory for a newer "
                                "encoder, seconds", flat="encoder_poll_s")
    weight: float = _leaf(0.3, "starting blend weight of the encoder once a version is loaded",
                          flat="encoder_weight")
    cache_mb: float = _leaf(128.0, "memory each worker keeps users' encoder states in (keys and values per "
                                   "user, so a new item costs one position; least recently served users "
                                   "beyond it are recomputed when they return), MB", flat="encoder_cache_mb")
    shadow_every: int = _leaf(4, "measure what the encoder adds on one user in this many: their lists are "
                                 "also ranked with its weight at 0 and both scored on their next event "
                                 "(streamrec_encoder_shadow_*; a second list each while a version serves; 0 = off)",
                              flat="encoder_shadow_every")
    gate_z: float = _leaf(1.96, "mute the encoder while its measured lists lose significantly more hits than "
                                "they win (online.shadow.StrategyGate: McNemar's z on the shadow's owed and lost "
                                "hits below -this; it keeps being measured and comes back when that is no longer "
                                "so; streamrec_encoder_gate; 0 = never muted; needs shadow_every > 0)",
                          flat="encoder_gate_z")
    gate_carry: float = _leaf(0.5, "share of the gate's record a new encoder version inherits from the ones before "
                                   "(1 = all: versions judged together; 0 = none: each on its own lists)",
                              flat="encoder_gate_carry")

    def _problems(self) -> list[str]:
        problems = self._at_least(0, "shadow_every", "cache_mb", "trainer_nice", "gate_z")
        if not 0.0 <= self.gate_carry <= 1.0:
            problems.append(f"gate_carry must be in [0, 1] (got {self.gate_carry})")
        if self.trainer_nice > 19:
            problems.append(f"trainer_nice must be <= 19 (got {self.trainer_nice})")
        return problems


@dataclass(frozen=True)
class DurabilitySettings(_Section):
    """Durability and scale-out."""

    dedup_window: int = _leaf(200_000, "event_ids remembered per worker; a repeated id within it is learned once")
    snapshot_interval_s: float = _leaf(
        30.0, "seconds between snapshots of the learned state under data_dir (0 = never)")
    snapshot_fork: bool = _leaf(
        True, "write snapshots from a forked child (learning pauses for the fork, not for the pickling)")
    learn_scope: str = _leaf(
        "auto", "partitions: a worker learns only its partitions' events; all: it also learns every other "
        "partition's events (item state from the whole stream; lists still only for its own users); shared: it "
        "publishes what its partitions teach the item-level models (merged item deltas, topic_item_deltas) and "
        "applies every other worker's (docs/scale-out.md); auto: shared while another worker holds some of the "
        "partitions, partitions while this one holds them all",
        choices=("auto", "partitions", "all", "shared"))
    handoff_dir: str = _leaf(
        "", "folder shared by all workers where each leaves its partitions' user state for the next owner "
        "('' = off: a moved partition's users restart from what the new owner re-reads)")
    data_dir: str = _leaf("/tmp/streamrec", "worker's local data directory")

    def _problems(self) -> list[str]:
        if self.dedup_window < 0 or self.snapshot_interval_s < 0:
            return ["dedup_window and snapshot_interval_s must be >= 0"]
        return []


@dataclass(frozen=True)
class SecuritySettings(_Section):
    """Kafka security (every client: kafka-python and Faust/aiokafka)."""

    protocol: str = _leaf("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", flat="security_protocol",
                          choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    sasl_mechanism: str = _leaf("PLAIN", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                                choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    sasl_username: str = _leaf("", "SASL user name")
    sasl_password: str = _leaf("", "SASL password (never printed)", repr=False)
    ssl_cafile: str = _leaf("", "CA bundle to verify the brokers (SSL, SASL_SSL)")
    ssl_certfile: str = _leaf("", "client certificate for mutual TLS")
    ssl_keyfile: str = _leaf("", "client certificate's key")


@dataclass(frozen=True)
class MetricsSettings(_Section):
    """Metrics, health and logs."""

    host: str = _leaf("127.0.0.1", "address of the worker's /metrics and health endpoints", flat="metrics_host")
    port: int = _leaf(6066, "port of the worker's /metrics and health endpoints", flat="metrics_port")
    trainer_port: int = _leaf(
        6067, "port of the trainer's /metrics and health endpoints (on metrics_host; 0 = a free port)",
        flat="trainer_metrics_port")
    log_level: str = _leaf("info", "log level")

    def _problems(self) -> list[str]:
        return [f"{flat} {value} is not a port" for flat, value in
                (("metrics_port", self.port), ("trainer_metrics_port", self.trainer_port))
                if not 0 <= value <= 65535]


def _section(cls: type, title: str) -> Any:
    return field(default_factory=cls, metadata={"title": title})


@dataclass(frozen=True)
class Settings:
    """Every setting, as a tree of frozen sections (reading order = the reference's order)."""

    kafka: KafkaSettings = _section(KafkaSettings, "Kafka connection and consumer group")
    topics: TopicSettings = _section(TopicSettings, "Topic names")
    serving: ServingSettings = _section(ServingSettings, "Serving: lists, micro-batches, input limits")
    engine: EngineSettings = _section(EngineSettings, "Engine: the online models and the blend")  # type: ignore
    tuner: TunerSettings = _section(TunerSettings, "Online tuning")  # type: ignore[valid-type]
    search: SearchSettings = _section(SearchSettings, "Self-tuning of the whole engine")  # type: ignore
    encoder: EncoderSettings = _section(EncoderSettings, "Trainer and encoder")
    durability: DurabilitySettings = _section(DurabilitySettings, "Durability and scale-out")
    security: SecuritySettings = _section(SecuritySettings, "Kafka security (every client)")
    metrics: MetricsSettings = _section(MetricsSettings, "Metrics, health and logs")

    # --- construction by flat name ----------------------------------------------------------

    @classmethod
    def of(cls, **flat: Any) -> Settings:
        """Defaults with some settings given by flat name: ``Settings.of(topic_events="e", partitions=4)``."""
        return cls().replace(**flat)

    def replace(self, **flat: Any) -> Settings:
        """A validated copy with some settings (by flat name) changed."""
        changes: dict[str, dict[str, Any]] = {}
        for name, value in flat.items():
            leaf = setting(name)
            changes.setdefault(leaf.section, {})[leaf.name] = value
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **values)
                                            for section, values in changes.items()})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, flags: Mapping[str, Any] | None = None,
                 **overrides: Any) -> Settings:
        """Defaults, then environment variables, then ``flags`` (flat name -> the flag's raw string),
        then ``overrides`` (flat name -> typed value); ``None`` values are ignored."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for leaf in leaves():
            raw = environ.get(leaf.env)
            if raw is not None and raw != "":
                values[leaf.flat] = leaf.parse(raw, leaf.env)
        for name, raw in (flags or {}).items():
            if raw is not None:
                leaf = setting(name)
                values[name] = leaf.parse(raw, leaf.flag) if isinstance(raw, str) else raw
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls.of(**values)

    def with_strings(self, raw: Mapping[str, str], source: str = "--set") -> Settings:
        """A copy with settings given as raw strings by flat name (``streamrec eval --set``); a bad
        value's error names ``source NAME``."""
        return self.replace(**{name: parse_setting(name, text, f"{source} {name}")[1] for name, text in raw.items()})

    # --- reading ------------------------------------------------------------------------------

    def get(self, flat: str) -> Any:
        """The value of one setting by its flat name."""
        leaf = setting(flat)
        return getattr(getattr(self, leaf.section), leaf.name)

    def flat(self) -> dict[str, Any]:
        """Every setting by flat name."""
        return {leaf.flat: self.get(leaf.flat) for leaf in leaves()}

    def to_env(self) -> dict[str, str]:
        """The environment variables that give a process exactly these settings."""
        return {leaf.env: leaf.format(self.get(leaf.flat)) for leaf in leaves()}

    @staticmethod
    def leaves() -> tuple[Setting, ...]:
        return leaves()

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic streamrec uses, with its partition count."""
        keyed, t = self.kafka.partitions, self.topics
        return [
            TopicSpec(t.events, keyed),
            TopicSpec(t.requests, keyed),
            TopicSpec(t.recommendations, keyed),
            TopicSpec(t.dlq, 1),
            TopicSpec(t.model_updates, 1),
            TopicSpec(t.tuning, 1),
            TopicSpec(t.config_updates, 1),
            TopicSpec(t.item_deltas, keyed),
        ]

    def blend_config(self, weights: str | None = None, **changes: Any) -> BlendConfig:
        """The ``BlendConfig`` of the engine section with ``weights`` (a spec; default: BlendConfig's)."""
        values = {name: getattr(self.engine, name) for name in _BLEND_FIELDS}
        values.update(changes)
        if weights is None or weights.strip() == "default":
            return BlendConfig(**values)
        return BlendConfig.parse(weights, **values)

    def engine_config(self) -> EngineConfig:
        """The ``EngineConfig`` the workers run: the blend when ``blend`` is set or the tuner is on."""
        spec = self.engine.blend.strip()
        blend = None
        if spec or self.tuner.enabled:
            blend = self.blend_config(spec or None)
        strategies = StrategyConfigs().replace(**{name: getattr(self.engine, name) for name in _STRATEGY_FIELDS})
        return EngineConfig(k=self.serving.k, blend=blend, strategies=strategies,
                            **{name: getattr(self.engine, name) for name in _ENGINE_FIELDS})

    def with_engine(self, config: EngineConfig) -> Settings:
        """These settings with the engine section (and ``k``) set so that :meth:`engine_config` gives
        ``config``: how a searched config becomes settings, environment lines, a worker's config."""
        flat: dict[str, Any] = {name: getattr(config, name) for name in _ENGINE_FIELDS}
        flat.update(config.strategies.flat())
        flat["k"] = config.k
        if config.blend is None:
            flat["blend"] = ""
        else:
            flat["blend"] = ",".join(f"{name}={weight!r}" for name, weight in config.blend.weights)
            flat.update({name: getattr(config.blend, name) for name in _BLEND_FIELDS})
        return self.replace(**flat)

    def search_config(self) -> SearchConfig:
        """The ``SearchConfig`` of the search section (how one search runs)."""
        return SearchConfig(**{name: getattr(self.search, name) for name in _SEARCH_FIELDS})

    def schedule(self) -> Schedule:
        """The ``Schedule`` of the search section (when searches run, what they see)."""
        return Schedule(**{name: getattr(self.search, name) for name in _SCHEDULE_FIELDS})

    def tuner_config(self) -> TunerConfig:
        """The ``TunerConfig`` of the tuner section."""
        return TunerConfig(**{name: getattr(self.tuner, name) for name in _TUNER_FIELDS})


# --- the leaves and the one parser --------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One leaf of the tree: where it sits, how it is named outside, its type and default."""

    flat: str
    section: str
    name: str
    env: str
    kind: Any
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    title: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.flat.replace("_", "-")

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    def parse(self, raw: str, source: str | None = None) -> Any:
        """``raw`` as this setting's type; a bad value is a ``ValueError`` naming ``source``
        (the environment variable, the flag or ``--set NAME``)."""
        source = source or self.flat
        text = raw.strip()
        kind = self.kind
        optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
        if optional:
            if text.lower() in ("none", ""):
                return None
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(f"{source}={raw!r} is not a boolean (true/false)")
        if kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                raise ValueError(f"{source}={raw!r} is not a valid {kind.__name__}") from None
        if kind == Names:
            names = tuple(part.strip() for part in text.split(",") if part.strip())
            if not names:
                raise ValueError(f"{source}={raw!r} names nothing")
            return names
        if kind == Pairs:
            if text.lower() in ("none", ""):
                return ()
            pairs = []
            for part in text.split(","):
                model, dot, param = part.strip().partition(".")
                if not dot or not model or not param:
                    raise ValueError(f"{source}={raw!r} is not a list of model.param pairs")
                pairs.append((model, param))
            return tuple(pairs)
        if self.choices and raw not in self.choices:
            raise ValueError(f"{source}={raw!r} is not one of {', '.join(map(str, self.choices))}")
        return raw

    def format(self, value: Any) -> str:
        """``value`` as the string :meth:`parse` reads back."""
        if isinstance(value, bool):
            return str(value).lower()
        if value is None:
            return "none"
        if self.kind == Pairs:
            return ",".join(f"{model}.{param}" for model, param in value) or "none"
        if self.kind == Names:
            return ",".join(value)
        return str(value)


@functools.cache
def leaves() -> tuple[Setting, ...]:
    """Every setting, section by section in reading order."""
    out = []
    for section in fields(Settings):
        cls = section.default_factory  # type: ignore[misc]
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            flat = f.metadata.get("flat") or f.name
            out.append(Setting(flat=flat, section=section.name, name=f.name,
                               env=f.metadata.get("env") or "STREAMREC_" + flat.upper(), kind=hints[f.name],
                               default=f.default, help=f.metadata["help"], choices=f.metadata.get("choices", ()),
                               title=section.metadata["title"]))
    names = [leaf.flat for leaf in out]
    assert len(names) == len(set(names)), "flat names must be unique"
    return tuple(out)


@functools.cache
def _by_flat() -> dict[str, Setting]:
    return {leaf.flat: leaf for leaf in leaves()}


def setting(flat: str) -> Setting:
    """The leaf with this flat name; an unknown name is a ``ValueError``."""
    try:
        return _by_flat()[flat]
    except KeyError:
        raise ValueError(f"unknown setting {flat!r}") from None


def parse_setting(flat: str, raw: str, source: str | None = None) -> tuple[Setting, Any]:
    """The one parser: the leaf named ``flat`` and ``raw`` parsed by its type (errors name ``source``)."""
    leaf = setting(flat)
    return leaf, leaf.parse(raw, source or leaf.flat)


def sections() -> list[tuple[str, str, tuple[Setting, ...]]]:
    """``(section, title, its settings)`` in reading order, for the docs and ``--help``."""
    out: list[tuple[str, str, tuple[Setting, ...]]] = []
    for section in fields(Settings):
        out.append((section.name, section.metadata["title"],
                    tuple(leaf for leaf in leaves() if leaf.section == section.name)))
    return out
