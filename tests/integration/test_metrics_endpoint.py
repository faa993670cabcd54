"""`streamer run`'s HTTP endpoint over known events, through the real command and broker: every
counter exact, health and readiness before, during and after, and a canary secret that reaches
neither a metric nor a log line."""

from __future__ import annotations

import json
import time
import urllib.error

import pytest

from streamer import __version__
from streamer.masking import Reason
from streamer.policy import POLICY_VERSION
from tests.integration.conftest import Running, Stack
from tests.prometheus_server import free_port, get, samples, series

pytestmark = pytest.mark.integration
CANARY = "CANARY-metrics-5b1f"
ROUTES = ("workflow", "task")
KEYS = ("_secrets", "_masked")

# Each: public redactions of _secrets and _masked; archive keeps _masked values.
BOTH = json.dumps({"input": {"_secrets": {"token": CANARY}, "_masked": {"pw": CANARY}}}).encode()
TWO_SECRETS = json.dumps({"a": {"_secrets": CANARY}, "b": [{"_secrets": [CANARY]}]}).encode()
MASKED_ONLY = json.dumps({"outputData": {"_masked": CANARY}}).encode()
CLEAN = json.dumps({"workflowId": "w-1", "status": "COMPLETED"}).encode()
TRUNCATED = f'{{"_secrets": "{CANARY}"'.encode()
ARRAY = json.dumps([CANARY]).encode()
EVENTS = {
    "workflow": [BOTH] * 5 + [TWO_SECRETS] * 3 + [CLEAN] * 4 + [TRUNCATED] * 2 + [ARRAY],
    "task": [MASKED_ONLY] * 2 + [CLEAN],
}


def expected_totals() -> dict[str, float]:
    """Every counter series after EVENTS, but for committed transactions and rebalances."""
    red, prod, quar = (
        "streamer_redactions_total",
        "streamer_events_produced_total",
        "streamer_events_quarantined_total",
    )
    want: dict[str, float] = {series("streamer_transactions_total", outcome="aborted"): 0}
    for r in ROUTES:
        want |= {
            series(red, route=r, policy=p, key=k): 0 for p in ("public", "archive") for k in KEYS
        }
        want |= {series(quar, route=r, reason=q.value): 0 for q in Reason}
    want |= {
        series(red, route="workflow", policy="public", key="_secrets"): 5 + 3 * 2,
        series(red, route="workflow", policy="public", key="_masked"): 5,
        series(red, route="workflow", policy="archive", key="_secrets"): 5 + 3 * 2,
        series(red, route="task", policy="public", key="_masked"): 2,
        series("streamer_events_clean_total", route="workflow"): 4,
        series("streamer_events_clean_total", route="task"): 1,
        series("streamer_events_consumed_total", route="workflow"): 15,
        series("streamer_events_consumed_total", route="task"): 3,
        series(prod, route="workflow", output="public"): 12,
        series(prod, route="workflow", output="archive"): 12,
        series(prod, route="workflow", output="quarantine"): 3,
        series(prod, route="task", output="public"): 3,
        series(prod, route="task", output="archive"): 3,
        series(prod, route="task", output="quarantine"): 0,
        series(quar, route="workflow", reason="invalid_json"): 2,
        series(quar, route="workflow", reason="not_object"): 1,
    }
    return want


def wait_ready(running: Running, url: str, timeout: float = 60) -> list[tuple[int, str]]:
    """Poll /readyz until 200; every answer before it must be a 503 with a reason."""
    seen: list[tuple[int, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert running.proc.poll() is None, running.text()
        try:
            seen.append(get(f"{url}/readyz", timeout=2))
        except OSError:  # not listening yet
            time.sleep(0.05)
            continue
        if seen[-1][0] == 200:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"/readyz never answered 200: {seen[-3:]}\n{running.text()}")


def wait_metrics(running: Running, url: str, consumed: int, timeout: float = 90) -> str:
    """Scrape until every event is counted and the lag of all 6 raw partitions reads 0."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        assert running.proc.poll() is None, running.text()
        text = get(f"{url}/metrics")[1]
        found = samples(text)
        lag = [v for k, v in found.items() if k.startswith("streamer_consumer_lag{")]
        counted = sum(
            v for k, v in found.items() if k.startswith("streamer_events_consumed_total{")
        )
        if counted == consumed and len(lag) == 6 and not any(lag):
            return text
        time.sleep(0.2)
    raise AssertionError(f"not all counted within {timeout} s:\n{text}\n{running.text()}")


def test_endpoint_counts_every_event_exactly(stack: Stack) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    running = stack.start(STREAMER_METRICS_PORT=str(port), STREAMER_METRICS_HOST="127.0.0.1")
    try:
        before = wait_ready(running, url)
        assert {why for status, why in before[:-1]} <= {
            "producer not initialised\n",
            "no partitions assigned\n",
        }
        assert {status for status, _ in before[:-1]} <= {503}
        for route, values in EVENTS.items():
            stack.produce(route, values)
        text = wait_metrics(running, url, sum(map(len, EVENTS.values())))

        totals = samples(text, "_total")
        assert totals.pop(series("streamer_transactions_total", outcome="committed")) > 0
        rebalances = {k: totals.pop(k) for k in list(totals) if "rebalances" in k}
        assert rebalances[series("streamer_rebalances_total", kind="assigned")] >= 1
        assert rebalances[series("streamer_rebalances_total", kind="lost")] == 0
        assert totals == expected_totals()  # delivery errors: no series at all

        found = samples(text)
        assert found[series("streamer_commit_latency_seconds_count", route="workflow")] == 15
        assert found[series("streamer_commit_latency_seconds_count", route="task")] == 3
        assert found["streamer_mask_duration_seconds_count"] == 18
        assert found["streamer_partitions_assigned"] == 6
        assert found["streamer_ready"] == 1
        info = series("streamer_build_info", version=__version__, policy_version=POLICY_VERSION)
        assert found[info] == 1
        assert get(f"{url}/readyz") == (200, "ready\n")
        assert get(f"{url}/healthz") == (200, "ok\n")
        assert get(f"{url}/nope")[0] == 404
        assert CANARY not in text

        out = stack.outputs("workflow")  # the counters agree with what the topics hold
        assert (len(out["public"]), len(out["archive"]), len(out["quarantine"])) == (12, 12, 3)
    finally:
        code = running.stop()
    assert code == 0, running.text()
    with pytest.raises(urllib.error.URLError):
        get(f"{url}/healthz", timeout=2)
    log = running.text()
    assert "quarantined" in log
    assert CANARY not in log
