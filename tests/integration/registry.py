"""A real Confluent-compatible Schema Registry for the integration tests: Apicurio Registry, from
Maven Central like the broker (no Docker), resolved once into a cache and started on free ports
for the session. Its Confluent API is under ``/apis/ccompat/v7``; storage is in memory.

Apicurio Registry 3.x needs Java 21+. The project itself needs Java 17, so when no Java 21+ is
found (``$JAVA_HOME``, ``java`` on PATH, the usual JDK folders) the tests that use the registry
are skipped with that reason; the in-memory registry of the unit tests covers the same paths.
"""

from __future__ import annotations

import fcntl
import glob
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

APICURIO_VERSION = "3.3.3"
ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
MIN_JAVA = 21
CCOMPAT = "/apis/ccompat/v7"
_JDK_GLOBS = (
    "/usr/lib/jvm/*/bin/java",
    "/opt/java/*/bin/java",
    "/opt/*/bin/java",
    "/Library/Java/JavaVirtualMachines/*/Contents/Home/bin/java",
)


def cache_dir() -> Path:
    """``$STREAMER_REGISTRY_CACHE``, else a per-version folder beside the Kafka jars' cache."""
    if env := os.environ.get("STREAMER_REGISTRY_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamer" / f"apicurio-{APICURIO_VERSION}"


def _java_major(java: str) -> int:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    except OSError:
        return 0
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if m is None:
        return 0
    return int(m[1]) if m[1] != "1" else int(m[2] or 0)


def find_java() -> str | None:
    """The newest Java 21+ found, or ``None``."""
    candidates = []
    if home := os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(home) / "bin" / "java"))
    if on_path := shutil.which("java"):
        candidates.append(on_path)
    for pattern in _JDK_GLOBS:
        candidates += sorted(glob.glob(pattern))
    found = [(major, java) for java in dict.fromkeys(candidates) if (major := _java_major(java))]
    usable = sorted(f for f in found if f[0] >= MIN_JAVA)
    return usable[-1][1] if usable else None


def ensure_app(say: bool = True) -> Path:
    """The unpacked Quarkus application (``quarkus-run.jar``), resolved with Maven once. A file
    lock serialises concurrent sessions; the folder is renamed into place when complete."""
    cache = cache_dir()
    app = cache / "app"
    marker = app / ".resolved"
    if marker.is_file():
        return app
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file():
            return app
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven (`mvn`) is needed to fetch Apicurio Registry")
        if say:
            print(f"resolving Apicurio Registry {APICURIO_VERSION} with Maven into {app}")
        tmp = Path(tempfile.mkdtemp(prefix="app-", dir=cache))
        log = cache / "mvn.log"
        with log.open("wb") as out:
            rc = subprocess.run(
                [mvn, "-B", "-q", "dependency:copy", f"-Dartifact={ARTIFACT}",
                 f"-DoutputDirectory={tmp}"],
                cwd=cache, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                check=False,
            ).returncode  # fmt: skip
        archives = list(tmp.glob("*.tar.gz"))
        if rc != 0 or not archives:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"Maven could not resolve {ARTIFACT} (exit {rc}); see {log}")
        with tarfile.open(archives[0]) as tar:
            tar.extractall(tmp, filter="data")
        archives[0].unlink()
        if not (tmp / "quarkus-run.jar").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"{ARTIFACT} holds no quarkus-run.jar")
        (tmp / ".resolved").write_text(ARTIFACT)
        shutil.rmtree(app, ignore_errors=True)
        tmp.rename(app)
    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Registry:
    """A running registry: ``url`` is what ``schema_registry_url`` takes."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    started_in: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CCOMPAT}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start(java: str, app: Path, workdir: Path, timeout: float = 180) -> Registry:
    """Start the registry on free loopback ports and wait until its Confluent API answers."""
    port, management = _free_port(), _free_port()
    log = workdir / "apicurio.log"
    began = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [java, "-Xmx512m",
             f"-Dquarkus.http.port={port}", "-Dquarkus.http.host=127.0.0.1",
             f"-Dquarkus.management.port={management}", "-Dquarkus.management.host=127.0.0.1",
             "-jar", str(app / "quarkus-run.jar")],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    registry = Registry(process, port, log, 0.0)
    deadline = began + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Apicurio Registry exited ({process.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"{registry.url}/subjects", timeout=2) as answer:  # noqa: S310 - loopback
                if answer.status == 200:
                    registry.started_in = time.monotonic() - began
                    return registry
        except OSError:
            pass
        time.sleep(0.25)
    registry.stop()
    raise RuntimeError(f"Apicurio Registry did not answer within {timeout:.0f} s; see {log}")


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real Confluent-compatible Schema Registry for the session."""
    java = find_java()
    if java is None:
        pytest.skip(f"Apicurio Registry needs Java {MIN_JAVA}+, and none was found")
    app = ensure_app()
    registry = start(java, app, tmp_path_factory.mktemp("apicurio"))
    print(f"Apicurio Registry {APICURIO_VERSION} answered after {registry.started_in:.1f} s")
    try:
        yield registry
    finally:
        registry.stop()
