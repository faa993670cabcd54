"""The Metrics object on a fresh registry, the readiness logic, the HTTP endpoint on a real
socket, and that the shipped alerts, dashboard and docs name only metrics that exist."""

from __future__ import annotations

import json
import re
import time
import urllib.error
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streamer import __version__
from streamer.masking import Reason
from streamer.metrics import Health, Metrics, MetricsServer
from streamer.policy import POLICY_VERSION, Policy
from tests.prometheus_server import get, samples, series

ROOT = Path(__file__).resolve().parents[2]
ROUTES = ["workflow", "task"]
KEYS = ["_masked", "_secrets"]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def totals(m: Metrics) -> dict[str, float]:
    return samples(generate_latest(m.registry).decode(), "_total")


def exported_names(m: Metrics) -> set[str]:
    """Names as Prometheus sees them: counters with _total, histograms as _bucket/_sum/_count."""
    text = generate_latest(m.registry).decode()
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_prepare_creates_every_known_series_at_zero(metrics: Metrics) -> None:
    metrics.prepare(ROUTES, KEYS)
    found = totals(metrics)
    assert set(found.values()) == {0}
    expected = {series("streamer_transactions_total", outcome=o) for o in ("committed", "aborted")}
    expected |= {
        series("streamer_rebalances_total", kind=k) for k in ("assigned", "revoked", "lost")
    }
    for r in ROUTES:
        expected |= {
            series("streamer_events_clean_total", route=r),
            series("streamer_events_consumed_total", route=r),
            *(series("streamer_events_produced_total", route=r, output=o)
              for o in ("public", "archive", "quarantine")),
            *(series("streamer_events_quarantined_total", route=r, reason=q.value) for q in Reason),
            *(series("streamer_redactions_total", route=r, policy=p.value, key=k)
              for p in Policy for k in KEYS),
        }  # fmt: skip
    assert set(found) == expected


def test_build_info_names_version_and_policy(metrics: Metrics) -> None:
    info = "streamer_build_info"
    assert value(metrics, info, version=__version__, policy_version=POLICY_VERSION) == 1


@pytest.mark.parametrize(
    ("state", "ready", "why"),
    [
        ({}, False, "producer not initialised"),
        ({"producer_ready": True}, False, "no partitions assigned"),
        ({"assigned": True}, False, "producer not initialised"),
        ({"producer_ready": True, "assigned": True}, True, "ready"),
        ({"producer_ready": True, "assigned": True, "failing_since": -10.0}, True, "ready"),
        (
            {"producer_ready": True, "assigned": True, "failing_since": -31.0},
            False,
            "transactions failing for over 30 s",
        ),
    ],
)
def test_readiness(metrics: Metrics, state: dict[str, object], ready: bool, why: str) -> None:
    if "failing_since" in state:
        state["failing_since"] = time.monotonic() + float(state["failing_since"])  # type: ignore[arg-type]
    health = Health(metrics)
    health.update(**state)
    assert health.is_ready() == (ready, why)
    assert value(metrics, "streamer_ready") == (1 if ready else 0)


def test_ready_gauge_follows_failing_transactions_without_an_update(metrics: Metrics) -> None:
    """Failing for over 30 s is a matter of time passing, not of another update."""
    health = Health(metrics)
    health.update(producer_ready=True, assigned=True, failing_since=time.monotonic())
    assert value(metrics, "streamer_ready") == 1
    health.failing_since = time.monotonic() - 31
    assert value(metrics, "streamer_ready") == 0


def test_server_serves_metrics_health_and_readiness(metrics: Metrics) -> None:
    metrics.prepare(ROUTES, KEYS)
    health = Health(metrics)
    server = MetricsServer(metrics, health, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        status, body = get(f"{url}/metrics?name[]=x")
        assert status == 200
        assert 'streamer_events_consumed_total{route="workflow"} 0.0' in body.splitlines()
        assert get(f"{url}/healthz") == (200, "ok\n")
        assert get(f"{url}/readyz") == (503, "producer not initialised\n")
        health.update(producer_ready=True, assigned=True)
        assert get(f"{url}/readyz") == (200, "ready\n")
        assert "streamer_ready 1.0" in get(f"{url}/metrics")[1].splitlines()
        for path in ("/", "/metricsx", "/readyz/x"):
            assert get(url + path)[0] == 404
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        get(f"{url}/healthz", timeout=2)


def _alert_exprs() -> str:
    return (ROOT / "deploy/prometheus/alerts.yml").read_text()


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/streamer.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_alerts_and_dashboard_name_only_exported_metrics(metrics: Metrics) -> None:
    """A misspelt name is valid PromQL that silently matches nothing: catch it here."""
    metrics.prepare(ROUTES, KEYS)
    exported = exported_names(metrics)
    for source in (_alert_exprs(), *_dashboard_exprs()):
        used = set(re.findall(r"\bstreamer_[a-z_]+", source))
        assert used <= exported, (used - exported, source)


def test_docs_cover_every_metric_and_alert(metrics: Metrics) -> None:
    metrics.prepare(ROUTES, KEYS)
    docs = (ROOT / "docs/metrics.md").read_text()
    derived = ("_bucket", "_sum", "_count", "_created")
    names = {n for n in exported_names(metrics) if not n.endswith(derived)}
    assert not {n for n in names if f"`{n}`" not in docs}
    alerts = re.findall(r"- alert: (\w+)", _alert_exprs())
    assert len(alerts) == 6
    assert not {a for a in alerts if a not in docs}
