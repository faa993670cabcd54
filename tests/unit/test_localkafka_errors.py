"""Without a usable java or mvn, the error must say so and name the two ways around it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streamer.localkafka import LocalKafkaError, ensure_jars, start


def _fake(bin_dir: Path, name: str, script: str) -> None:
    exe = bin_dir / name
    exe.write_text(f"#!/bin/sh\n{script}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the fakes a test puts there, and an empty jar cache."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("STREAMER_KAFKA_CACHE", str(tmp_path / "cache"))
    return path


def _assert_alternatives(message: str) -> None:
    assert "\n" not in message
    assert "STREAMER_BOOTSTRAP_SERVERS" in message
    assert "docker compose up" in message


def test_missing_java_names_alternatives(bin_dir: Path) -> None:
    with pytest.raises(LocalKafkaError) as exc:
        start()
    assert "`java` was not found" in str(exc.value)
    _assert_alternatives(str(exc.value))


def test_old_java_names_alternatives(bin_dir: Path) -> None:
    _fake(bin_dir, "java", "echo 'openjdk version \"11.0.2\" 2019-01-15' >&2")
    with pytest.raises(LocalKafkaError) as exc:
        ensure_jars()
    assert "is Java 11" in str(exc.value)
    _assert_alternatives(str(exc.value))


def test_missing_maven_names_alternatives(bin_dir: Path) -> None:
    _fake(bin_dir, "java", "echo 'openjdk version \"17.0.15\" 2025-04-15' >&2")
    with pytest.raises(LocalKafkaError) as exc:
        ensure_jars(progress=lambda _msg: None)
    assert "`mvn` was not found" in str(exc.value)
    _assert_alternatives(str(exc.value))


def test_java8_and_old_maven_name_alternatives(bin_dir: Path) -> None:
    _fake(bin_dir, "java", "echo 'java version \"1.8.0_292\"' >&2")
    with pytest.raises(LocalKafkaError, match="is Java 8"):
        ensure_jars()
    _fake(bin_dir, "java", "echo 'openjdk version \"21\" 2023-09-19' >&2")
    _fake(bin_dir, "mvn", "echo 'Apache Maven 3.3.9'")
    with pytest.raises(LocalKafkaError) as exc:
        ensure_jars()
    assert "Maven 3.6.3+" in str(exc.value)
    _assert_alternatives(str(exc.value))
