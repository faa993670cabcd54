"""Thin Kafka edges: client configurations derived from the settings, and topic administration.

confluent-kafka (librdkafka) does the protocol work; this module only decides properties.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin re-exports it untyped

from streamer.record import Record
from streamer.settings import Settings

log = logging.getLogger(__name__)

#: The broker's default max.message.bytes, used when a topic's limit cannot be read.
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
#: Bytes a record needs beyond key, value and headers (record and batch framing).
RECORD_OVERHEAD = 256


def consumer_config(settings: Settings) -> dict[str, object]:
    return {
        **settings.client_config(),
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "fetch.wait.max.ms": min(settings.commit_interval_ms, 500),
        "max.poll.interval.ms": max(300_000, settings.transaction_timeout_ms * 2),
    }


def batch_bytes(limits: Iterable[int]) -> int:
    """A producer batch.size that no output topic refuses: librdkafka's default (1 MB) unless a
    topic's max.message.bytes is smaller."""
    return max(min([1_000_000, *(limit - 1024 for limit in limits)]), 1024)


def producer_config(
    settings: Settings, transactional_id: str | None, batch_size: int = 1_000_000
) -> dict[str, object]:
    config: dict[str, object] = {
        **settings.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": batch_size,
        # Records are size-checked against each topic's own limit before they are produced;
        # the client-side cap only has to stay above every topic's.
        "message.max.bytes": 64 * 1024 * 1024,
        "queue.buffering.max.kbytes": 256 * 1024,
    }
    if transactional_id:
        config["transactional.id"] = transactional_id
        config["transaction.timeout.ms"] = settings.transaction_timeout_ms
    return config


def admin(settings: Settings) -> AdminClient:
    return AdminClient(dict(settings.client_config()))


class UnreachableError(Exception):
    """No broker answered: one line naming the bootstrap servers, never the credentials."""


def check_reachable(settings: Settings, timeout: float = 15.0) -> None:
    try:
        admin(settings).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise UnreachableError(
            f"cannot reach Kafka at {settings.bootstrap_servers} within {timeout:.0f} s "
            f"({exc.args[0].name()}); check STREAMER_BOOTSTRAP_SERVERS and STREAMER_KAFKA"
        ) from None


@dataclass(frozen=True)
class TopicPlan:
    name: str
    partitions: int
    config: dict[str, str]


def topic_plan(settings: Settings) -> list[TopicPlan]:
    """The raw, public, archive and quarantine topics; the archive keeps data forever."""
    forever = {"retention.ms": "-1", "retention.bytes": "-1"}
    plans: list[TopicPlan] = []
    for route in settings.routes:
        plans += [
            TopicPlan(route.raw, settings.topic_partitions, {}),
            TopicPlan(route.public, settings.topic_partitions, {}),
            TopicPlan(route.archive, settings.topic_partitions, dict(forever)),
        ]
    plans.append(TopicPlan(settings.quarantine_topic, settings.topic_partitions, {}))
    return plans


def create_topics(settings: Settings, timeout: float = 30.0) -> list[tuple[str, str]]:
    """Create the topics that do not exist yet: returns (topic, 'created'|'exists') pairs."""
    check_reachable(settings)
    client = admin(settings)
    plans = topic_plan(settings)
    futures = client.create_topics(
        [
            NewTopic(p.name, p.partitions, settings.topic_replication, config=p.config)
            for p in plans
        ],
        request_timeout=timeout,
    )
    outcome: list[tuple[str, str]] = []
    for plan in plans:
        try:
            futures[plan.name].result(timeout)
            outcome.append((plan.name, "created"))
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            outcome.append((plan.name, "exists"))
    return outcome


def max_message_bytes(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """Each topic's max.message.bytes, so oversize copies are quarantined, not retried."""
    client = admin(settings)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
    limits: dict[str, int] = {}
    for resource, future in client.describe_configs(resources, request_timeout=30).items():
        try:
            entry = future.result(30).get("max.message.bytes")
            limits[resource.name] = int(entry.value) if entry else DEFAULT_MAX_MESSAGE_BYTES
        except KafkaException as exc:
            log.warning("cannot read max.message.bytes of %s: %s", resource.name, exc)
            limits[resource.name] = DEFAULT_MAX_MESSAGE_BYTES
    return limits


def record_size(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]
) -> int:
    header_bytes = sum(len(n) + len(v or b"") + 8 for n, v in headers)
    return len(key or b"") + len(value or b"") + header_bytes + RECORD_OVERHEAD


def read_committed(
    client_config: dict[str, str], topics: list[str], timeout: float = 60.0
) -> dict[str, list[Record]]:
    """Every committed record of ``topics`` as a ``read_committed`` reader sees them, read to
    the end offsets present at the call. For the demo and the tests; not a hot path."""
    consumer = Consumer(
        {
            **client_config,
            "group.id": f"streamer-reader-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    # The high watermark, not the last stable offset: a transaction's markers are written just
    # after its commit returns, and reading up to them is what makes the result complete.
    watermarks = Consumer(
        {**client_config, "group.id": "streamer-reader", "isolation.level": "read_uncommitted"}
    )
    try:
        metadata = consumer.list_topics(timeout=30)
        ends: dict[tuple[str, int], int] = {}
        starts: list[TopicPartition] = []
        for topic in topics:
            for partition in metadata.topics[topic].partitions:
                tp = TopicPartition(topic, partition)
                low, high = watermarks.get_watermark_offsets(tp, 30)
                if high > low:
                    ends[(topic, partition)] = high
                    starts.append(TopicPartition(topic, partition, low))
        watermarks.close()
        out: dict[str, list[Record]] = {t: [] for t in topics}
        consumer.assign(starts)
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    record = Record.of(message)
                    out[record.topic].append(record)
            positions = consumer.position([TopicPartition(t, p) for t, p in ends])
            for tp in positions:
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
        if ends:
            raise TimeoutError(f"could not read to the end of {sorted(ends)} in {timeout} s")
        return out
    finally:
        consumer.close()
