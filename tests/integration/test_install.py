"""The image's build, without Docker: the Dockerfile's builder stage, run here as it is written.

The build context is assembled through .dockerignore, the builder's COPY lines place it, and its
RUN line runs with VENV and WHEELS in a temporary folder and the base interpreter as `python`.
The result must be a working `streamer` with the runtime dependencies only, whose health check
(the Dockerfile's own HEALTHCHECK command) answers while `streamer run` is up.
Slow: pip downloads the build backend and the runtime dependencies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.test_deployment import (
    PYPROJECT,
    ROOT,
    docker_context,
    healthcheck_command,
    parse_dockerfile,
)

pytestmark = pytest.mark.integration

DEV_ONLY = {"pytest", "hypothesis", "ruff", "mypy"}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match[0]).lower()


def _source_dir(package: str, mapping: dict[str, str]) -> str:
    parent = max(
        (k for k in mapping if package == k or package.startswith(k + ".")), key=len, default=""
    )
    rest = package[len(parent) :].lstrip(".").replace(".", "/")
    return str(Path(mapping[parent], rest)) if parent else rest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builder stage run here: returns the venv that the final stage copies."""
    tmp = tmp_path_factory.mktemp("image")
    builder, final = parse_dockerfile()
    context = docker_context()
    workdir = tmp / "src"
    for _flags, sources, dest in builder.copies():
        assert not dest.startswith("/"), "COPY destinations relative to WORKDIR"
        for source in sources:
            name = source.rstrip("/")
            if name == ".":
                files = {rel: rel for rel in context}
            else:
                # A file lands in dest; a folder's contents land in dest.
                files = {rel: rel[len(name) + 1 :] for rel in context if rel.startswith(name + "/")}
                files |= {name: Path(name).name} if name in context else {}
            assert files, f"COPY {source}: not in the build context"
            for rel, inside in files.items():
                target = workdir / dest / inside
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, target)
    venv, wheels = tmp / "venv", tmp / "wheels"
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (bin_dir / "python").symlink_to(Path(sys.base_prefix) / "bin" / f"python{version}")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "PIP_", "STREAMER_")) and k != "VIRTUAL_ENV"
    }
    env.update(builder.env())
    env.update(VENV=str(venv), WHEELS=str(wheels), PATH=f"{bin_dir}{os.pathsep}{env['PATH']}")
    for run in builder.all("RUN"):
        done = subprocess.run(
            ["sh", "-c", run.args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, f"RUN {run.args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    # The final stage copies the builder's venv to the same path and puts it first on PATH.
    assert final.copies() == [(["--from=builder"], [builder.env()["VENV"]], builder.env()["VENV"])]
    return venv


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMER_", "PYTHON"))}
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


@pytest.mark.timeout(1800)
def test_the_entrypoint_and_its_commands_work(image: Path) -> None:
    (entrypoint,) = parse_dockerfile()[-1].one("ENTRYPOINT").exec_form()
    assert (image / "bin" / entrypoint).is_file()
    for command in ([], ["run"], ["topics", "create"], ["demo"], ["mask"]):
        shown = _run(image, entrypoint, *command, "--help")
        assert shown.returncode == 0, shown.stderr
    assert "--stop-when-caught-up" in _run(image, entrypoint, "run", "--help").stdout
    # Every package and its package data made it into the wheel.
    site = next((image / "lib").glob("python3.*/site-packages"))
    tool = PYPROJECT["tool"]["setuptools"]
    for package, patterns in tool.get("package-data", {}).items():
        installed = site / package.replace(".", "/")
        assert (installed / "__init__.py").is_file(), package
        source = ROOT / _source_dir(package, tool.get("package-dir", {}))
        for pattern in patterns:
            want = sorted(p.relative_to(source) for p in source.glob(pattern))
            assert sorted(p.relative_to(installed) for p in installed.glob(pattern)) == want
    # The demo's samples are package data: they must be in the wheel.
    count = _run(image, "python", "-c", "from streamer.demo import samples; print(len(samples()))")
    assert count.returncode == 0, count.stderr
    assert int(count.stdout) > 0


@pytest.mark.timeout(1800)
def test_only_runtime_dependencies_are_installed(image: Path) -> None:
    listed = _run(
        image,
        "python",
        "-c",
        "import importlib.metadata as m, json; "
        "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))",
    )
    assert listed.returncode == 0, listed.stderr
    installed = {_name(n) for n in json.loads(listed.stdout)}
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    dev = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert runtime <= installed, runtime - installed
    assert "streamer" in installed
    assert not (DEV_ONLY | dev) & installed, (DEV_ONLY | dev) & installed
    assert not {"pip", "setuptools", "wheel"} & installed, "the runtime venv has no build tools"


@pytest.mark.timeout(1800)
def test_the_healthcheck_passes_while_streamer_run_is_up(image: Path, tmp_path: Path) -> None:
    """`streamer run` serves /healthz before it reaches Kafka: the container is live at once.

    No broker listens on the bootstrap port, so the instance is live but not ready.
    """
    final = parse_dockerfile()[-1]
    metrics_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMER_", "PYTHON"))}
    env.update(final.env())
    env.update(
        PATH=f"{image / 'bin'}{os.pathsep}{os.environ['PATH']}",
        STREAMER_BOOTSTRAP_SERVERS=f"127.0.0.1:{_free_port()}",
        STREAMER_METRICS_PORT=str(metrics_port),
    )
    command = healthcheck_command(final)
    log = tmp_path / "streamer.log"
    with log.open("wb") as out:
        service = subprocess.Popen(
            [*final.one("ENTRYPOINT").exec_form(), *final.one("CMD").exec_form()],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                check = subprocess.run(
                    command, env=env, capture_output=True, timeout=30, check=False
                )
                if check.returncode == 0 or time.monotonic() > deadline:
                    break
                assert service.poll() is None, log.read_text(errors="replace")
                time.sleep(0.5)
            assert check.returncode == 0, check.stderr.decode(errors="replace")
            ready = subprocess.run(
                [
                    "python",
                    "-c",
                    "import urllib.error, urllib.request\n"
                    "try:\n"
                    f"    urllib.request.urlopen('http://127.0.0.1:{metrics_port}/readyz')\n"
                    "    print(200)\n"
                    "except urllib.error.HTTPError as exc:\n"
                    "    print(exc.code)\n",
                ],
                env=env,
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert ready.stdout.split() == [b"503"], "live but not ready without a broker"
        finally:
            service.kill()
            service.wait(timeout=30)
