"""The loop: poll a batch, run the pipeline, produce both copies, commit, repeat.

Exactly-once (the default): one transactional producer per instance; every batch's public and
archive copies (or quarantine records) and the consumed offsets commit in one transaction. A
failed transaction is aborted and the consumer rewound to the batch's first offsets, so the
batch is redone from scratch; nothing is counted until its transaction commits.

At-least-once: an idempotent producer; offsets are committed after every copy is delivered.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streamer import kafka
from streamer.masking import Reason, Rejected
from streamer.metrics import Health, Metrics
from streamer.pipeline import Routed, output_headers, process, quarantine_headers
from streamer.policy import Policy
from streamer.record import Coordinates, Record
from streamer.settings import Route, Settings

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class FatalKafkaError(Exception):
    """The producer cannot go on (fenced by a newer instance, or a fatal client error)."""


@dataclass
class Tally:
    """Counts for one batch, applied to the metrics and the summary only once it commits."""

    consumed: Counter[str] = field(default_factory=Counter)
    produced: Counter[tuple[str, str]] = field(default_factory=Counter)
    quarantined: Counter[tuple[str, str]] = field(default_factory=Counter)
    redactions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    clean: Counter[str] = field(default_factory=Counter)
    tombstones: Counter[str] = field(default_factory=Counter)
    timestamps: list[tuple[str, int]] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.consumed += other.consumed
        self.produced += other.produced
        self.quarantined += other.quarantined
        self.redactions += other.redactions
        self.clean += other.clean
        self.tombstones += other.tombstones


@dataclass
class Summary:
    """What a run did: counts only, never payload text."""

    totals: Tally = field(default_factory=Tally)
    committed: int = 0
    aborted: int = 0
    started: float = field(default_factory=time.monotonic)

    def render(self) -> str:
        t = self.totals
        seconds = max(time.monotonic() - self.started, 1e-9)
        consumed = sum(t.consumed.values())
        lines = [
            f"consumed {consumed} events in {seconds:.1f} s ({consumed / seconds:,.0f}/s); "
            f"transactions committed {self.committed}, aborted {self.aborted}"
        ]
        for (route, output), n in sorted(t.produced.items()):
            lines.append(f"  {route} -> {output}: {n}")
        for (route, reason), n in sorted(t.quarantined.items()):
            lines.append(f"  {route} quarantined ({reason}): {n}")
        for route, n in sorted(t.tombstones.items()):
            lines.append(f"  {route} tombstones passed on: {n}")
        for (route, policy, key), n in sorted(t.redactions.items()):
            lines.append(f"  redactions {route}/{policy}/{key}: {n}")
        for route, n in sorted(t.clean.items()):
            lines.append(f"  {route} events needing no redaction: {n}")
        return "\n".join(lines)


class Runner:
    """One streamer instance: a consumer in the group and one (transactional) producer."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        health: Health,
        transactional_id: str,
        stop_when_caught_up: bool = False,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.keys = settings.keys
        self.transactional_id = transactional_id if settings.exactly_once else None
        self.stop_when_caught_up = stop_when_caught_up
        self.routes: dict[str, Route] = {r.raw: r for r in settings.routes}
        self.summary = Summary()
        self.stopping = False
        self.oversize: set[Coordinates] = set()
        self._suspects: set[Coordinates] = set()
        self._outputs: list[str] = []
        self._batch_bytes = 0
        self.assigned: set[Partition] = set()
        self.targets: dict[Partition, int] = {}
        self.reached: dict[Partition, int] = {}
        self.ever_assigned = False
        self._failed: list[tuple[Coordinates, KafkaError]] = []
        self._last_lag = 0.0
        self._limits: dict[str, int] = {}
        self._out_partitions: dict[str, int] = {}
        self.consumer: Any = None
        self.producer: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: finishing the open batch, then leaving the group", signum)
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self) -> Summary:
        settings = self.settings
        outputs = [t for r in settings.routes for t in (r.public, r.archive)]
        outputs.append(settings.quarantine_topic)
        self._outputs = outputs
        kafka.check_reachable(settings)
        self._limits = kafka.max_message_bytes(settings, outputs)
        self._new_producer()
        self._out_partitions = self._partition_counts(outputs)
        self.health.update(producer_ready=True)
        self.consumer = Consumer(kafka.consumer_config(settings))
        if self.stop_when_caught_up:
            self.targets = self._end_offsets()
            log.info("catching up to %d records present at start", self._remaining())
        self.consumer.subscribe(
            list(self.routes),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            self._loop()
        finally:
            self._close()
        return self.summary

    def _new_producer(self) -> None:
        """(Re)create the producer with record batches that fit every output topic's limit
        (librdkafka does not split a batch the broker refuses as too large)."""
        if self.producer is not None:
            self.producer.flush(10)
        self._batch_bytes = kafka.batch_bytes(self._limits.values())
        self.producer = Producer(
            kafka.producer_config(self.settings, self.transactional_id, self._batch_bytes)
        )
        if self.transactional_id:
            self.producer.init_transactions(30)

    def _refresh_limits(self) -> None:
        """After a copy was refused as too large: the topic limits may have changed."""
        self._limits = kafka.max_message_bytes(self.settings, self._outputs)
        if kafka.batch_bytes(self._limits.values()) < self._batch_bytes:
            log.info("an output topic's max.message.bytes shrank: recreating the producer")
            self._new_producer()

    def _loop(self) -> None:
        timeout = self.settings.commit_interval_ms / 1000
        while not self.stopping:
            messages = self.consumer.consume(self.settings.batch_size, timeout)
            batch: list[Record] = []
            ends: list[tuple[Partition, int]] = []
            for message in messages:
                error = message.error()
                if error is None:
                    batch.append(Record.of(message))
                elif error.code() == KafkaError._PARTITION_EOF:
                    eof = Record.of(message)
                    ends.append(((eof.topic, eof.partition), eof.offset))
                elif error.fatal():
                    raise FatalKafkaError(f"consumer: {error.name()}")
                else:
                    log.warning("consumer: %s (%s)", error.name(), error.str())
            # A rebalance served inside consume() may have revoked some partitions: their
            # records now belong to another instance and must not be copied here too.
            batch = [r for r in batch if (r.topic, r.partition) in self.assigned]
            if batch and not self._commit_batch(batch):
                continue
            for part, offset in ends:
                self._reach(part, offset)
            self._update_lag()
            if self.stop_when_caught_up and self._caught_up():
                log.info("caught up with the end offsets present at start")
                break

    def _close(self) -> None:
        if self.producer is not None:
            self.producer.flush(10)
        if self.consumer is not None:
            self.consumer.close()  # leaves the group, so its partitions move at once
        self.health.update(assigned=False, producer_ready=False)

    # -- one batch -------------------------------------------------------------------------

    def _commit_batch(self, batch: list[Record]) -> bool:
        """Produce and commit one batch; on failure abort, rewind, and return False."""
        first: dict[Partition, int] = {}
        last: dict[Partition, int] = {}
        for r in batch:
            part = (r.topic, r.partition)
            first.setdefault(part, r.offset)
            last[part] = r.offset
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        tally = Tally()
        self._failed = []
        try:
            if self.transactional_id:
                self.producer.begin_transaction()
            for record in batch:
                self._route(record, tally)
            if self.transactional_id:
                self._commit_transaction(offsets)
            else:
                self._commit_after_delivery(offsets)
        except KafkaException as exc:
            self._abort(exc.args[0], first)
            return False
        now_ms = time.time() * 1000
        for route, ts in tally.timestamps:
            self.metrics.latency.labels(route).observe(max(now_ms - ts, 0) / 1000)
        self._apply(tally)
        for part, offset in last.items():
            self._reach(part, offset + 1)
        self.health.update(failing_since=None)
        return True

    def _commit_transaction(self, offsets: list[TopicPartition]) -> None:
        metadata = self.consumer.consumer_group_metadata()
        self.producer.send_offsets_to_transaction(offsets, metadata, 30)
        for attempt in range(5):
            try:
                self.producer.commit_transaction(60)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == 4:
                    raise

    def _commit_after_delivery(self, offsets: list[TopicPartition]) -> None:
        remaining = self.producer.flush(60)
        if remaining:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "delivery timed out"))
        if self._failed:
            raise KafkaException(self._failed[0][1])
        self.consumer.commit(offsets=offsets, asynchronous=False)

    def _abort(self, error: KafkaError, first: dict[Partition, int]) -> None:
        too_large = False
        for coords, failure in self._failed:
            self.metrics.delivery_errors.labels(failure.name()).inc()
            if failure.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                # Refused once: re-read the limits and retry. Refused again with fresh limits:
                # quarantine it by reference rather than retry forever.
                if coords in self._suspects:
                    self.oversize.add(coords)
                self._suspects.add(coords)
                too_large = True
        if self.transactional_id and error.fatal():
            raise FatalKafkaError(
                f"producer {error.name()}: another instance with transactional id "
                f"{self.transactional_id!r} took over, or the client failed for good"
            )
        log.warning(
            "batch failed (%s): %s; redoing it from offsets %s",
            error.name(),
            "aborting the transaction" if self.transactional_id else "not committing",
            ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(first.items())),
        )
        if self.transactional_id:
            try:
                self.producer.abort_transaction(30)
            except KafkaException as exc:
                if exc.args[0].fatal():
                    raise FatalKafkaError(f"producer {exc.args[0].name()}") from None
                raise
        self.metrics.transactions.labels("aborted").inc()
        self.summary.aborted += 1
        if too_large:
            self._refresh_limits()
        if self.health.failing_since is None:
            self.health.update(failing_since=time.monotonic())
        for (topic, partition), offset in first.items():
            if (topic, partition) in self.assigned:
                try:
                    self.consumer.seek(TopicPartition(topic, partition, offset))
                except KafkaException as exc:
                    log.warning("cannot rewind %s[%d]: %s", topic, partition, exc.args[0].name())

    def _route(self, record: Record, tally: Tally) -> None:
        route = self.routes[record.topic]
        tally.consumed[route.name] += 1
        if record.timestamp:
            tally.timestamps.append((route.name, record.timestamp))
        if record.coordinates in self.oversize:
            self._quarantine(record, Reason.TOO_LARGE, tally, by_reference=True)
            return
        started = time.perf_counter()
        result = process(record.value, self.keys, route, record)
        self.metrics.mask_seconds.observe(time.perf_counter() - started)
        if isinstance(result, Rejected):
            self._quarantine(record, result.reason, tally)
            return
        copies = [
            (route.public, result.public, Policy.PUBLIC),
            (route.archive, result.archive, Policy.ARCHIVE),
        ]
        outputs = [
            (topic, value, output_headers(record.headers, p, result.count(p), self.keys))
            for topic, value, p in copies
        ]
        if any(kafka.record_size(record.key, v, h) > self._limits[t] for t, v, h in outputs):
            self._quarantine(record, Reason.TOO_LARGE, tally, by_reference=True)
            return
        for topic, value, headers in outputs:
            self._produce(topic, record, value, headers)
        self._count(route.name, result, tally)

    def _count(self, route: str, result: Routed, tally: Tally) -> None:
        if result.public is None:
            tally.tombstones[route] += 1
        tally.produced[(route, "public")] += 1
        tally.produced[(route, "archive")] += 1
        if not any(result.redactions.values()):
            tally.clean[route] += 1
        for policy, counts in result.redactions.items():
            for key, n in counts.items():
                tally.redactions[(route, policy, key)] += n  # a StrEnum: no .value lookup

    def _quarantine(
        self, record: Record, reason: Reason, tally: Tally, by_reference: bool = False
    ) -> None:
        log.info(
            "quarantined %s[%d]@%d: %s%s",
            record.topic,
            record.partition,
            record.offset,
            reason.value,
            " (by reference)" if by_reference else "",
        )
        headers = quarantine_headers(
            record.headers, record.topic, record.partition, record.offset, reason
        )
        value = None if by_reference else record.value
        target = self.settings.quarantine_topic
        if kafka.record_size(record.key, value, headers) > self._limits[target]:
            value = None  # too large even for the quarantine: keep the reference
        self._produce(target, record, value, headers)
        name = self.routes[record.topic].name
        tally.quarantined[(name, reason.value)] += 1
        tally.produced[(name, "quarantine")] += 1

    def _produce(
        self,
        topic: str,
        record: Record,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
    ) -> None:
        """Same source partition, same output partition: per-key order is the raw topic's."""
        partition = record.partition % self._out_partitions.get(topic, 1)
        failed = self._failed
        coords = record.coordinates

        def delivered(error: KafkaError | None, _msg: Message) -> None:
            if error is not None:
                failed.append((coords, error))

        while True:
            try:
                self.producer.produce(
                    topic,
                    value=value,
                    key=record.key,
                    partition=partition,
                    headers=headers,
                    timestamp=record.timestamp,
                    on_delivery=delivered,
                )
                return
            except BufferError:
                self.producer.poll(0.1)

    def _apply(self, tally: Tally) -> None:
        m = self.metrics
        for route, n in tally.consumed.items():
            m.consumed.labels(route).inc(n)
        for (route, output), n in tally.produced.items():
            m.produced.labels(route, output).inc(n)
        for (route, reason), n in tally.quarantined.items():
            m.quarantined.labels(route, reason).inc(n)
        for (route, policy, key), n in tally.redactions.items():
            m.redactions.labels(route, policy, key).inc(n)
        for route, n in tally.clean.items():
            m.clean.labels(route).inc(n)
        m.transactions.labels("committed").inc()
        self.summary.totals.add(tally)
        self.summary.committed += 1

    # -- partitions, lag and catching up ---------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(p.topic, p.partition) for p in partitions}
        self.ever_assigned = True
        self.metrics.rebalances.labels("assigned").inc()
        self.metrics.assigned.set(len(self.assigned))
        self.health.update(assigned=bool(self.assigned))
        log.info("assigned %s", _names(partitions))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._drop(partitions, "revoked")

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._drop(partitions, "lost")

    def _drop(self, partitions: list[TopicPartition], kind: str) -> None:
        for p in partitions:
            self.assigned.discard((p.topic, p.partition))
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(p.topic, str(p.partition))
        self.metrics.rebalances.labels(kind).inc()
        self.metrics.assigned.set(len(self.assigned))
        self.health.update(assigned=bool(self.assigned))
        log.info("%s %s", kind, _names(partitions))

    def _partition_counts(self, topics: list[str]) -> dict[str, int]:
        metadata = self.producer.list_topics(timeout=30)
        counts = {}
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise FatalKafkaError(
                    f"output topic {topic} does not exist: run `streamer topics create` first"
                )
            counts[topic] = len(meta.partitions)
        return counts

    def _end_offsets(self) -> dict[Partition, int]:
        targets: dict[Partition, int] = {}
        metadata = self.consumer.list_topics(timeout=30)
        for topic in self.routes:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:
                raise FatalKafkaError(
                    f"raw topic {topic} does not exist: run `streamer topics create` first"
                )
            for partition in meta.partitions:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=30
                )
                if high > low:
                    targets[(topic, partition)] = high
        return targets

    def _reach(self, part: Partition, offset: int) -> None:
        if offset > self.reached.get(part, -1):
            self.reached[part] = offset

    def _remaining(self) -> int:
        return sum(max(t - self.reached.get(p, 0), 0) for p, t in self.targets.items())

    def _caught_up(self) -> bool:
        if not self.ever_assigned:
            return False
        pending = [p for p in self.assigned if self.reached.get(p, -1) < self.targets.get(p, 0)]
        if not pending:
            return True
        unknown = [TopicPartition(t, p) for t, p in pending if (t, p) not in self.reached]
        if not unknown:
            return False
        # A partition this run has not touched yet may be finished already (committed earlier).
        committed = self.consumer.committed(unknown, timeout=10)
        for tp in committed:
            self._reach((tp.topic, tp.partition), max(tp.offset, 0))
        return all(self.reached.get(p, -1) >= self.targets.get(p, 0) for p in self.assigned)

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 5 or not self.assigned:
            return
        self._last_lag = now
        parts = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
        for tp in self.consumer.position(parts):
            try:  # the high watermark of the last fetch: no request to the broker
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue
            position = tp.offset if tp.offset >= 0 else self.reached.get((tp.topic, tp.partition))
            if position is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(high - position, 0))


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"


def default_transactional_id(settings: Settings, hostname: Callable[[], str]) -> str:
    """Stable across restarts on one host, so a restarted instance fences its crashed
    predecessor and aborts its open transaction at once."""
    return settings.transactional_id or f"{settings.group_id}-{hostname()}"
