"""A real broker for the whole session (started through the project's own launcher), and a
per-test stack of uniquely named topics driven through the real `streamer` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource

from streamer.kafka import read_committed
from streamer.localkafka import Broker, start, stop
from streamer.record import Record
from tests.integration.registry import schema_registry as schema_registry  # session fixture

STREAMER = [sys.executable, "-m", "streamer"]


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if os.environ.get("STREAMER_TEST_BOOTSTRAP"):
        pytest.skip("external clusters are not used by the integration tests")
    broker = start(data_dir=tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        stop(broker)


@dataclass
class Stack:
    """Topics of one test: raw -> public + archive per route, and a quarantine."""

    broker: Broker
    workdir: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    partitions: int = 3
    extra_env: dict[str, str] = field(default_factory=dict)

    def topic(self, route: str, kind: str) -> str:
        return f"{self.prefix}.{route}.{kind}"

    @property
    def quarantine(self) -> str:
        return f"{self.prefix}.quarantine"

    def env(self, **overrides: str) -> dict[str, str]:
        routes = [
            {
                "name": r,
                "raw": self.topic(r, "raw"),
                "public": self.topic(r, "public"),
                "archive": self.topic(r, "archive"),
            }
            for r in ("workflow", "task")
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
        env.update(
            STREAMER_BOOTSTRAP_SERVERS=self.broker.bootstrap,
            STREAMER_GROUP_ID=f"{self.prefix}-group",
            STREAMER_ROUTES=json.dumps(routes),
            STREAMER_QUARANTINE_TOPIC=self.quarantine,
            STREAMER_TOPIC_PARTITIONS=str(self.partitions),
            STREAMER_METRICS_PORT="0",
            STREAMER_TRANSACTION_TIMEOUT_MS="10000",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def streamer(
        self, *args: str, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*STREAMER, *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def create_topics(self) -> None:
        done = self.streamer("topics", "create")
        assert done.returncode == 0, done.stderr

    def start(self, *args: str, name: str = "streamer", **env: str) -> Running:
        log = self.workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        handle = log.open("w")
        proc = subprocess.Popen(
            [*STREAMER, "run", *args],
            env=self.env(**env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        handle.close()
        return Running(proc, log)

    def produce(
        self,
        route: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        config: dict[str, object] | None = None,
    ) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.broker.bootstrap,
                "linger.ms": 20,
                "enable.idempotence": True,
                **(config or {}),
            }
        )
        for i, value in enumerate(values):
            while True:
                try:
                    producer.produce(
                        self.topic(route, "raw"),
                        value,
                        keys[i] if keys else f"k{i}".encode(),
                        headers=headers,
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
        assert producer.flush(60) == 0

    def set_config(self, topic: str, **config: str) -> None:
        """Change topic configs (names with _ for .), as an operator would."""
        entries = [
            ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
            for k, v in config.items()
        ]
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap})
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(30)

    def read(self, *topics: str) -> dict[str, list[Record]]:
        return read_committed({"bootstrap.servers": self.broker.bootstrap}, list(topics))

    def outputs(self, route: str) -> dict[str, list[Record]]:
        names = {k: self.topic(route, k) for k in ("public", "archive")}
        found = self.read(*names.values(), self.quarantine)
        return {k: found[t] for k, t in names.items()} | {"quarantine": found[self.quarantine]}


@dataclass
class Running:
    proc: subprocess.Popen[str]
    log: Path

    def text(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float = 180) -> int:
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"streamer exited ({self.proc.returncode}):\n{self.text()}")
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.text()}")


@pytest.fixture
def stack(kafka: Broker, tmp_path: Path) -> Stack:
    s = Stack(kafka, tmp_path)
    s.create_topics()
    return s
