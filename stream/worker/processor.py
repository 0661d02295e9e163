"""What a worker does with a micro-batch, free of Faust so it is testable without a broker.

The Faust agents (``stream.app``) hand raw messages here and send back what this
returns. Per batch: decode every message (one event object or a JSON array of
them), route bad input to dead letters with the reason and source offset, learn
the good events in order, and build one fresh list per user seen (push mode).
"""
from __future__ import annotations

import functools
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from online.base import Engine, Interaction
from online.dedup import RecentIds
from online.engine import StreamingRecommender
from online.shadow import StrategyGate, StrategyShadow, strategy_slot
from stream.kafka.batch_guard import UndecodableBatch
from stream.settings import Settings
from stream.wire import schema
from stream.wire.messages import Output, RawMessage
from stream.wire.schema import Invalid
from stream.worker.metrics import WorkerMetrics, record_prequential
from stream.worker.progress import PartitionProgress, TopicPartition

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    recommendations: list[Output] = field(default_factory=list)
    dead_letters: list[Output] = field(default_factory=list)
    events: int = 0
    duplicates: int = 0  # events whose event_id was learned before (within the dedup window)
    deltas: list[Output] = field(default_factory=list)  # item deltas for the other workers (learn scope shared)
    replayed: int = 0  # messages below the restored snapshot's offsets: already in the state


def _invalid(exc: Exception, message: RawMessage) -> Invalid:
    """The DLQ reason for an exception met while reading one message: its own, or "unprocessable"
    for one the validation did not foresee (logged: it is a bug to fix in ``stream.wire.schema``)."""
    if isinstance(exc, Invalid):
        return exc
    log.exception("unexpected error reading %s[%s]@%s; dead-lettered as unprocessable",
                  message.topic, message.partition, message.offset)
    return Invalid("unprocessable", f"{type(exc).__name__}: {exc}"[:500])


def build_engine(settings: Settings) -> Engine:
    """The engine a worker with ``settings`` runs: the fast engine or the blend, inside the self-tuning
    loop when ``self_tune`` is on (it searches nothing itself: ``streamrec tuner`` does, and
    ``stream.worker.config_handover`` swaps its winners in), with the in-loop bandits of
    ``online.tuning`` moving learning rates and blend weights inside it when the tuner is on too."""
    config = settings.engine_config()
    bandit = None
    if settings.tuner.enabled:
        from online.tuning import TunedRecommender, tuned_engine_config

        config = tuned_engine_config(config)
        bandit = functools.partial(TunedRecommender, config=settings.tuner_config())
    if settings.search.enabled:
        from online.search import SelfTunedRecommender

        return SelfTunedRecommender(config, searcher=None, schedule=settings.schedule(), bandit=bandit)
    engine = StreamingRecommender(config)
    return engine if bandit is None else bandit(engine)


def collects_deltas(engine: Engine, quiet: bool = False) -> bool:
    """Whether ``engine`` can collect item deltas while it learns (``learn_many(events, deltas=...)``,
    ``online.sharing``); learn scope ``shared`` falls back to ``partitions`` (saying so) for one that cannot."""
    import inspect

    collects = getattr(engine, "collects_deltas", None)  # a wrapper knows whether the engine it serves does
    if collects is None:
        collects = "deltas" in inspect.signature(engine.learn_many).parameters
    if collects and hasattr(engine, "apply_item_deltas"):
        return True
    (log.info if quiet else log.warning)("item sharing needs an engine that collects item deltas; %s does not: "
                                         "this worker learns its own partitions only", type(engine).__name__)
    return False


class EventProcessor:
    """Turns raw ``events`` and ``rec-requests`` messages into lists and dead letters."""

    def __init__(self, settings: Settings, engine: Engine | None = None,
                 metrics: WorkerMetrics | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.engine = engine or build_engine(settings)
        self.metrics = metrics
        self.clock = clock
        self._rec_ids = itertools.count()
        self._rec_prefix = f"{os.getpid():x}-{int(clock() * 1000):x}-"
        self.recent_ids = RecentIds(settings.durability.dedup_window)
        # Per partition: the next offset to learn (what a snapshot covers), what a restored state
        # already holds, and what was learned as a replica before the partition became ours.
        self.progress = PartitionProgress()
        self.duplicates = 0
        self.replayed = 0
        self.replicated = 0
        self.lists_failed = 0
        self.feedback_matched = 0
        self.feedback_unknown = 0
        # Only then do events that name a served list (rec_id) reward the tuner's arms.
        self.bandit_feedback = settings.tuner.enabled and settings.tuner.feedback == "bandit"
        # Learn scope "shared": what each batch teaches the item-level models goes to the other workers
        # (stream.worker.sharing); events whose item knowledge came from them are learned for their users only.
        scope = settings.durability.learn_scope
        self.sharing = scope in ("shared", "auto") and collects_deltas(self.engine, quiet=scope == "auto")
        # "auto" publishes only while another worker holds some partitions (on_assigned); it always applies
        self.publishing = self.sharing and scope == "shared"
        self.deltas_published = 0
        # Deltas handed to the producer since the last flush the durability keeper saw succeed: a snapshot
        # keeps them (they describe events it covers), a restored worker publishes them again.
        self.unacked_deltas: list[Output] = []
        self._republish: list[Output] = []  # of those, restored ones not yet sent again
        self.events_known = 0  # events learned for their users only: their items came as deltas
        # What the encoder adds, on one user in encoder.shadow_every: HR with and without it (online.shadow)
        every = settings.encoder.shadow_every
        self.encoder_shadow = (StrategyShadow("encoder", every=every, max_users=50_000, unweighed=False)
                               if every > 0 else None)
        # ... and mutes it while those lists lose significantly more hits than they win (online.shadow)
        gate_z = settings.encoder.gate_z
        self.encoder_gate = (StrategyGate(gate_z, settings.encoder.gate_carry)
                             if self.encoder_shadow is not None and gate_z > 0 else None)

    @property
    def strategy(self) -> str:
        """What produces the lists, for the "strategy" field of the contract (a config swap may change it)."""
        return "blend" if self.engine.config.blend is not None else "popularity+next_item"

    def restore(self, engine: Engine, offsets: Mapping[TopicPartition, int], recent_ids: list[str],
                committed: Mapping[TopicPartition, int] | None = None) -> None:
        """Continue from a snapshot: its engine, the offsets it covers, the event ids it had seen.

        ``committed`` is what the group had committed when the snapshot was taken. If a partition's
        first message after the restart lies below it, the topic was recreated or the group's
        offsets reset: its offsets no longer mean what the snapshot meant, so nothing is skipped there
        (:meth:`PartitionProgress.already_learned`).
        """
        self.engine = engine
        self.progress.restore(offsets, committed)
        self.recent_ids = RecentIds(self.settings.durability.dedup_window, recent_ids)

    def restore_deltas(self, unacked: Sequence[tuple[bytes, bytes]]) -> None:
        """Item deltas a snapshot kept because the producer had not acknowledged them: the next batch
        publishes them again (whoever applied them already skips them by position)."""
        topic = self.settings.topics.item_deltas
        self.unacked_deltas = [Output(topic, key, value) for key, value in unacked]
        self._republish = list(self.unacked_deltas)

    def deltas_acknowledged(self, count: int) -> None:
        """The producer acknowledged the first ``count`` unacknowledged deltas (a flush succeeded)."""
        del self.unacked_deltas[:count]

    # -- events ---------------------------------------------------------------------------
    def process_events(self, messages: Sequence[RawMessage], received: float | None = None) -> BatchResult:
        """Learn a micro-batch and build its lists; ``received`` (epoch seconds) is when the worker's
        consumer fetched it, carried by each list as ``received_ts`` (where the worker's share starts)."""
        settings = self.settings
        result = BatchResult()
        learn: list[Interaction] = []
        latest: dict[str, tuple[Interaction, float | None]] = {}
        types: dict[str, int] = {}
        learned_from: list[RawMessage] = []  # messages with events in ``learn`` (for the DLQ if learning fails)
        offsets: list[tuple[int, int]] = []  # (partition, offset) of each event in ``learn`` (sharing)
        sharing = self.sharing
        answered: list[Interaction] = []  # events that name the list they act on (rec_id)
        bandit = self.bandit_feedback
        progress, seen_before = self.progress, self.recent_ids.seen_before
        for message in messages:
            tp = TopicPartition(message.topic, message.partition)
            if progress.already_learned(tp, message.offset):
                result.replayed += 1  # re-read after a restart; the snapshot already holds it
                continue
            if progress.answer_only(tp, message.offset):
                result.replayed += 1
                for event in self._decode_events(message, result):
                    if event.type not in schema.NON_POSITIVE_TYPES:
                        latest[event.user_id] = (event, message.timestamp)
                continue
            progress.learned(tp, message.offset)
            learned_before = len(learn)
            for event in self._decode_events(message, result):
                if event.event_id is not None and seen_before(event.event_id):
                    result.duplicates += 1
                    continue
                types[event.type] = types.get(event.type, 0) + 1
                if bandit and event.rec_id is not None:
                    answered.append(event)
                if event.type in schema.NON_POSITIVE_TYPES:
                    continue
                learn.append(event)
                if sharing:
                    offsets.append((message.partition, message.offset))
                latest[event.user_id] = (event, message.timestamp)
            if len(learn) > learned_before:
                learned_from.append(message)
        if answered:
            self._feedback(answered)
        if self.encoder_shadow is not None:
            # each event against its user's last pair of lists; the gate mutes or serves the encoder for this
            # batch's lists on the record so far
            owed, lost = self.encoder_shadow.score(learn) if learn else (0, 0)
            if self.encoder_gate is not None:  # the encoder's slot is the engine's now: a config swap may replace it
                self.encoder_gate.steer(strategy_slot(self.engine, "encoder"), owed, lost)
        try:
            if sharing:
                result.deltas = self._republish + self._learn_sharing(learn, offsets)
                self.unacked_deltas.extend(result.deltas[len(self._republish):])
                self._republish = []
            else:
                self.engine.learn_many(learn)
        except Exception as exc:  # a bug in a model: keep the worker up, keep the input (in the DLQ)
            log.exception("learning a micro-batch of %d events failed; its messages go to the DLQ", len(learn))
            failed = Invalid("processing_failed", f"learning failed: {exc!r}"[:500])
            for message in learned_from:
                result.dead_letters.append(self._dead_letter(message, message.value or b"", failed, None))
            latest = {}
        result.events = sum(types.values())
        self.duplicates += result.duplicates
        self.replayed += result.replayed
        if settings.serving.push:
            self._prepare(latest)
            for user_id, (event, source_ts) in latest.items():
                try:
                    result.recommendations.append(self._list_for(user_id, settings.serving.k, (), None, event,
                                                                 source_ts, received))
                except Exception:  # a bug in a model: this user misses one list, the batch goes on
                    self.lists_failed += 1
                    log.exception("building the list of user %r failed", user_id[:100])
        if self.metrics is not None:
            self._count(messages, types, result)
        return result

    def _learn_sharing(self, learn: list[Interaction], offsets: list[tuple[int, int]]) -> list[Output]:
        """Learn a batch partition by partition, collecting each partition's item deltas; events whose item
        knowledge the engine already holds (another worker's deltas, before a restart or a rebalance) are
        learned for their users only. Returns the deltas to publish, keyed by source partition."""
        from online.sharing import DeltaCollector, encode

        engine = self.engine
        parts: dict[int, list[int]] = {}
        for index, (partition, _) in enumerate(offsets):
            parts.setdefault(partition, []).append(index)
        out: list[Output] = []
        topic = self.settings.topics.item_deltas
        for partition, indices in parts.items():
            # The engine holds a partition's item knowledge up to one position: when the batch's lowest offset lies
            # past it, so does every event's (the usual case), and when its highest does not, none does. Only a
            # batch that straddles the position is split event by event.
            positions = [offsets[i][1] for i in indices]
            if not engine.knows_items(partition, min(positions)):
                known, fresh = [], indices
            elif engine.knows_items(partition, max(positions)):
                known, fresh = [learn[i] for i in indices], []
            else:
                known = [learn[i] for i in indices if engine.knows_items(partition, offsets[i][1])]
                fresh = [i for i in indices if not engine.knows_items(partition, offsets[i][1])]
            if known:
                engine.learn_users(known)
                self.events_known += len(known)
            if not fresh:
                continue
            collector = DeltaCollector(partition)
            collector.cover(offsets[fresh[0]][1], offsets[fresh[-1]][1])
            events = [learn[i] for i in fresh]
            if not self.publishing:  # alone in the group ("auto"): nothing to collect, positions still move
                engine.learn_many(events)
                engine.hold_items(partition, offsets[fresh[-1]][1])
                continue
            engine.learn_many(events, deltas=collector)
            deltas = collector.seal()
            if deltas is not None:
                out.append(Output(topic, str(partition).encode(), encode(deltas)))
        self.deltas_published += len(out)
        return out

    def on_assigned(self, partitions: set[int], total: int) -> None:
        """The group gave this worker ``partitions`` of ``total``: with learn scope ``auto`` it publishes item
        deltas only while another worker holds some (a group of one has nobody to tell)."""
        if self.sharing and self.settings.durability.learn_scope == "auto":
            self.publishing = len(partitions) < total

    def apply_deltas(self, values: Sequence[bytes]) -> int:
        """Add other workers' item deltas (``stream.worker.sharing``); each is applied once, by the
        positions the engine's item-level state reaches. Returns how many were applied."""
        from online.sharing import decode

        applied = 0
        engine = self.engine
        for value in values:
            try:
                deltas = decode(value)
            except ValueError:
                log.error("an unreadable item delta (%d bytes) was skipped", len(value))
                continue
            applied += engine.apply_item_deltas(deltas)
        return applied

    def _feedback(self, answered: list[Interaction]) -> None:
        """Reward the lists these events name: a positive event pays 1 if its item was in the list,
        an impression or a skip pays 0 (``online.tuning`` IPS for the arms that did not serve)."""
        feedback = self.engine.feedback
        for event in answered:
            reward = 0.0 if event.type in schema.NON_POSITIVE_TYPES else 1.0
            if feedback(event.rec_id, event.item_id, reward):
                self.feedback_matched += 1
            else:
                self.feedback_unknown += 1  # another worker's list, or older than the tuner remembers

    def learn_replica(self, messages: Sequence[RawMessage]) -> int:
        """Learn events of partitions another worker owns (``STREAMREC_LEARN_SCOPE=all``).

        No lists and no dead letters: the owner answers and dead-letters them. Messages below the
        partition's next offset were learned already (by this worker's own agent, before a revocation).
        Returns how many events were learned.
        """
        learn: list[Interaction] = []
        progress, seen_before = self.progress, self.recent_ids.seen_before
        discard = BatchResult()
        for message in messages:
            if not progress.learned(TopicPartition(message.topic, message.partition), message.offset):
                continue
            for event in self._decode_events(message, discard):
                if event.event_id is not None and seen_before(event.event_id):
                    continue
                if event.type not in schema.NON_POSITIVE_TYPES:
                    learn.append(event)
        self.engine.learn_many(learn)
        self.replicated += len(learn)
        return len(learn)

    def _decode_events(self, message: RawMessage, result: BatchResult) -> list[Interaction]:
        raw = message.value
        if isinstance(raw, UndecodableBatch):
            result.dead_letters.append(self._undecodable(message, raw))
            return []
        settings = self.settings
        try:
            if raw is None or len(raw) == 0:
                raise Invalid("not_json", "empty message")
            if len(raw) > settings.serving.max_message_bytes:
                raise Invalid("oversized_message", f"{len(raw)} bytes > {settings.serving.max_message_bytes}")
            if raw[:1] == b"[":  # an array valid throughout: one typed pass (anything else: element by element)
                try:
                    events = schema.validate_event_array(raw, settings.serving.max_event_bytes,
                                                         settings.serving.max_events_per_message)
                except Exception:  # a bug in the typed pass: the element path judges the message instead
                    log.exception("the typed pass over an events array failed; reading it element by element")
                    events = None
                if events is not None:
                    return events
            payload = schema.decode_json(raw)
            if isinstance(payload, list):
                if not payload:
                    raise Invalid("empty_batch", "an empty JSON array carries no events")
                if len(payload) > settings.serving.max_events_per_message:
                    raise Invalid("too_many_events",
                                  f"{len(payload)} events > {settings.serving.max_events_per_message}")
            elif len(raw) > settings.serving.max_event_bytes:
                raise Invalid("oversized_event", f"{len(raw)} bytes > {settings.serving.max_event_bytes}")
        except Exception as exc:
            result.dead_letters.append(self._dead_letter(message, raw or b"", _invalid(exc, message), None))
            return []
        if not isinstance(payload, list):
            try:
                return [schema.validate_event(payload)]
            except Exception as exc:
                result.dead_letters.append(self._dead_letter(message, raw, _invalid(exc, message), None))
                return []
        events: list[Interaction] = []
        check_sizes = len(raw) > settings.serving.max_event_bytes  # only then can one element be too big
        for index, obj in enumerate(payload):
            try:
                if check_sizes and schema.encoded_size(obj) > settings.serving.max_event_bytes:
                    raise Invalid("oversized_event",
                                  f"element {index} exceeds {settings.serving.max_event_bytes} bytes")
                events.append(schema.validate_event(obj))
            except Exception as exc:
                result.dead_letters.append(self._dead_letter(message, schema.dead_letter_original(obj),
                                                             _invalid(exc, message), index))
        return events

    # -- requests -------------------------------------------------------------------------
    def process_requests(self, messages: Sequence[RawMessage], received: float | None = None) -> BatchResult:
        settings = self.settings
        result = BatchResult()
        for message in messages:
            raw = message.value or b""
            if isinstance(raw, UndecodableBatch):
                result.dead_letters.append(self._undecodable(message, raw))
                continue
            try:
                if len(raw) > settings.serving.max_event_bytes:
                    raise Invalid("oversized_message", f"{len(raw)} bytes > {settings.serving.max_event_bytes}")
                request = schema.validate_request(schema.decode_json(raw), settings.serving.k, settings.serving.max_k)
            except Exception as exc:
                result.dead_letters.append(self._dead_letter(message, raw, _invalid(exc, message), None))
                continue
            result.recommendations.append(self._list_for(
                request.user_id, request.k, request.exclude, request.request_id, None, message.timestamp, received))
        if self.metrics is not None:
            m = self.metrics
            m.recommendations_published.labels("request").inc(len(result.recommendations))
            for letter in result.dead_letters:
                m.events_dlq.labels(letter.reason).inc()
        return result

    # -- helpers --------------------------------------------------------------------------
    def _prepare(self, users: Iterable[str]) -> None:
        """One batched pass over the users about to be served, for strategies that batch (the encoder's
        forward pass for all of them, ``online.blend.Blend.prepare``); a failure only costs the batching."""
        engine = self.engine
        gate, shadow = self.encoder_gate, self.encoder_shadow
        if gate is not None and shadow is not None and not gate.serving:
            users = [user_id for user_id in users if shadow.measures(user_id)]  # only their lists rank with it
        try:
            engine.blend.prepare((user_id, state.history) for user_id in users
                                 if (state := engine.user_state(user_id)) is not None)
        except Exception:
            log.exception("preparing the micro-batch's lists failed; each list is built on its own")

    def _list_for(self, user_id: str, k: int, exclude: tuple[str, ...], request_id: str | None,
                  event: Interaction | None, source_ts: float | None, received: float | None = None) -> Output:
        """One list, stamped (``ts``) when it is built: ``ts - received`` is the worker's share of its latency."""
        rec_id = f"{self._rec_prefix}{next(self._rec_ids)}"
        # The list comes back with what served it (arms, model versions): never read off the engine
        # afterwards. The tuner logs the arms behind rec_id.
        ranking = self.engine.recommend(user_id, k, exclude, rec_id=rec_id)
        if self.encoder_shadow is not None and request_id is None:  # push lists: one per user and event
            try:
                gate = self.encoder_gate
                self.encoder_shadow.observe(self.engine, user_id, k, exclude, ranking,
                                            muted=gate is not None and not gate.serving)
            except Exception:  # measuring must never cost a list
                log.exception("ranking the list without the encoder failed; not measured")
        value = schema.recommendation(
            rec_id=rec_id, user_id=user_id, items=ranking.items, k=k,
            request_id=request_id, event=event, source_ts=source_ts, now=self.clock(), received_ts=received,
            model_version=ranking.model_version, strategy=self.strategy, arm=ranking.arm or "default")
        return Output(self.settings.topics.recommendations, user_id.encode(), value, source_ts)

    def _dead_letter(self, message: RawMessage, raw: bytes, bad: Invalid, index: int | None) -> Output:
        value = schema.dead_letter(raw=raw, reason=bad.reason, detail=bad.detail, topic=message.topic,
                                   partition=message.partition, offset=message.offset, index=index,
                                   key=message.key, now=self.clock())
        return Output(self.settings.topics.dlq, message.key, value, message.timestamp, bad.reason)

    def _undecodable(self, message: RawMessage, batch: UndecodableBatch) -> Output:
        """One dead letter for a whole record batch the consumer could not decode: its raw bytes,
        its offset range, why. The consumer has moved past it (``stream.kafka.batch_guard``)."""
        log.error("undecodable record batch in %s[%s]: %s; dead-lettered, moving on",
                  message.topic, message.partition, batch.describe())
        value = schema.dead_letter(raw=bytes(batch), reason="undecodable_batch", detail=batch.describe(),
                                   topic=message.topic, partition=message.partition, offset=batch.first_offset,
                                   last_offset=batch.last_offset, truncated=batch.truncated, now=self.clock())
        return Output(self.settings.topics.dlq, None, value, message.timestamp, "undecodable_batch")

    def _count(self, messages: Sequence[RawMessage], types: dict[str, int], result: BatchResult) -> None:
        m = self.metrics
        assert m is not None
        m.messages_processed.inc(len(messages))
        for kind, n in types.items():
            m.events_processed.labels(kind).inc(n)
        for letter in result.dead_letters:
            m.events_dlq.labels(letter.reason).inc()
        m.recommendations_published.labels("push").inc(len(result.recommendations))
        m.batch_size.observe(result.events)
        engine = self.engine
        m.state_users.set(engine.n_users)
        m.state_items.set(engine.n_items)
        record_prequential(m, engine.prequential.snapshot(), engine.config.k)
        if self.encoder_shadow is not None and self.encoder_shadow.evaluated:
            shadow = self.encoder_shadow.snapshot()
            m.encoder_shadow_hit_rate.labels("served").set(shadow["hr"])
            m.encoder_shadow_hit_rate.labels("without_encoder").set(shadow["hr_without"])
            for kind in ("evaluated", "owed", "lost"):
                m.encoder_shadow_hits.labels(kind).set(shadow[kind])
        if self.encoder_gate is not None and self.encoder_gate.version is not None:
            m.encoder_gate.set(float(self.encoder_gate.serving))
            m.encoder_gate_z.set(self.encoder_gate.z)

