"""Shared pieces of the end-to-end benchmark (`make bench`): the broker, topics, events, a
steady-load producer, and the observers that time a run and sample its memory.

Everything here talks to the bootstrap servers it is given; without STREAMER_BOOTSTRAP_SERVERS
that is a broker started on 127.0.0.1 for the run and stopped at its end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # not re-exported with types

from bench.events import task_event

PARTITIONS = 6
#: Distinct events per size; event i is pool[i % POOL], so even i hold sensitive keys.
POOL = 8


def partition_of(i: int) -> int:
    """Event i's raw partition: counts even over the partitions, and every partition holds as
    many sensitive as clean events (``i % PARTITIONS`` would put all sensitive ones on the
    even partitions, so two processes would get unequal work)."""
    return (i // 2) % PARTITIONS


#: A sensitive member whose value is not "***": a leak. Public copies replace both keys,
#: archive copies `_secrets` only. (The clean events hold the same values under look-alike
#: names such as `secrets`, which are not sensitive, so searching for values would not do.)
LEAK_PUBLIC = re.compile(rb'"_(?:secrets|masked)"\s*+:\s*+(?!"\*\*\*")')
LEAK_ARCHIVE = re.compile(rb'"_secrets"\s*+:\s*+(?!"\*\*\*")')

_T0 = time.monotonic()


def say(message: str) -> None:
    """One progress line on stderr, with the time since the benchmark started."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# -- the broker --------------------------------------------------------------------------------


@contextlib.contextmanager
def kafka() -> Iterator[tuple[str, int | None]]:
    """The bootstrap servers to use and the broker's pid when it is local:
    STREAMER_BOOTSTRAP_SERVERS, or a local broker on a free 127.0.0.1 port in a temporary
    folder, stopped and removed at the end."""
    given = os.environ.get("STREAMER_BOOTSTRAP_SERVERS")
    if given:
        say(f"using the Kafka at {given} (STREAMER_BOOTSTRAP_SERVERS)")
        yield given, None
        return
    from streamer.localkafka import start, stop

    folder = Path(tempfile.mkdtemp(prefix="streamer-bench-kafka-"))
    say("starting a local Kafka broker")
    broker = start(data_dir=folder)
    say(f"Kafka running at {broker.bootstrap} (pid {broker.pid})")
    try:
        yield broker.bootstrap, broker.pid
    finally:
        say("stopping the local Kafka broker")
        stop(broker)
        shutil.rmtree(folder, ignore_errors=True)


def client(bootstrap: str) -> dict[str, str | int | float | bool]:
    """Properties every benchmark client shares: the servers, plus STREAMER_KAFKA (security)."""
    config: dict[str, str | int | float | bool] = {"bootstrap.servers": bootstrap, "log_level": 3}
    extra = os.environ.get("STREAMER_KAFKA")
    if extra:
        config.update({k: str(v) for k, v in json.loads(extra).items()})
    return config


# -- topics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """The topics of one case: a raw topic (may be shared between cases) and fresh outputs."""

    raw: str
    prefix: str

    @property
    def public(self) -> str:
        return f"{self.prefix}.public"

    @property
    def archive(self) -> str:
        return f"{self.prefix}.archive"

    @property
    def quarantine(self) -> str:
        return f"{self.prefix}.quarantine"

    @property
    def outputs(self) -> list[str]:
        return [self.public, self.archive, self.quarantine]

    def routes(self) -> str:
        """STREAMER_ROUTES: one route, raw -> public + archive."""
        route = {"name": "task", "raw": self.raw, "public": self.public, "archive": self.archive}
        return json.dumps([route])


def unique(label: str) -> str:
    return f"bench-{uuid.uuid4().hex[:8]}-{label}"


def create_topics(bootstrap: str, names: Sequence[str], partitions: int = PARTITIONS) -> None:
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient(client(bootstrap))
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names], request_timeout=30)
    for future in futures.values():
        future.result(60)
    # Metadata propagates asynchronously: wait until every partition has a leader.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=10).topics
        if all(
            n in meta
            and meta[n].error is None
            and len(meta[n].partitions) == partitions
            and all(p.leader >= 0 for p in meta[n].partitions.values())
            for n in names
        ):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topics {list(names)} have no leaders after 30 s")


def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Best effort: keeps the broker's disk bounded over a long run."""
    if not names:
        return
    admin = AdminClient(client(bootstrap))
    for future in admin.delete_topics(list(names), request_timeout=30).values():
        with contextlib.suppress(KafkaException):
            future.result(60)


# -- events ------------------------------------------------------------------------------------


def event_pool(size: int) -> list[bytes]:
    """Realistic Conductor Task events of about ``size`` bytes: even ones hold sensitive keys."""
    return [task_event(size, j % 2 == 0, seed=j) for j in range(POOL)]


def _produce(producer: Producer, topic: str, value: bytes, key: bytes, partition: int) -> None:
    while True:
        try:
            producer.produce(topic, value, key, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def fill(bootstrap: str, topic: str, pool: list[bytes], count: int) -> int:
    """Write ``count`` events evenly over the partitions; returns their value bytes."""
    producer = Producer(
        {
            **client(bootstrap),
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.kbytes": 512 * 1024,
        }
    )
    total = 0
    for i in range(count):
        value = pool[i % len(pool)]
        _produce(producer, topic, value, f"wf-{i:09d}".encode(), partition_of(i))
        total += len(value)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise TimeoutError(f"could not write {count} events to {topic} in 120 s")
    return total


def warm_up(bootstrap: str) -> None:
    """Create the broker's internal topics (__transaction_state, __consumer_offsets) before
    any case is timed: on a fresh broker the first transaction and the first group pay for
    them otherwise."""
    topic = unique("warm-up")
    create_topics(bootstrap, [topic], partitions=1)
    producer = Producer({**client(bootstrap), "transactional.id": topic})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, b"{}")
    producer.commit_transaction(60)
    consumer = Consumer({**client(bootstrap), "group.id": topic, "enable.auto.commit": False})
    deadline = time.monotonic() + 60
    while True:  # the offsets topic is created by this first commit: retry until it leads
        try:
            consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    consumer.close()
    delete_topics(bootstrap, [topic])


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({**client(bootstrap), "group.id": unique("ends")})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 30)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()


def load_producer(
    bootstrap: str, topic: str, size: int, rate: float, seconds: float, produced: object
) -> None:
    """Write events at ``rate`` per second for ``seconds`` (run in its own process, so pacing
    does not compete with the latency reader for the GIL). The count goes to ``produced``,
    a multiprocessing Value. Record timestamps are the producer's clock at produce()."""
    pool = event_pool(size)
    producer = Producer({**client(bootstrap), "enable.idempotence": True, "linger.ms": 5})
    start = time.monotonic()
    i = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while i < due:
            key = f"wf-{i:09d}".encode()
            _produce(producer, topic, pool[i % len(pool)], key, partition_of(i))
            i += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(60)
    produced.value = i  # type: ignore[attr-defined]


# -- observers ---------------------------------------------------------------------------------


class Watch(threading.Thread):
    """Times a case from outside the process under test, polling every 50 ms with at most two
    small admin requests (ListOffsets for all partitions at once, until ``first``; OffsetFetch),
    which add a few percent of one core to the broker's load (5 to 8 % measured here):

    - ``first``: when the public topic first holds a committed record (its last stable offset
      moves), i.e. when start-up is over and the first batch has committed;
    - ``done``: when the group's committed offsets reach the raw topic's end. Offsets commit in
      the same transaction as the copies (exactly-once) or after every copy is delivered
      (at-least-once), so at that moment read_committed readers see every copy.
    """

    def __init__(self, bootstrap: str, group: str, topics: Topics, ends: dict[int, int]):
        super().__init__(daemon=True)
        self.first: float | None = None
        self.done: float | None = None
        self._group = group
        self._ends = ends
        self._topics = topics
        self._halt = threading.Event()
        self._admin = AdminClient(client(bootstrap))

    def run(self) -> None:
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        public = {TopicPartition(self._topics.public, p): latest for p in range(PARTITIONS)}
        raw = [TopicPartition(self._topics.raw, p) for p in self._ends]
        while not self._halt.is_set() and self.done is None:
            now = time.monotonic()
            try:
                if self.first is None:
                    stable = self._admin.list_offsets(
                        public, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=5
                    )
                    if any(f.result().offset > 0 for f in stable.values()):
                        self.first = now
                request = [ConsumerGroupTopicPartitions(self._group, raw)]
                for future in self._admin.list_consumer_group_offsets(
                    request, require_stable=True, request_timeout=5
                ).values():
                    committed = future.result().topic_partitions or []
                    if committed and all(tp.offset >= self._ends[tp.partition] for tp in committed):
                        self.done = time.monotonic()
                        if self.first is None:
                            self.first = now
            except KafkaException:
                pass
            self._halt.wait(0.05)

    def wait_done(self, timeout: float, alive: Sequence[Process] = ()) -> bool:
        """Until ``done`` or ``timeout``; gives up early when every process in ``alive`` has
        exited (a crash) and the offsets still have not arrived a few seconds later."""
        deadline = time.monotonic() + timeout
        exited: float | None = None
        while time.monotonic() < deadline and self.done is None:
            if alive and all(p.popen.poll() is not None for p in alive):
                exited = exited or time.monotonic()
                if time.monotonic() - exited > 5:
                    break
            time.sleep(0.02)
        return self.done is not None

    def stop(self) -> None:
        self._halt.set()
        self.join(15)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a running process so far, from /proc/<pid>/stat (0 without)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Memory:
    """VmRSS of one process, sampled every 0.2 s from /proc/<pid>/status."""

    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, kB)

    def __post_init__(self) -> None:
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        path = Path(f"/proc/{self.pid}/status")
        while not self._halt.is_set():
            try:
                text = path.read_text()
            except OSError:
                return
            kb = next((int(ln.split()[1]) for ln in text.splitlines() if ln[:6] == "VmRSS:"), 0)
            if not kb:  # a zombie: exited, not yet reaped
                return
            self.samples.append((time.monotonic(), kb))
            self._halt.wait(0.2)

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(5)

    def summary(self) -> dict[str, float | None]:
        """Peak; RSS at 25/50/75/100 % of the run; growth over the second half and its
        least-squares slope (MB per minute), which is ~0 when memory is flat."""
        if not self.samples:
            return {"peak_mb": None}
        t0, t1 = self.samples[0][0], self.samples[-1][0]

        def at(fraction: float) -> float:
            t = t0 + (t1 - t0) * fraction
            kb = next((kb for ts, kb in self.samples if ts >= t), self.samples[-1][1])
            return round(kb / 1024, 1)

        half = [(ts, kb / 1024) for ts, kb in self.samples if ts >= t0 + (t1 - t0) / 2]
        slope = 0.0
        if len(half) >= 3:
            mt = sum(ts for ts, _ in half) / len(half)
            mm = sum(mb for _, mb in half) / len(half)
            var = sum((ts - mt) ** 2 for ts, _ in half)
            if var > 0:
                slope = sum((ts - mt) * (mb - mm) for ts, mb in half) / var * 60
        return {
            "peak_mb": round(max(kb for _, kb in self.samples) / 1024, 1),
            "p25_mb": at(0.25),
            "p50_mb": at(0.5),
            "p75_mb": at(0.75),
            "end_mb": at(1.0),
            "second_half_growth_mb": round(at(1.0) - at(0.5), 1),
            "second_half_slope_mb_per_min": round(slope, 1),
            "samples": len(self.samples),
        }


@dataclass
class Process:
    """A process under test: its start time, log, memory samples and exit time."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float
    memory: Memory
    exited: float | None = None


# -- reading results ---------------------------------------------------------------------------


def count_committed(
    bootstrap: str,
    topics: Sequence[str],
    timeout: float = 300.0,
    leaks: Mapping[str, re.Pattern[bytes]] | None = None,
) -> tuple[dict[str, int], int]:
    """How many records a read_committed reader sees in each topic (read to the high
    watermarks present now), and how many values match their topic's pattern in ``leaks``."""
    consumer = Consumer(
        {
            **client(bootstrap),
            "group.id": unique("count"),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            for p in range(PARTITIONS):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), 30)
                if high > low:
                    ends[(topic, p)] = high
        counts = dict.fromkeys(topics, 0)
        marked = 0
        patterns = leaks or {}
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(2000, 0.5):
                if message.error() is None:
                    topic = str(message.topic())
                    counts[topic] += 1
                    value, pattern = message.value(), patterns.get(topic)
                    if pattern is not None and value is not None and pattern.search(value):
                        marked += 1
            for tp in consumer.position([TopicPartition(t, p) for t, p in ends]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
        if ends:
            raise TimeoutError(f"could not read {sorted(ends)} to the end in {timeout:g} s")
        return counts, marked
    finally:
        consumer.close()


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(int(-(-q * len(ordered) // 100)), 1)  # ceil(q/100 * n), at least 1
    return ordered[min(rank, len(ordered)) - 1]
