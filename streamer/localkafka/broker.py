"""Run a real single-node Apache Kafka broker (KRaft) from Maven Central jars.

Why not Docker or a tarball: the only things every machine of this project can fetch are
package registries, and Maven Central carries the broker. `mvn` resolves the jars once into a
cache; the broker then runs as a plain `java` process bound to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

KAFKA_VERSION = "4.4.0"
MIN_JAVA = 17
MIN_MAVEN = (3, 6, 3)  # oldest Maven that maven-dependency-plugin 3.x runs on

_HERE = Path(__file__).resolve().parent
_POM = _HERE / "pom.xml"
_LOG4J = _HERE / "log4j2.properties"
_ALTERNATIVES = (
    "or point STREAMER_BOOTSTRAP_SERVERS at an existing Kafka cluster, "
    "or use the Docker Compose stack (`docker compose up`)"
)
# Popen objects of brokers started here: keeping them referenced lets stop()/is_running()
# reap the child (no zombie that still answers kill(pid, 0)) and avoids a ResourceWarning.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LocalKafkaError(Exception):
    """Why the local broker could not be provided, as one line meant for the user."""


@dataclass(frozen=True)
class Broker:
    """A broker started by `start()`; plain data so the CLI can keep it in a JSON file."""

    port: int
    controller_port: int
    data_dir: Path
    log_file: Path
    pid: int

    @property
    def bootstrap(self) -> str:
        """The `bootstrap.servers` value for clients."""
        return f"127.0.0.1:{self.port}"


def cache_dir() -> Path:
    """Where resolved jars live: `$STREAMER_KAFKA_CACHE`, else a per-version XDG cache folder."""
    if env := os.environ.get("STREAMER_KAFKA_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamer" / f"kafka-{KAFKA_VERSION}"


def _tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LocalKafkaError(
            f"the local Kafka broker needs {what} but `{name}` was not found on PATH; "
            f"install it, {_ALTERNATIVES}"
        )
    return path


def _java() -> str:
    """The `java` to use ($JAVA_HOME first, like Maven), checked to be 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else ""
    if not (java and os.access(java, os.X_OK)):
        java = _tool("java", f"Java {MIN_JAVA}+")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = 0 if m is None else int(m[1]) if m[1] != "1" else int(m[2] or 0)
    if major < MIN_JAVA:
        found = f"Java {major}" if major else "an unrecognised Java"
        raise LocalKafkaError(
            f"the local Kafka broker needs Java {MIN_JAVA}+ but {java} is {found}; "
            f"install a newer JDK, {_ALTERNATIVES}"
        )
    return java


def _mvn() -> str:
    mvn = _tool("mvn", "Maven (to fetch the broker jars once)")
    out = subprocess.run([mvn, "-B", "-version"], capture_output=True, text=True, check=False)
    m = re.search(r"Apache Maven (\d+)\.(\d+)(?:\.(\d+))?", out.stdout)
    found = (int(m[1]), int(m[2]), int(m[3] or 0)) if m else (0, 0, 0)
    if found < MIN_MAVEN:
        need = ".".join(map(str, MIN_MAVEN))
        raise LocalKafkaError(
            f"the local Kafka broker needs Maven {need}+ to fetch its jars but {mvn} is "
            f"{'.'.join(map(str, found)) if m else 'unrecognised'}; "
            f"install a newer Maven, {_ALTERNATIVES}"
        )
    return mvn


def _stamp() -> str:
    """Identifies a resolution: a changed pom (or Kafka version) makes the cache stale."""
    return hashlib.sha256(_POM.read_bytes() + KAFKA_VERSION.encode()).hexdigest()


@contextmanager
def _locked(path: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """Exclusive flock on `path`; calls `on_wait` once if another process holds it."""
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_jars(progress: Callable[[str], None] | None = None) -> Path:
    """Resolve the broker's runtime classpath into `cache_dir()/lib` once; return that folder.

    The first run downloads ~45 MB through Maven, so it reports what it is doing (`progress`,
    default stderr). A file lock makes concurrent callers wait for one resolution, and the jars
    are resolved into a temporary folder renamed into place, so `lib` is never half-filled.
    """
    say = progress or _say
    _java()  # fail early and clearly: jars are useless without a JVM
    cache = cache_dir()
    lib, marker = cache / "lib", cache / "lib" / ".resolved"
    stamp = _stamp()
    if marker.is_file() and marker.read_text() == stamp:
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock", lambda: say("waiting for another process resolving Kafka jars")):
        if marker.is_file() and marker.read_text() == stamp:
            return lib
        mvn = _mvn()
        for stale in cache.glob("lib-*"):  # left by a resolution that was killed
            shutil.rmtree(stale, ignore_errors=True)
        say(f"resolving Apache Kafka {KAFKA_VERSION} jars with Maven into {lib} (first run only)")
        tmp = Path(tempfile.mkdtemp(prefix="lib-", dir=cache))
        log = cache / "mvn.log"
        with log.open("wb") as out:
            rc = subprocess.run(
                [mvn, "-B", "-q", "-f", str(_POM), "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
                 f"-Dkafka.version={KAFKA_VERSION}"],
                cwd=cache, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                check=False,
            ).returncode  # fmt: skip
        if rc != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            raise LocalKafkaError(f"Maven could not resolve the Kafka jars (exit {rc}); see {log}")
        (tmp / ".resolved").write_text(stamp)
        shutil.rmtree(lib, ignore_errors=True)
        tmp.rename(lib)
    return lib


def _free_port(exclude: int = 0) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port != exclude:
            return port


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _properties(port: int, controller_port: int, logs: Path) -> str:
    """server.properties for one combined broker+controller node with a static quorum.

    Every replication factor / min ISR is 1: the defaults (3, and 2 for the transaction log)
    make transactions and share groups fail on a single node. Message size limits are left at
    the defaults on purpose: tests set `max.message.bytes` per topic.
    """
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(logs),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _cluster_id() -> str:
    """What `StorageTool random-uuid` prints (URL-safe base64, never starting with '-'),
    computed here to save a JVM start."""
    while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))[0] == "-":
        pass
    return cid


def _last_error(log: Path) -> str:
    """The last ERROR line of the log, shortened, to hint at the cause in the one-line error."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln for ln in lines if " ERROR " in ln or "Exception" in ln]
    return f" ({errors[-1].split('] ', 1)[-1][:200]})" if errors else ""


def start(port: int = 0, data_dir: Path | None = None, timeout: float = 90.0) -> Broker:
    """Format storage and start a broker in its own session; return once it serves requests.

    `port=0` picks a free port. Without `data_dir` a fresh temporary folder is used; an
    existing, already formatted `data_dir` keeps its data. The broker outlives this process
    (start_new_session) so `make kafka-up` can return; `stop()` ends it.
    """
    java, lib = _java(), ensure_jars()
    if port and not _port_free(port):
        raise LocalKafkaError(
            f"port {port} on 127.0.0.1 is already in use; free it or choose another (KAFKA_PORT)"
        )
    port = port or _free_port()
    controller_port = _free_port(exclude=port)
    data_dir = Path(tempfile.mkdtemp(prefix="streamer-kafka-")) if data_dir is None else data_dir
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file, config = data_dir / "broker.log", data_dir / "server.properties"
    config.write_text(_properties(port, controller_port, data_dir / "logs"))
    jvm = [
        java,
        "-Xmx512m",
        f"-Dlog4j2.configurationFile={_LOG4J}",
        f"-Dstreamer.kafka.log={log_file}",
        "-cp",
        str(lib / "*"),
    ]

    with log_file.open("ab") as out:
        # Format once per data dir: a formatted dir keeps its cluster id (and data) on restart.
        if not (data_dir / "logs" / "meta.properties").exists():
            rc = subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=False,
            ).returncode  # fmt: skip
            if rc != 0:
                raise LocalKafkaError(
                    f"formatting Kafka storage failed{_last_error(log_file)}; see {log_file}"
                )
        proc = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    broker = Broker(port, controller_port, data_dir, log_file, proc.pid)
    try:
        _wait_ready(broker, proc, timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        del _CHILDREN[proc.pid]
        raise
    return broker


def _wait_ready(broker: Broker, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll until the broker answers a Metadata request naming itself, or fail."""
    deadline = time.monotonic() + timeout
    admin = None
    while time.monotonic() < deadline:
        if (rc := proc.poll()) is not None:
            raise LocalKafkaError(
                f"the Kafka broker exited during startup (exit {rc})"
                f"{_last_error(broker.log_file)}; see {broker.log_file}"
            )
        # A plain TCP connect first keeps librdkafka from logging refused connections.
        try:
            socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()
        except OSError:
            time.sleep(0.2)
            continue
        admin = admin or AdminClient({"bootstrap.servers": broker.bootstrap})
        try:
            if admin.list_topics(timeout=2).brokers:
                return
        except KafkaException:
            pass
        time.sleep(0.2)
    raise LocalKafkaError(
        f"the Kafka broker did not accept requests within {timeout:g}s; see {broker.log_file}"
    )


def is_running(pid: int, data_dir: Path | None = None) -> bool:
    """Whether `pid` is alive: not gone and not a zombie (our own exited child is reaped).

    With `data_dir`, also require (where /proc exists) that it is the broker of that folder,
    so a stale state file whose pid was reused after a reboot is never mistaken for it.
    """
    if pid <= 0:
        return False
    if (proc := _CHILDREN.get(pid)) is not None and proc.poll() is not None:
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return data_dir is None
    proc_dir = Path(f"/proc/{pid}")
    if not proc_dir.is_dir():  # no procfs (macOS): kill(pid, 0) is all we can know
        return True
    try:
        # A zombie (Z) still answers kill(pid, 0) until its parent reaps it.
        if (proc_dir / "stat").read_text().rpartition(")")[2].split()[0] in "ZX":
            return False
        cmdline = (proc_dir / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return data_dir is None or str(data_dir / "server.properties").encode() in cmdline


def stop(broker: Broker, timeout: float = 30.0) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL after `timeout`; a no-op if already gone."""
    if not is_running(broker.pid, broker.data_dir):  # gone, or the pid is someone else's now
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(broker.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_running(broker.pid):
                return
            time.sleep(0.1)
    raise LocalKafkaError(f"could not stop the Kafka broker (pid {broker.pid})")
