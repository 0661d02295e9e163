"""The one typed settings object, and the only place that reads the environment.

Every field has a default, an environment variable and (in ``stream.cli``) a
flag. Precedence: flag > environment > default. ``Settings`` is frozen: derive a
changed copy with :meth:`Settings.replace`, which validates again.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from online.engine import EngineConfig
from stream.wire.topics import TopicSpec


def _env(name: str, help: str) -> Any:
    """Field metadata: the environment variable that sets it and what it means."""
    return {"env": name, "help": help}


@dataclass(frozen=True)
class Settings:
    # Kafka
    bootstrap_servers: str = field(default="127.0.0.1:9092", metadata=_env(
        "KAFKA_BOOTSTRAP_SERVERS", "Kafka bootstrap servers, host:port[,host:port]"))
    app_id: str = field(default="streamrec", metadata=_env(
        "STREAMREC_APP_ID", "Faust app id = consumer group of the workers"))
    topic_events: str = field(default="events", metadata=_env("STREAMREC_TOPIC_EVENTS", "events topic"))
    topic_requests: str = field(default="rec-requests", metadata=_env(
        "STREAMREC_TOPIC_REQUESTS", "recommendation requests topic"))
    topic_recommendations: str = field(default="recommendations", metadata=_env(
        "STREAMREC_TOPIC_RECOMMENDATIONS", "recommendation lists topic"))
    topic_dlq: str = field(default="events-dlq", metadata=_env("STREAMREC_TOPIC_DLQ", "dead-letter topic"))
    topic_model_updates: str = field(default="model-updates", metadata=_env(
        "STREAMREC_TOPIC_MODEL_UPDATES", "encoder version announcements"))
    topic_tuning: str = field(default="tuning", metadata=_env("STREAMREC_TOPIC_TUNING", "tuner snapshots"))
    partitions: int = field(default=8, metadata=_env(
        "STREAMREC_PARTITIONS", "partitions of events, rec-requests and recommendations"))
    # Serving
    k: int = field(default=10, metadata=_env("STREAMREC_K", "default list length"))
    max_k: int = field(default=200, metadata=_env("STREAMREC_MAX_K", "largest k a request may ask for"))
    push: bool = field(default=True, metadata=_env(
        "STREAMREC_PUSH", "publish a fresh list for every user in each processed batch"))
    batch_max: int = field(default=2_000, metadata=_env(
        "STREAMREC_BATCH_MAX", "most messages the events agent takes per micro-batch"))
    batch_within_s: float = field(default=0.005, metadata=_env(
        "STREAMREC_BATCH_WITHIN_S", "longest wait to fill a micro-batch, seconds"))
    fetch_max_wait_ms: int = field(default=10, metadata=_env(
        "STREAMREC_FETCH_MAX_WAIT_MS", "consumer long-poll wait (Faust hard-codes 1500 ms; we override)"))
    session_timeout_s: float = field(default=6.0, metadata=_env(
        "STREAMREC_SESSION_TIMEOUT_S", "consumer group session timeout, seconds"))
    rebalance_timeout_s: float = field(default=1.0, metadata=_env(
        "STREAMREC_REBALANCE_TIMEOUT_S",
        "consumer group rebalance timeout, seconds (Tansu holds every join this long)"))
    max_message_bytes: int = field(default=1_000_000, metadata=_env(
        "STREAMREC_MAX_MESSAGE_BYTES", "larger events messages go to the DLQ"))
    max_event_bytes: int = field(default=16_384, metadata=_env(
        "STREAMREC_MAX_EVENT_BYTES", "an event object larger than this goes to the DLQ"))
    max_events_per_message: int = field(default=10_000, metadata=_env(
        "STREAMREC_MAX_EVENTS_PER_MESSAGE", "a longer JSON array goes to the DLQ"))
    # Online model
    half_life: float = field(default=5_000.0, metadata=_env(
        "STREAMREC_HALF_LIFE", "popularity half-life, in events"))
    popularity_weight: float = field(default=0.3, metadata=_env(
        "STREAMREC_POPULARITY_WEIGHT", "blend weight of decayed popularity"))
    next_item_weight: float = field(default=1.0, metadata=_env(
        "STREAMREC_NEXT_ITEM_WEIGHT", "blend weight of next-item co-occurrence"))
    blend: str = field(default="", metadata=_env(
        "STREAMREC_BLEND",
        "learned blend of strategies: '' = off (fast popularity + next-item), 'default' = the "
        "recommended blend, or 'name=weight,...' over popularity, next_item, cooccurrence, mf, river_mf"))
    history_len: int = field(default=50, metadata=_env("STREAMREC_HISTORY_LEN", "recent items kept per user"))
    max_users: int = field(default=1_000_000, metadata=_env(
        "STREAMREC_MAX_USERS", "users kept in memory; least recently active evicted"))
    max_items: int = field(default=1_000_000, metadata=_env("STREAMREC_MAX_ITEMS", "items kept in memory"))
    # Online tuning (online.tuning, wired in stream.app)
    tuner: bool = field(default=False, metadata=_env(
        "STREAMREC_TUNER", "tune learning rates and blend weights online (turns the default blend on if none is set)"))
    tuner_policy: str = field(default="thompson", metadata=_env(
        "STREAMREC_TUNER_POLICY", "bandit policy of the tuner: thompson, ucb, exp3 or epsilon"))
    tuner_feedback: str = field(default="full", metadata=_env(
        "STREAMREC_TUNER_FEEDBACK",
        "full: every event scores every arm (it is the user's next item); bandit: only events naming a served "
        "list (rec_id) reward it, the served arm is sampled with a logged propensity, the others get IPS estimates"))
    tuner_publish_s: float = field(default=5.0, metadata=_env(
        "STREAMREC_TUNER_PUBLISH_S", "seconds between tuner snapshots on the tuning topic"))
    # Delivery and state (issue 7)
    dedup_window: int = field(default=200_000, metadata=_env(
        "STREAMREC_DEDUP_WINDOW", "event_ids remembered per worker; a repeated id within it is learned once"))
    snapshot_interval_s: float = field(default=30.0, metadata=_env(
        "STREAMREC_SNAPSHOT_INTERVAL_S",
        "seconds between snapshots of the learned state under data_dir (0 = never)"))
    # Encoder (trainer process and hot swap in workers)
    trainer_dir: str = field(default="/tmp/streamrec/checkpoints", metadata=_env(
        "STREAMREC_TRAINER_DIR", "where the trainer writes checkpoints (workers must be able to read it)"))
    trainer_refresh_s: float = field(default=60.0, metadata=_env(
        "STREAMREC_TRAINER_REFRESH_S", "seconds between encoder refreshes"))
    trainer_min_new_events: int = field(default=1_000, metadata=_env(
        "STREAMREC_TRAINER_MIN_NEW_EVENTS", "new events needed before a refresh"))
    trainer_epochs: int = field(default=2, metadata=_env("STREAMREC_TRAINER_EPOCHS", "epochs per refresh"))
    trainer_device: str = field(default="auto", metadata=_env(
        "STREAMREC_TRAINER_DEVICE", "auto, cpu or cuda"))
    trainer_size: str = field(default="tiny", metadata=_env(
        "STREAMREC_TRAINER_SIZE", "encoder size preset: tiny (CPU) or large (GPU)"))
    encoder_poll_s: float = field(default=10.0, metadata=_env(
        "STREAMREC_ENCODER_POLL_S",
        "how often every worker also checks the checkpoint directory for a newer encoder, seconds"))
    encoder_weight: float = field(default=0.3, metadata=_env(
        "STREAMREC_ENCODER_WEIGHT", "starting blend weight of the encoder once a version is loaded"))
    snapshot_fork: bool = field(default=True, metadata=_env(
        "STREAMREC_SNAPSHOT_FORK",
        "write snapshots from a forked child (learning pauses for the fork, not for the pickling)"))
    learn_scope: str = field(default="partitions", metadata=_env(
        "STREAMREC_LEARN_SCOPE",
        "partitions: a worker learns only its partitions' events; all: it also learns every other "
        "partition's events (item state from the whole stream; lists still only for its own users)"))
    handoff_dir: str = field(default="", metadata=_env(
        "STREAMREC_HANDOFF_DIR",
        "folder shared by all workers where each leaves its partitions' user state for the next owner "
        "('' = off: a moved partition's users restart from what the new owner re-reads)"))
    # Kafka security (both clients: kafka-python and Faust/aiokafka)
    security_protocol: str = field(default="PLAINTEXT", metadata=_env(
        "STREAMREC_SECURITY_PROTOCOL", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))
    sasl_mechanism: str = field(default="PLAIN", metadata=_env(
        "STREAMREC_SASL_MECHANISM", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
    sasl_username: str = field(default="", metadata=_env("STREAMREC_SASL_USERNAME", "SASL user name"))
    sasl_password: str = field(default="", repr=False, metadata=_env(
        "STREAMREC_SASL_PASSWORD", "SASL password (never printed)"))
    ssl_cafile: str = field(default="", metadata=_env(
        "STREAMREC_SSL_CAFILE", "CA bundle to verify the brokers (SSL, SASL_SSL)"))
    ssl_certfile: str = field(default="", metadata=_env(
        "STREAMREC_SSL_CERTFILE", "client certificate for mutual TLS"))
    ssl_keyfile: str = field(default="", metadata=_env("STREAMREC_SSL_KEYFILE", "client certificate's key"))
    # Processes
    metrics_host: str = field(default="127.0.0.1", metadata=_env(
        "STREAMREC_METRICS_HOST", "address of the worker's /metrics and health endpoints"))
    metrics_port: int = field(default=6066, metadata=_env(
        "STREAMREC_METRICS_PORT", "port of the worker's /metrics and health endpoints"))
    data_dir: str = field(default="/tmp/streamrec", metadata=_env(
        "STREAMREC_DATA_DIR", "worker's local data directory"))
    log_level: str = field(default="info", metadata=_env("STREAMREC_LOG_LEVEL", "log level"))
    trainer_metrics_port: int = field(default=6067, metadata=_env(
        "STREAMREC_TRAINER_METRICS_PORT",
        "port of the trainer's /metrics and health endpoints (on metrics_host; 0 = a free port)"))

    def __post_init__(self) -> None:
        problems = []
        for name in ("partitions", "k", "max_k", "batch_max", "max_message_bytes", "max_event_bytes",
                     "history_len", "max_users", "max_items", "max_events_per_message"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.k > self.max_k:
            problems.append(f"k={self.k} exceeds max_k={self.max_k}")
        if self.half_life <= 0:
            problems.append("half_life must be positive")
        if not 0 <= self.metrics_port <= 65535:
            problems.append(f"metrics_port {self.metrics_port} is not a port")
        if self.session_timeout_s <= 0 or self.rebalance_timeout_s <= 0:
            problems.append("group timeouts must be positive")
        if self.tuner_policy not in ("thompson", "ucb", "exp3", "epsilon"):
            problems.append(f"tuner_policy must be thompson, ucb, exp3 or epsilon (got {self.tuner_policy!r})")
        if self.tuner_feedback not in ("full", "bandit"):
            problems.append(f"tuner_feedback must be full or bandit (got {self.tuner_feedback!r})")
        if self.learn_scope not in ("partitions", "all"):
            problems.append(f"learn_scope must be partitions or all (got {self.learn_scope!r})")
        if self.security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            problems.append(f"security_protocol {self.security_protocol!r} is not one of PLAINTEXT, SSL, "
                            "SASL_PLAINTEXT, SASL_SSL")
        if self.sasl_mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            problems.append(f"sasl_mechanism {self.sasl_mechanism!r} is not one of PLAIN, SCRAM-SHA-256, "
                            "SCRAM-SHA-512")
        if self.dedup_window < 0 or self.snapshot_interval_s < 0 or self.tuner_publish_s <= 0:
            problems.append("dedup_window and snapshot_interval_s must be >= 0, tuner_publish_s > 0")
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then environment variables, then ``overrides`` (flags that were given)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def env_table(cls) -> list[tuple[str, str, Any, str]]:
        """(field, environment variable, default, help) for docs and ``--help``."""
        return [(f.name, f.metadata["env"], f.default, f.metadata["help"]) for f in fields(cls)]

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic streamrec uses, with its partition count."""
        keyed = self.partitions
        return [
            TopicSpec(self.topic_events, keyed),
            TopicSpec(self.topic_requests, keyed),
            TopicSpec(self.topic_recommendations, keyed),
            TopicSpec(self.topic_dlq, 1),
            TopicSpec(self.topic_model_updates, 1),
            TopicSpec(self.topic_tuning, 1),
        ]

    def engine_config(self) -> EngineConfig:
        from online.blend import BlendConfig

        blend = None
        if self.blend.strip() == "default" or (self.tuner and not self.blend.strip()):
            blend = BlendConfig()
        elif self.blend.strip():
            blend = BlendConfig.parse(self.blend)
        return EngineConfig(
            k=self.k, half_life=self.half_life, popularity_weight=self.popularity_weight,
            next_item_weight=self.next_item_weight, history_len=self.history_len,
            max_users=self.max_users, max_items=self.max_items, blend=blend,
        )


#: The sections of the configuration, in reading order: every field of :class:`Settings` is in
#: exactly one (``tests/test_stream/test_config_reference.py``). ``docs/configuration.md`` is
#: generated from them (``python -m stream.cli.config_reference``).
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("kafka", "Kafka connection and consumer group",
     ("bootstrap_servers", "app_id", "partitions", "session_timeout_s", "rebalance_timeout_s",
      "fetch_max_wait_ms")),
    ("topics", "Topic names", ("topic_events", "topic_requests", "topic_recommendations", "topic_dlq",
                               "topic_model_updates", "topic_tuning")),
    ("serving", "Serving: lists, micro-batches, input limits",
     ("k", "max_k", "push", "batch_max", "batch_within_s", "max_message_bytes", "max_event_bytes",
      "max_events_per_message")),
    ("engine", "Engine: the online models and the blend",
     ("blend", "half_life", "popularity_weight", "next_item_weight", "history_len", "max_users", "max_items")),
    ("tuner", "Online tuning", ("tuner", "tuner_policy", "tuner_feedback", "tuner_publish_s")),
    ("encoder", "Trainer and encoder",
     ("trainer_dir", "trainer_refresh_s", "trainer_min_new_events", "trainer_epochs", "trainer_device",
      "trainer_size", "encoder_poll_s", "encoder_weight")),
    ("durability", "Durability and scale-out",
     ("dedup_window", "snapshot_interval_s", "snapshot_fork", "learn_scope", "handoff_dir", "data_dir")),
    ("security", "Kafka security (every client)",
     ("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password", "ssl_cafile", "ssl_certfile",
      "ssl_keyfile")),
    ("metrics", "Metrics, health and logs", ("metrics_host", "metrics_port", "trainer_metrics_port", "log_level")),
)


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": bool, "str": str}[f.type]
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{f.metadata['env']}={raw!r} is not a boolean")
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}") from exc
