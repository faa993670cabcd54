"""The Docker deployment agrees with the code: Dockerfile, .dockerignore, docker-compose.yml and
docs/docker.md.

docker-compose.yml is checked by a real Compose implementation: ``docker compose config`` of
Docker Compose (COMPOSE_VERSION), built once from its Go module into ~/.cache/streamer. Its
``config`` command needs no Docker engine. Without Go or the module proxy that test is skipped,
saying why; every other check reads the files themselves and runs without Docker.

tests/integration/test_install.py runs the Dockerfile's build steps in a fresh virtual
environment; it uses the parsers below.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streamer import __version__
from streamer.cli import _parser
from streamer.metrics import Health, Metrics, MetricsServer
from streamer.runner import default_transactional_id
from streamer.settings import DEFAULT_ROUTES, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCS = ROOT / "docs" / "docker.md"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

#: Docker Compose, built from source by the Go toolchain (the module has no binary to download).
COMPOSE_MODULE = "github.com/docker/compose/v2"
COMPOSE_VERSION = "v2.40.3"
STREAMER_IMAGE = "streamer:local"
METRICS_PORT = int(Settings.model_fields["metrics_port"].default)
SERVICES = {"kafka", "topics", "streamer", "prometheus", "grafana", "demo"}
PINNED = re.compile(r"^[a-z0-9][a-z0-9._/-]*:v?\d+\.\d+\.\d+$")
STREAMER_NAME = re.compile(r"\bSTREAMER_[A-Z0-9_]*[A-Z0-9]\b")


# -- Dockerfile --------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} is not in exec form"
        return [str(v) for v in value]


@dataclass
class Stage:
    base: str
    name: str | None
    args: dict[str, str]
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"{len(found)} {keyword} instructions in stage {self.name}"
        return found[0]

    def env(self) -> dict[str, str]:
        return {k: v for i in self.all("ENV") for k, v in pairs(i.args).items()}

    def labels(self) -> dict[str, str]:
        values = {k: v for i in self.all("LABEL") for k, v in pairs(i.args).items()}
        return {k: substitute(v, self.args) for k, v in values.items()}

    def workdir(self) -> str:
        return self.all("WORKDIR")[-1].args if self.all("WORKDIR") else "/"

    def copies(self) -> list[tuple[list[str], list[str], str]]:
        """(flags, sources, destination) of each COPY."""
        out = []
        for i in self.all("COPY"):
            words = shlex.split(i.args)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            out.append((flags, paths[:-1], paths[-1]))
        return out


def pairs(args: str) -> dict[str, str]:
    """``K=V K2="V 2"`` (ENV, LABEL, ARG) as a dict."""
    out = {}
    for word in shlex.split(args):
        key, _, value = word.partition("=")
        out[key] = value
    return out


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


def instructions(text: str) -> Iterator[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comment lines dropped."""
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        keyword, _, rest = (buffer + line).partition(" ")
        buffer = ""
        yield Instruction(keyword.upper(), rest.strip())
    assert not buffer, "the Dockerfile ends in a continuation line"


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions(path.read_text(encoding="utf-8")):
        if ins.keyword == "FROM":
            words = substitute(ins.args, global_args).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, {}))
        elif not stages:
            assert ins.keyword == "ARG", f"{ins.keyword} before the first FROM"
            global_args.update(pairs(ins.args))
        else:
            stage = stages[-1]
            if ins.keyword == "ARG":
                for key, value in pairs(ins.args).items():
                    stage.args[key] = value or global_args.get(key, "")
            stage.instructions.append(ins)
    return stages


def healthcheck_command(stage: Stage) -> list[str]:
    _options, marker, command = stage.one("HEALTHCHECK").args.partition(" CMD ")
    assert marker, "HEALTHCHECK without CMD"
    return Instruction("CMD", command).exec_form()


# -- .dockerignore -----------------------------------------------------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    """One .dockerignore pattern (Go's filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        elif text[i] == "[":
            end = text.index("]", i)
            out, i = out + "[" + text[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out)


def ignore_rules(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, pattern) per line, in order: the last match decides."""
    rules = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        text = str(PurePosixPath(line.lstrip("!").lstrip("/")))
        rules.append((exception, _pattern(text)))
    return rules


def excluded(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent folders."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for exception, pattern in rules:
        if any(pattern.fullmatch(c) for c in candidates):
            verdict = not exception
    return verdict


def docker_context(root: Path = ROOT) -> set[str]:
    """The files `docker build .` sends: the work tree less what .dockerignore excludes."""
    rules = ignore_rules(root / ".dockerignore")
    exceptions = [p.pattern for exc, p in rules if exc]
    files: set[str] = set()
    for folder, dirs, names in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        # A folder is only skipped when it is excluded and no exception could reach inside it.
        dirs[:] = [
            d
            for d in dirs
            if not excluded(prefix + d, rules)
            or any(e.startswith(re.escape(prefix + d)) for e in exceptions)
        ]
        files |= {prefix + n for n in names if not excluded(prefix + n, rules)}
    return files


# -- docker-compose.yml ------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping"
    return {str(k): str(v) for k, v in env.items()}


def streamer_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if s.get("image") == STREAMER_IMAGE}


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        out[name] = host_port(address)
    return out


# -- the real Compose implementation -------------------------------------------------------------


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamer" / f"docker-compose-{COMPOSE_VERSION}"


def _works(exe: Path) -> bool:
    if not exe.is_file():
        return False
    probe = subprocess.run(
        [str(exe), "version", "--short"], capture_output=True, text=True, timeout=60, check=False
    )
    return probe.returncode == 0 and COMPOSE_VERSION.lstrip("v") in probe.stdout


def obtain_compose() -> Path:
    """Docker Compose COMPOSE_VERSION, built once from the Go module proxy (a few minutes)."""
    exe = _cache_dir() / "docker-compose"
    if _works(exe):
        return exe
    go = shutil.which("go")
    if go is None:
        pytest.skip("docker compose cannot be built here: no Go toolchain on PATH")
    env = {
        **os.environ,
        "GOWORK": "off",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-buildvcs=false",
        "CGO_ENABLED": "0",
    }
    module = f"{COMPOSE_MODULE}@{COMPOSE_VERSION}"
    fetched = subprocess.run(
        [go, "mod", "download", "-json", module],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )
    info = json.loads(fetched.stdout or "{}")
    if fetched.returncode != 0 or "Dir" not in info:
        reason = info.get("Error") or fetched.stderr.strip()[-500:]
        pytest.skip(f"docker compose cannot be obtained: go mod download {module}: {reason}")
    exe.parent.mkdir(parents=True, exist_ok=True)
    partial = exe.with_name(f"docker-compose.{os.getpid()}.partial")
    ldflags = f"-s -w -X {COMPOSE_MODULE}/internal.Version={COMPOSE_VERSION}"
    built = subprocess.run(
        [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), "./cmd"],
        cwd=info["Dir"],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
        env=env,
    )
    if built.returncode != 0:
        partial.unlink(missing_ok=True)
        pytest.skip(f"docker compose cannot be built: {built.stderr.strip()[-500:]}")
    partial.replace(exe)
    assert _works(exe), f"{exe} was built but does not report {COMPOSE_VERSION}"
    return exe


@dataclass
class Compose:
    """The Docker Compose binary, run with a clean environment and an empty client config."""

    exe: Path
    config_dir: Path

    def __call__(self, *args: str, file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess[str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("COMPOSE_", "DOCKER_", "STREAMER_", "GRAFANA_"))
        }
        env["DOCKER_CONFIG"] = str(self.config_dir)
        return subprocess.run(
            [str(self.exe), "--project-directory", str(file.parent), "-f", str(file), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )


@pytest.fixture(scope="module")
def docker_compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    """`config` contacts no engine; the empty client config keeps the user's out of it."""
    return Compose(obtain_compose(), tmp_path_factory.mktemp("docker-config"))


@pytest.mark.timeout(2400)
def test_docker_compose_config_accepts_the_file(docker_compose: Compose) -> None:
    for profile in ([], ["--profile", "demo"]):
        checked = docker_compose(*profile, "config", "--quiet")
        assert checked.returncode == 0, checked.stderr
    listed = docker_compose("config", "--services")
    assert set(listed.stdout.split()) == SERVICES - {"demo"}, "demo is only in the demo profile"
    listed = docker_compose("--profile", "demo", "config", "--services")
    assert set(listed.stdout.split()) == SERVICES


@pytest.mark.timeout(2400)
@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ("    healthcheck:\n", "    helthcheck:\n"),
        ("      topics:\n        condition:", "      topicz:\n        condition:"),
        ("condition: service_completed_successfully", "condition: service_done"),
        ("      - target: 9400\n", "      - target: nine-four-hundred\n"),
    ],
    ids=["unknown-key", "undefined-dependency", "bad-condition", "bad-port"],
)
def test_docker_compose_config_rejects_a_broken_copy(
    docker_compose: Compose, tmp_path: Path, original: str, broken: str
) -> None:
    """The validator is not vacuous: the same file with one mistake fails."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert original in text
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(text.replace(original, broken, 1), encoding="utf-8")
    checked = docker_compose("--profile", "demo", "config", "--quiet", file=copy)
    assert checked.returncode != 0, f"docker compose accepted {broken.strip()!r}"


@pytest.mark.timeout(2400)
def test_docker_compose_model_matches_the_code(docker_compose: Compose) -> None:
    """What Compose makes of the file (normalised, anchors merged) agrees with the code."""
    rendered = docker_compose("--profile", "demo", "config", "--format", "json")
    assert rendered.returncode == 0, rendered.stderr
    model = json.loads(rendered.stdout)["services"]
    streamer = model["streamer"]
    assert [(p["target"], p.get("published")) for p in streamer["ports"]] == [(METRICS_PORT, None)]
    assert streamer["environment"]["STREAMER_METRICS_PORT"] == str(METRICS_PORT)
    for name in ("topics", "streamer", "demo"):
        assert model[name]["image"] == STREAMER_IMAGE
        assert model[name]["build"]["context"] == str(ROOT)
        assert model[name]["environment"]["STREAMER_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert model["kafka"]["ports"][0]["published"] == "29092"
    mounts = {v["target"]: v for v in model["prometheus"]["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"]["source"] == str(
        ROOT / "deploy" / "prometheus" / "prometheus.yml"
    )


# -- checks on the files themselves ----------------------------------------------------------


def test_every_streamer_variable_is_a_setting() -> None:
    """A renamed or misspelt setting breaks this: the names must be Settings fields."""

    def unknown(names: set[str]) -> set[str]:
        return {
            n for n in names if n.removeprefix("STREAMER_").lower() not in Settings.model_fields
        }

    assert unknown({"STREAMER_NOT_A_SETTING", "STREAMER_GROUP_ID"}) == {"STREAMER_NOT_A_SETTING"}
    for path in (COMPOSE_FILE, DOCKERFILE, DOCS):
        names = set(STREAMER_NAME.findall(path.read_text(encoding="utf-8")))
        assert names, f"{path.name} names no STREAMER_ variable"
        assert not unknown(names), f"{path.name}: not settings: {sorted(unknown(names))}"


def test_the_containers_environment_loads_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's ENV plus each service's environment is a valid configuration."""
    image_env = parse_dockerfile()[-1].env()
    for name, service in streamer_services().items():
        for key in list(os.environ):
            if key.startswith("STREAMER_"):
                monkeypatch.delenv(key)
        env = {**image_env, **environment(service)}
        env = {k: v for k, v in env.items() if k.startswith("STREAMER_")}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings()
        assert settings.bootstrap_servers == "kafka:9092", name
        assert settings.metrics_host == "0.0.0.0", name  # noqa: S104 - scraped from outside
        assert not settings.transactional_id, f"{name}: replicas would share one transactional id"


def test_images_are_pinned() -> None:
    for name, service in services().items():
        if "build" in service:
            assert service["build"] == ".", name
            assert service["image"] == STREAMER_IMAGE, name
        else:
            assert PINNED.match(service["image"]), f"{name}: {service['image']} is not pinned"
    base = parse_dockerfile()[0].base
    assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?", base), base
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    assert {s.base for s in parse_dockerfile()} == {base}, "both stages on one interpreter"


def test_services_start_when_what_they_need_is_ready() -> None:
    svc = services()
    condition = {
        name: {dep: spec["condition"] for dep, spec in s.get("depends_on", {}).items()}
        for name, s in svc.items()
        if isinstance(s.get("depends_on", {}), dict)
    }
    assert condition["topics"] == {"kafka": "service_healthy"}
    assert condition["streamer"] == {
        "kafka": "service_healthy",
        "topics": "service_completed_successfully",
    }
    assert condition["demo"] == condition["streamer"]
    assert condition["grafana"] == {"prometheus": "service_healthy"}
    for deps in condition.values():
        for dep, cond in deps.items():
            if cond == "service_healthy":
                check = svc[dep].get("healthcheck", {})
                assert check.get("test"), f"{dep} has no healthcheck"
                assert not check.get("disable"), f"{dep} has its healthcheck off"
            if cond == "service_completed_successfully":
                assert svc[dep].get("restart") == "no", f"{dep} must run once"
    assert svc["demo"]["profiles"] == ["demo"]
    assert all("profiles" not in s for n, s in svc.items() if n != "demo")


def test_the_streamer_service_scales(monkeypatch: pytest.MonkeyPatch) -> None:
    streamer = services()["streamer"]
    assert "container_name" not in streamer
    assert "hostname" not in streamer, "one hostname would give every replica one txn id"
    for port in streamer["ports"]:
        assert isinstance(port, dict), "long port syntax, so no host port is fixed"
        assert "published" not in port, "a fixed host port can be taken by one replica only"
    assert streamer["restart"] == "unless-stopped"
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "STREAMER_TRANSACTIONAL_ID" not in text
    # The default transactional id that docs/docker.md describes.
    for key in list(os.environ):
        if key.startswith("STREAMER_"):
            monkeypatch.delenv(key)
    settings = load_settings(group_id="streamer")
    assert default_transactional_id(settings, lambda: "c0ffee") == "streamer-c0ffee"


def test_commands_are_streamer_commands() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    final = parse_dockerfile()[-1]
    entrypoint = final.one("ENTRYPOINT").exec_form()
    assert entrypoint == ["streamer"]
    assert scripts[entrypoint[0]] == "streamer.cli:main"
    assert final.one("CMD").exec_form() == ["run"]
    commands = {name: s["command"] for name, s in streamer_services().items()}
    assert commands == {"topics": ["topics", "create"], "streamer": ["run"], "demo": ["demo"]}
    for command in commands.values():
        _parser().parse_args(command)


def _healthchecks() -> dict[str, list[str]]:
    image = healthcheck_command(parse_dockerfile()[-1])
    test = services()["streamer"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return {"Dockerfile": image, "docker-compose.yml": list(test[1:])}


@pytest.mark.parametrize("source", ["Dockerfile", "docker-compose.yml"])
def test_healthcheck_answers_from_the_metrics_endpoint(source: str) -> None:
    """The health check, run as the container runs it, against the real MetricsServer."""
    command = _healthchecks()[source]
    assert command[0] == "python", "slim images have no curl: the check uses python"
    assert f"'{METRICS_PORT}'" in command[-1], "default port is Settings' metrics_port"
    assert "/healthz" in command[-1]
    server = MetricsServer(Metrics(CollectorRegistry()), Health(), "127.0.0.1", 0).start()
    env = {**os.environ, "STREAMER_METRICS_PORT": str(server.port)}
    try:
        healthy = subprocess.run(
            [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
        )
    finally:
        server.stop()
    assert healthy.returncode == 0, healthy.stderr
    down = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    assert down.returncode != 0, "the check passes with nothing listening"


def test_exposed_port_is_the_metrics_port() -> None:
    final = parse_dockerfile()[-1]
    assert final.one("EXPOSE").args == str(METRICS_PORT)
    streamer = services()["streamer"]
    assert [p["target"] for p in streamer["ports"]] == [METRICS_PORT]
    assert environment(streamer)["STREAMER_METRICS_PORT"] == str(METRICS_PORT)


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """{container path: repository path} of the service's bind mounts (``./x:/y:ro``)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *mode = str(volume).split(":")
        if source.startswith("."):
            assert mode == ["ro"], f"{volume} should be read-only"
            out[target] = (ROOT / source).resolve()
    return out


def test_prometheus_reads_the_repository_config_and_scrapes_streamer() -> None:
    svc = services()
    prometheus = svc["prometheus"]
    mounts = _mounts(prometheus)
    for target, source in mounts.items():
        assert source.is_file(), f"{source} is mounted at {target} but not in the repository"
    assert "command" not in prometheus, "the image's default --config.file is used"
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    for rule_file in config.get("rule_files", []):
        assert str(PurePosixPath("/etc/prometheus", rule_file)) in mounts, rule_file
    streamer_port = int(environment(svc["streamer"])["STREAMER_METRICS_PORT"])
    found: list[tuple[str, int]] = []
    for job in config["scrape_configs"]:
        paths = job.get("metrics_path", "/metrics")
        for static in job.get("static_configs", []):
            found += [host_port(t) for t in static["targets"]]
        for dns in job.get("dns_sd_configs", []):
            found += [(n, int(dns["port"])) for n in dns["names"]]
        assert paths == "/metrics"
    assert found == [("streamer", streamer_port)], found
    # The scraped path is one MetricsServer serves.
    server = MetricsServer(Metrics(CollectorRegistry()), Health(), "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert b"streamer_build_info" in response.read()
    finally:
        server.stop()


def test_grafana_reads_the_repository_provisioning() -> None:
    grafana = services()["grafana"]
    mounts = _mounts(grafana)
    assert set(mounts) == {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"}
    for target, source in mounts.items():
        assert source.is_dir(), f"{source} is mounted at {target} but not in the repository"
    sources = yaml.safe_load(
        (mounts["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").read_text()
    )
    urls = [d["url"] for d in sources["datasources"]]
    assert urls == ["http://prometheus:9090"]
    assert "127.0.0.1:9090:9090" in services()["prometheus"]["ports"]
    providers = yaml.safe_load(
        (mounts["/etc/grafana/provisioning"] / "dashboards" / "streamer.yml").read_text()
    )
    paths = {p["options"]["path"] for p in providers["providers"]}
    assert paths == {"/var/lib/grafana/dashboards"}
    home = PurePosixPath(environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert str(home.parent) == "/var/lib/grafana/dashboards"
    assert (mounts[str(home.parent)] / home.name).is_file()
    assert environment(grafana)["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_kafka_is_one_node_with_transactions_and_two_listeners() -> None:
    svc = services()
    kafka = svc["kafka"]
    env = environment(kafka)
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(bound) == set(protocols) == {"INTERNAL", "EXTERNAL", "CONTROLLER"}
    assert set(advertised) == {"INTERNAL", "EXTERNAL"}
    # The compose network reaches INTERNAL as the streamer containers are told to.
    assert advertised["INTERNAL"] == ("kafka", bound["INTERNAL"][1])
    for service in streamer_services().values():
        assert host_port(environment(service)["STREAMER_BOOTSTRAP_SERVERS"]) == (
            "kafka",
            bound["INTERNAL"][1],
        )
    # The host reaches EXTERNAL on the published port, on loopback only.
    assert advertised["EXTERNAL"] == ("localhost", bound["EXTERNAL"][1])
    assert kafka["ports"] == [f"127.0.0.1:{bound['EXTERNAL'][1]}:{bound['EXTERNAL'][1]}"]
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    assert host_port(voter) == ("kafka", bound["CONTROLLER"][1])
    assert kafka["hostname"] == "kafka"
    for single_node in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
    ):
        assert env[single_node] == "1", single_node
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(environment(svc["topics"])["STREAMER_TOPIC_REPLICATION"]) == 1
    cluster = env["CLUSTER_ID"]
    raw = base64.urlsafe_b64decode(cluster + "==")
    assert len(raw) == 16, "CLUSTER_ID is a base64url UUID"
    assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == cluster
    assert f"kafka-data:{env['KAFKA_LOG_DIRS']}" in kafka["volumes"]
    check = " ".join(kafka["healthcheck"]["test"])
    assert f"--bootstrap-server localhost:{bound['INTERNAL'][1]}" in check


def test_dockerfile_builds_a_runtime_only_venv_for_a_non_root_user() -> None:
    builder, final = parse_dockerfile()
    assert builder.name == "builder"
    venv = builder.env()["VENV"]
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "[dev]" not in text
    assert "pip install -e" not in text
    (run,) = [i.args for i in builder.all("RUN")]
    assert "pip wheel --no-deps" in run
    assert "venv --without-pip" in run
    # The final stage takes only the venv from the builder: no source, no build tools.
    assert final.copies() == [(["--from=builder"], [venv], venv)]
    assert all("pip" not in i.args for i in final.all("RUN"))
    assert final.env()["PATH"].split(":")[0] == f"{venv}/bin"
    assert final.env()["STREAMER_METRICS_HOST"] == "0.0.0.0"  # noqa: S104
    user = final.one("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "a fixed, numeric uid"
    assert int(uid) >= 1000, "not root, nor a system account of the base image"
    assert f"--uid {uid}" in text
    assert f"--gid {gid}" in text
    labels = final.labels()
    assert labels["org.opencontainers.image.title"] == PYPROJECT["project"]["name"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert labels["org.opencontainers.image.description"] == PYPROJECT["project"]["description"]
    assert labels["org.opencontainers.image.base.name"] == builder.base


def package_dirs() -> set[str]:
    """The folders pyproject.toml's packages come from (listed, or found by include pattern)."""
    tool = PYPROJECT["tool"]["setuptools"]
    mapping: dict[str, str] = tool.get("package-dir", {})
    packages = tool["packages"]
    if isinstance(packages, dict):
        return {p.rstrip("*.") for p in packages["find"]["include"]}
    dirs = set()
    for package in packages:
        parent = max(
            (k for k in mapping if package == k or package.startswith(k + ".")),
            key=len,
            default=None,
        )
        if parent is None:
            dirs.add(package.replace(".", "/"))
        else:
            rest = package[len(parent) :].lstrip(".").replace(".", "/")
            dirs.add(str(PurePosixPath(mapping[parent], rest)))
    return dirs


def test_dockerignore_sends_only_what_the_build_needs() -> None:
    rules = ignore_rules()
    assert excluded(".venv/bin/python", rules)
    assert excluded("streamer/__pycache__/cli.cpython-311.pyc", rules)
    assert not excluded("streamer/samples/events.jsonl", rules)
    context = docker_context()
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]} | package_dirs()
    assert {p.split("/")[0] for p in context} == {n.split("/")[0] for n in needed}
    assert not [p for p in context if "__pycache__" in p or p.endswith((".pyc", ".pyo"))]
    for folder in package_dirs():
        assert f"{folder}/__init__.py" in context, folder
        on_disk = {
            f.relative_to(ROOT).as_posix()
            for f in (ROOT / folder).rglob("*")
            if f.is_file() and "__pycache__" not in f.parts
        }
        assert on_disk <= context, on_disk - context
    builder = parse_dockerfile()[0]
    for _flags, sources, _dest in builder.copies():
        for source in sources:
            name = source.rstrip("/")
            assert name == "." or name in context or any(p.startswith(name + "/") for p in context)


def test_docs_match_the_files() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    compose_text = COMPOSE_FILE.read_text(encoding="utf-8")
    for image in (s["image"] for s in services().values() if "build" not in s):
        assert f"`{image}`" in docs, image
    for port in ("localhost:3000", "localhost:9090", "localhost:29092"):
        assert port in docs, port
        assert f"127.0.0.1:{port.split(':')[1]}" in compose_text, port
    default_topics = {t for r in DEFAULT_ROUTES for t in (r.raw, r.public, r.archive)}
    default_topics.add(str(Settings.model_fields["quarantine_topic"].default))
    assert set(re.findall(r"conductor\.[a-z]+(?:\.[a-z]+)?", docs)) <= default_topics
    partitions = Settings.model_fields["topic_partitions"].default
    assert f"`STREAMER_TOPIC_PARTITIONS` partitions ({partitions} by default)" in docs
    assert "--isolation-level read_committed" in docs
    assert "docker compose up -d --scale streamer=3" in docs
    assert "`<group_id>-<hostname>`" in docs
    assert f"port {METRICS_PORT}" in docs
