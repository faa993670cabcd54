"""The shipped Prometheus config, alert rules and Grafana dashboard, checked by a real Prometheus
(Debian's package, fetched by tests/prometheus_server.py) scraping a real `streamer run`."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Running, Stack
from tests.integration.test_metrics_endpoint import wait_ready
from tests.prometheus_server import (
    Prometheus,
    ensure_prometheus,
    free_port,
    series,
    start_prometheus,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "streamer.json"
ALERT_NAMES = re.findall(r"- alert: (\w+)", (SHIPPED / "alerts.yml").read_text())
CANARY = "CANARY-prometheus-71c3"


@pytest.fixture(scope="module")
def tools() -> Path:
    return ensure_prometheus()


def promtool(tools: Path, *args: str | Path) -> str:
    done = subprocess.run(
        [tools / "promtool", *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_accepts_the_shipped_files(tools: Path) -> None:
    """Run on the files where they are: rule_files resolves beside the config, as in Compose."""
    assert "SUCCESS: 1 rule files found" in promtool(
        tools, "check", "config", SHIPPED / "prometheus.yml"
    )
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in promtool(
        tools, "check", "rules", SHIPPED / "alerts.yml"
    )


def _case(inputs: dict[str, str], at: str, *firing: dict[str, str]) -> dict[str, Any]:
    """At ``at``, exactly the alerts ``firing`` (their labels) fire, given series ``inputs``."""
    samples = [{"labels": series("ALERTS", alertstate="firing", **f), "value": 1} for f in firing]
    test = {"expr": 'ALERTS{alertstate="firing"}', "eval_time": at, "exp_samples": samples}
    series_ = [{"series": k, "values": v} for k, v in inputs.items()]
    return {"interval": "1m", "input_series": series_, "promql_expr_test": [test]}


def _alert(name: str, severity: str, **labels: str) -> dict[str, str]:
    return {"alertname": name, "severity": severity, **labels}


def test_alert_rules_fire_as_documented(tools: Path, tmp_path: Path) -> None:
    """promtool's rule unit tests on synthetic series (JSON is YAML), every alert fired once."""
    up, s = 'up{job="streamer",instance="a"}', 'job="streamer",instance="a"'
    public = 'streamer_redactions_total{job="streamer",policy="public",key="_secrets",route="%s"}'
    quarantined = 'streamer_events_quarantined_total{%s,route="%s",reason="%s"}'
    redactions = {public % "workflow": "0+10x1440 14400x500", public % "task": "0x1940"}
    cases = [
        _case({up: "1x10"}, "5m"),
        _case(
            {up: "1 1 0x5"}, "5m", _alert("StreamerDown", "critical", job="streamer", instance="a")
        ),
        # No target at all: absent(up).
        _case({}, "3m", _alert("StreamerDown", "critical", job="streamer")),
        _case(
            {up: "1x10", f"streamer_ready{{{s}}}": "1 0x8"},
            "7m",
            _alert("StreamerNotReady", "critical", job="streamer", instance="a"),
        ),
        _case(
            {
                up: "1x10",
                quarantined % (s, "workflow", "invalid_json"): "0 0 1x6",
                quarantined % (s, "task", "not_utf8"): "0x8",
            },
            "4m",
            _alert("StreamerQuarantining", "warning", route="workflow", reason="invalid_json"),
        ),
        _case(
            {up: "1x20", f'streamer_transactions_total{{{s},outcome="aborted"}}': "0+1x20"},
            "16m",
            _alert("StreamerTransactionsAborting", "warning", instance="a"),
        ),
        _case(
            {
                up: "1x30",
                f'streamer_consumer_lag{{{s},topic="raw",partition="0"}}': "2000+50x30",
                f'streamer_consumer_lag{{{s},topic="steady",partition="0"}}': "5000x30",
            },
            "21m",
            _alert("StreamerLagGrowing", "warning", topic="raw"),
        ),
        _case({up: "1x1940"} | redactions, "1700m"),
        _case(
            {up: "1x1940"} | redactions,
            "1860m",
            _alert("StreamerNoRedactions", "warning", route="workflow"),
        ),
    ]
    assert set(re.findall(r'alertname=\\"(\w+)', json.dumps(cases))) == set(ALERT_NAMES)
    spec = {
        "rule_files": [str(SHIPPED / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": cases,
    }
    (tmp_path / "alerts_test.yml").write_text(json.dumps(spec, indent=1))
    assert "SUCCESS" in promtool(tools, "test", "rules", tmp_path / "alerts_test.yml")


def eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture
def streamer(stack: Stack) -> Iterator[tuple[Running, str]]:
    port = free_port()
    running = stack.start(STREAMER_METRICS_PORT=str(port), STREAMER_METRICS_HOST="127.0.0.1")
    try:
        wait_ready(running, f"http://127.0.0.1:{port}")
        yield running, f"127.0.0.1:{port}"
    finally:
        assert running.stop() == 0, running.text()


@pytest.fixture
def prometheus(tools: Path, streamer: tuple[Running, str], tmp_path: Path) -> Iterator[Prometheus]:
    """The shipped config, with only its target and intervals changed, and the shipped rules."""
    config = (SHIPPED / "prometheus.yml").read_text()
    discovery = (
        '    dns_sd_configs:\n      - names: ["streamer"]\n        type: A\n        port: 9400'
    )
    for old, new in [
        (discovery, f'    static_configs:\n      - targets: ["{streamer[1]}"]'),
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
    ]:
        assert config.count(old) == 1, old
        config = config.replace(old, new)
    (tmp_path / "prometheus.yml").write_text(config)
    (tmp_path / "alerts.yml").write_bytes((SHIPPED / "alerts.yml").read_bytes())
    server = start_prometheus(tools, tmp_path / "prometheus.yml", tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _dashboard_queries() -> list[str]:
    """Every target's expr, with Grafana's variables as Prometheus would get them."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$route", ".*")
            assert "$" not in expr, expr
            queries.append(expr)
    return queries


def test_real_prometheus_scrapes_and_evaluates_everything(
    stack: Stack, streamer: tuple[Running, str], prometheus: Prometheus
) -> None:
    eventually(lambda: prometheus.value('up{job="streamer"}') == 1, "first scrape")
    # Produced after the first scrape, so the alerts see every count rise from 0.
    stack.produce("workflow", [json.dumps({"_secrets": CANARY}).encode()] * 4 + [b"not json"])
    stack.produce("task", [json.dumps({"_masked": CANARY}).encode()] * 2)
    expected = {
        "sum(streamer_redactions_total)": 4 + 4 + 2,
        'sum(streamer_redactions_total{route="task",policy="public",key="_masked"})': 2,
        "sum(streamer_events_consumed_total)": 7,
        "sum(streamer_events_produced_total)": 4 * 2 + 1 + 2 * 2,
        'sum(streamer_events_quarantined_total{reason="invalid_json"})': 1,
        "sum(streamer_events_quarantined_total)": 1,
        "sum(streamer_events_clean_total)": 0,
        'sum(streamer_transactions_total{outcome="aborted"})': 0,
        "streamer_ready": 1,
    }
    eventually(
        lambda: all(prometheus.value(q) == v for q, v in expected.items()),
        f"totals {expected}",
    )
    for label in prometheus.api("labels")["data"]:
        assert not [v for v in prometheus.api(f"label/{label}/values")["data"] if CANARY in v]

    rules = [r for g in prometheus.api("rules")["data"]["groups"] for r in g["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(ALERT_NAMES)
    for query in [r["query"] for r in rules] + _dashboard_queries():
        answer = prometheus.query(query)
        assert answer["status"] == "success", (query, answer)
        assert not answer.get("warnings"), (query, answer)
    routes = prometheus.query("group by (route) (streamer_events_consumed_total)")  # $route
    assert {r["metric"]["route"] for r in routes["data"]["result"]} == {"workflow", "task"}

    def all_rules_ok() -> bool:
        groups = prometheus.api("rules")["data"]["groups"]
        return all(r["health"] == "ok" for g in groups for r in g["rules"])

    eventually(all_rules_ok, "every rule evaluated without error", timeout=30)
    alert = 'ALERTS{alertname="%s"}'  # pending, or firing once its "for" has passed
    eventually(lambda: prometheus.value(alert % "StreamerQuarantining") == 1, "quarantine alert")
    assert streamer[0].stop() == 0
    eventually(lambda: prometheus.value(alert % "StreamerDown") == 1, "down alert", timeout=30)
