"""The local broker launcher against a real broker: one node must support transactions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # the admin module re-exports it untyped

from streamer.localkafka import Broker, is_running, start, stop

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start(data_dir=tmp_path_factory.mktemp("kafka"))
    try:
        yield b
    finally:
        stop(b)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _read_committed(bootstrap: str, topic: str, want: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    seen: list[bytes] = []
    try:
        consumer.subscribe([topic])
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is None:
                if len(seen) >= want:
                    break
                continue
            err = msg.error()
            assert err is None or err.code() == KafkaError._PARTITION_EOF, err
            if err is None:
                seen.append(msg.value() or b"")
    finally:
        consumer.close()
    return seen


def test_transactions_on_single_node(broker: Broker) -> None:
    topic = f"lk-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=30).values():
        fut.result(timeout=30)

    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"committed")
    producer.commit_transaction(30)

    assert _read_committed(broker.bootstrap, topic, want=1) == [b"committed"]


def test_stop_ends_the_process(tmp_path: Path) -> None:
    b = start(data_dir=tmp_path)
    assert is_running(b.pid)
    stop(b)
    assert not is_running(b.pid)
    stop(b)  # idempotent


def _cli(cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.localkafka", cmd],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_up_twice_then_down(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "STREAMER_RUN_DIR": str(tmp_path), "KAFKA_PORT": str(port)}
    try:
        first = _cli("up", env)
        assert first.returncode == 0, first.stderr
        assert "broker.log" in first.stdout
        second = _cli("up", env)
        assert second.returncode == 0, second.stderr
        assert f"already running at 127.0.0.1:{port} (pid " in second.stdout
        assert _cli("status", env).returncode == 0
    finally:
        down = _cli("down", env)
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "kafka.json").exists()
    assert _cli("status", env).returncode == 1
