"""Exactly once across volume, crashes and rebalances: every raw event appears once in each
output (or once in quarantine), as a ``read_committed`` reader sees them."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import pytest

from tests.integration.conftest import Running, Stack

pytestmark = pytest.mark.integration
CANARY = "CANARY-eos-51c7"
FAST_GROUP = json.dumps({"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"})


def _events(n: int, poison_every: int = 0) -> tuple[list[bytes], list[bytes]]:
    values, keys = [], []
    for i in range(n):
        if poison_every and i % poison_every == 0:
            values.append(b"{not json " + CANARY.encode())
        else:
            event = {
                "workflowId": f"wf-{i}",
                "status": "COMPLETED",
                "input": {"_secrets": {"token": f"{CANARY}-{i}"}, "n": i},
                "output": {"_masked": {"email": f"user{i}@example.com"}, "big": 10**30 + i},
                "pad": "p" * 600,
            }
            values.append(json.dumps(event).encode())
        keys.append(f"e{i}".encode())
    return values, keys


def _wait_for_outputs(stack: Stack, route: str, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = stack.outputs(route)
        if len(out["public"]) + len(out["quarantine"]) >= at_least:
            return
        time.sleep(0.5)
    raise AssertionError(f"fewer than {at_least} outputs after {timeout} s")


def _assert_exactly_once(stack: Stack, route: str, keys: list[bytes], poison: set[bytes]) -> None:
    out = stack.outputs(route)
    public = Counter(r.key for r in out["public"])
    archive = Counter(r.key for r in out["archive"])
    quarantine = Counter(r.key for r in out["quarantine"])
    expected_ok = Counter(k for k in keys if k not in poison)
    assert public == expected_ok, "public: lost or duplicated"
    assert archive == expected_ok, "archive: lost or duplicated"
    assert quarantine == Counter(poison), "quarantine: lost or duplicated"
    for record in out["public"]:
        value = record.value or b""
        assert CANARY.encode() not in value
        assert b'"_secrets": "***"' in value
        assert b'"_masked": "***"' in value
    for record in out["archive"]:
        assert CANARY.encode() not in (record.value or b"")
        assert b"@example.com" in (record.value or b"")


def _clean_logs(*runs: Running) -> None:
    for run in runs:
        assert CANARY not in run.text(), f"canary in the log of {run.log}"


def test_thousands_of_events_add_up_exactly(stack: Stack) -> None:
    values, keys = _events(5000, poison_every=97)
    poison = {keys[i] for i in range(0, 5000, 97)}
    stack.produce("workflow", values, keys)
    run = stack.start("--stop-when-caught-up", name="bulk")
    assert run.wait() == 0, run.text()
    _assert_exactly_once(stack, "workflow", keys, poison)
    _clean_logs(run)
    assert "consumed 5000 events" in run.text()


def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(stack: Stack) -> None:
    values, keys = _events(30000, poison_every=1000)
    poison = {keys[i] for i in range(0, 30000, 1000)}
    stack.produce("workflow", values, keys)
    env = {"STREAMER_KAFKA": FAST_GROUP, "STREAMER_BATCH_SIZE": "2000"}
    first = stack.start(name="killed", **env)
    _wait_for_outputs(stack, "workflow", 4000)
    first.stop(signal.SIGKILL)
    mid = stack.outputs("workflow")
    assert 0 < len(mid["public"]) < 29970, "the kill should land mid-run"
    second = stack.start("--stop-when-caught-up", name="restarted", **env)
    assert second.wait() == 0, second.text()
    _assert_exactly_once(stack, "workflow", keys, poison)
    _clean_logs(first, second)


def test_two_instances_share_partitions_and_one_stops_halfway(stack: Stack) -> None:
    values, keys = _events(20000)
    stack.produce("task", values, keys)
    env = {"STREAMER_KAFKA": FAST_GROUP, "STREAMER_BATCH_SIZE": "500"}
    a = stack.start(name="a", STREAMER_TRANSACTIONAL_ID=f"{stack.prefix}-a", **env)
    b = stack.start(name="b", STREAMER_TRANSACTIONAL_ID=f"{stack.prefix}-b", **env)
    a.wait_for("assigned")
    b.wait_for("assigned")
    _wait_for_outputs(stack, "task", 6000)
    assert a.stop(signal.SIGTERM) == 0, a.text()
    _wait_for_outputs(stack, "task", 20000, timeout=180)
    assert b.stop(signal.SIGTERM) == 0, b.text()
    _assert_exactly_once(stack, "task", keys, set())
    assert "revoked" in b.text()
    _clean_logs(a, b)


def test_refused_copy_aborts_the_transaction_and_is_quarantined_on_retry(stack: Stack) -> None:
    """The broker refuses a copy the size check let through (the topic's limit changed after
    start): the transaction aborts, the batch is redone, the event goes to quarantine by
    reference, and its neighbours still come out exactly once."""
    run = stack.start(name="limits", STREAMER_BATCH_SIZE="50")
    run.wait_for("assigned")
    stack.set_config(stack.topic("task", "public"), max_message_bytes="3000")
    small = [json.dumps({"_secrets": CANARY, "i": i}).encode() for i in range(20)]
    big = json.dumps({"_secrets": CANARY, "pad": "x" * 5000}).encode()
    values = [*small[:10], big, *small[10:]]
    keys = [f"k{i}".encode() for i in range(len(values))]
    stack.produce("task", values, keys)
    _wait_for_outputs(stack, "task", len(values))
    assert run.stop() == 0, run.text()
    out = stack.outputs("task")
    assert Counter(r.key for r in out["public"]) == Counter(k for k in keys if k != b"k10")
    assert Counter(r.key for r in out["archive"]) == Counter(k for k in keys if k != b"k10")
    assert [(r.key, r.value) for r in out["quarantine"]] == [(b"k10", None)]
    assert "MSG_SIZE_TOO_LARGE" in run.text()
    assert "aborting the transaction" in run.text()
    _clean_logs(run)
