"""A real Prometheus for the tests, from Debian's own package, fetched by the tests themselves.

Nothing may be assumed installed by hand, and nothing is installed system-wide: the first use runs
``apt-get download prometheus`` (after ``apt-get update`` if the package list lacks it) and
extracts only ``prometheus`` and ``promtool`` with ``dpkg-deb -x`` into
``${XDG_CACHE_HOME:-~/.cache}/streamer/prometheus/bin``, outside the repository, so no service
is started. ``python -m tests.prometheus_server`` fetches ahead of time and prints the versions.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

TOOLS = ("prometheus", "promtool")


def series(name: str, **labels: str) -> str:
    """One series spelt as in the exposition, labels sorted: ``name{a="1",b="2"}``."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if labels else name


def samples(exposition: str, suffix: str = "") -> dict[str, float]:
    """Every sample of a ``/metrics`` text whose name ends with ``suffix``, by :func:`series`."""
    return {
        series(s.name, **s.labels): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name.endswith(suffix)
    }


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamer" / "prometheus"


def ensure_prometheus() -> Path:
    """The folder holding working ``prometheus`` and ``promtool``, downloaded on first use."""
    bin_dir = cache_dir() / "bin"
    if not all((bin_dir / tool).is_file() for tool in TOOLS):
        _download(bin_dir)
    for tool in TOOLS:
        subprocess.run([bin_dir / tool, "--version"], check=True, capture_output=True, timeout=60)
    return bin_dir


def _apt_download(into: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "download", "prometheus"],
        cwd=into,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _download(bin_dir: Path) -> None:
    bin_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bin_dir.parent) as name:
        tmp = Path(name)
        done = _apt_download(tmp)
        if done.returncode != 0:  # e.g. a fresh machine whose package lists were never fetched
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, check=True)
            done = _apt_download(tmp)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get download prometheus failed:\n{done.stderr}")
        (deb,) = tmp.glob("prometheus_*.deb")
        subprocess.run(["dpkg-deb", "-x", deb, tmp / "root"], check=True, timeout=300)
        staged = tmp / "bin"
        staged.mkdir()
        for tool in TOOLS:
            (tmp / "root" / "usr" / "bin" / tool).rename(staged / tool)
        shutil.rmtree(bin_dir, ignore_errors=True)
        staged.rename(bin_dir)  # all or nothing: a half-extracted cache is never seen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    """Status and body, for error statuses too (the Prometheus API explains its 400s)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def api(self, path: str, **params: str) -> Any:
        status, body = get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        try:
            return json.loads(body)
        except ValueError:
            raise AssertionError(f"{path}: HTTP {status}: {body[:500]}") from None

    def query(self, expr: str) -> Any:
        return self.api("query", query=expr)

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, or None while it has no result."""
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer)
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_prometheus(bin_dir: Path, config: Path, workdir: Path, timeout: float = 60) -> Prometheus:
    """Prometheus on a free loopback port with its storage under ``workdir``; waits for ready."""
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                bin_dir / "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if get(f"{server.url}/-/ready", timeout=2)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"prometheus not ready within {timeout} s:\n{log.read_text()}")


if __name__ == "__main__":
    for tool in TOOLS:
        path = ensure_prometheus() / tool
        print(subprocess.run([path, "--version"], capture_output=True, text=True).stdout, end="")
