"""`streamer demo`: the product on real Conductor-shaped events in a real Kafka, in one command.

Produces the bundled samples (and one poison record) to the raw topics, runs the real
`streamer run --stop-when-caught-up` as a subprocess, then reads the outputs back with
``isolation.level=read_committed`` and shows raw, public and archive side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from streamer.kafka import create_topics, read_committed
from streamer.policy import MASKED, SECRETS
from streamer.settings import Settings

_WIDTH = 30


def samples() -> list[dict[str, Any]]:
    """The bundled sample events: ``{"route", "name", "event"}`` each."""
    text = resources.files("streamer").joinpath("samples/events.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _sample_key(event: dict[str, Any], name: str) -> bytes:
    for field in ("taskId", "workflowId"):
        if isinstance(event.get(field), str):
            return f"{event[field]}:{name}".encode()
    return name.encode()


def produce_samples(settings: Settings, run_id: str) -> int:
    routes = {r.name: r for r in settings.routes}
    producer = Producer({**settings.client_config(), "enable.idempotence": True})
    count = 0
    for sample in samples():
        route = routes.get(sample["route"]) or settings.routes[0]
        value = json.dumps(sample["event"], ensure_ascii=False).encode()
        headers: list[tuple[str, str | bytes | None]] = [
            ("demo-run", run_id.encode()),
            ("demo-name", sample["name"].encode()),
        ]
        producer.produce(
            route.raw, value, _sample_key(sample["event"], sample["name"]), headers=headers
        )
        count += 1
    poison: list[tuple[str, str | bytes | None]] = [
        ("demo-run", run_id.encode()),
        ("demo-name", b"poison-not-json"),
    ]
    producer.produce(
        settings.routes[0].raw, b'{"_secrets": "oops" truncated', b"poison", headers=poison
    )
    if producer.flush(30):
        raise KafkaException("could not deliver the samples within 30 s")
    return count + 1


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def side_by_side(name: str, raw: bytes, public: bytes, archive: bytes) -> str:
    """The fields that differ between the copies, or sit under a sensitive key."""
    r, p, a = (_flat(json.loads(x)) for x in (raw, public, archive))
    rows = [
        (path, _cell(r[path]), _cell(p.get(path, "***")), _cell(a.get(path, "***")))
        for path in r
        if r[path] != p.get(path) or r[path] != a.get(path) or SECRETS in path or MASKED in path
    ]
    width = max((len(path) for path, *_ in rows), default=10)
    lines = [f"== {name}", f"{'field':<{width}}  {'raw':<{_WIDTH}}  {'public':<{_WIDTH}}  archive"]
    for path, rv, pv, av in rows[:14]:
        lines.append(f"{path:<{width}}  {rv:<{_WIDTH}}  {pv:<{_WIDTH}}  {av}")
    if len(rows) > 14:
        lines.append(f"... and {len(rows) - 14} more fields")
    return "\n".join(lines)


def run_demo(settings: Settings, config: Path | None, show: int) -> int:
    print(f"Kafka at {settings.bootstrap_servers}")
    for topic, outcome in create_topics(settings):
        print(f"  topic {outcome:<8} {topic}")
    run_id = uuid.uuid4().hex[:8]
    produced = produce_samples(settings, run_id)
    print(f"produced {produced} raw events (demo run {run_id}, one of them a poison record)\n")
    command = [sys.executable, "-m", "streamer"]
    if config is not None:
        command += ["--config", str(config)]
    command += ["run", "--stop-when-caught-up"]
    print("$ streamer run --stop-when-caught-up")
    env = dict(os.environ)
    env.setdefault("STREAMER_METRICS_PORT", "0")  # a demo need not hold a port
    finished = subprocess.run(command, check=False, env=env)
    if finished.returncode != 0:
        print(f"streamer run failed with exit status {finished.returncode}", file=sys.stderr)
        return finished.returncode
    topics = [t for r in settings.routes for t in (r.raw, r.public, r.archive)]
    topics.append(settings.quarantine_topic)
    records = read_committed(settings.client_config(), topics)

    def ours(topic: str) -> dict[str, bytes]:
        found = {}
        for record in records[topic]:
            hdrs = dict(record.headers)
            if hdrs.get("demo-run") == run_id.encode():
                found[(hdrs.get("demo-name") or b"").decode()] = record.value or b""
        return found

    print()
    shown = 0
    for route in settings.routes:
        raw, public, archive = ours(route.raw), ours(route.public), ours(route.archive)
        for name in (
            "02_task_execution",
            "masked-holding-secrets",
            "03_workflow_summary",
            "05_subworkflow_parent_execution",
        ):
            if shown < show and name in raw and name in public and name in archive:
                print(side_by_side(name, raw[name], public[name], archive[name]) + "\n")
                shown += 1
    print("records per topic (read_committed; this demo run / all time):")
    for topic in topics:
        print(f"  {topic:<30} {len(ours(topic)):>5} / {len(records[topic])}")
    return 0
