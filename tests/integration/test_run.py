"""`streamer run` end to end on the real broker, through the real command."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from streamer.pipeline import (
    HEADER_POLICY,
    HEADER_REASON,
    HEADER_REDACTIONS,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_TOPIC,
)
from tests.integration.conftest import Stack
from tests.reference import CONDUCTOR, DATA, reference

pytestmark = pytest.mark.integration
CANARY = "CANARY-run-9d2e"


def _examples() -> list[bytes]:
    rows = [json.loads(line) for line in (DATA / "rules.jsonl").read_text().splitlines()]
    events = [json.dumps(r["event"]).encode() for r in rows]
    events += [p.read_bytes() for p in sorted(CONDUCTOR.glob("*.json"))]
    return events


def test_every_example_masked_once_into_each_output(stack: Stack) -> None:
    events = _examples()
    keys = [f"key-{i}".encode() for i in range(len(events))]
    stack.produce("task", events, keys, headers=[("trace", b"t-1"), ("_secrets", b"hdr")])
    done = stack.streamer("run", "--stop-when-caught-up")
    assert done.returncode == 0, done.stderr
    out = stack.outputs("task")
    assert len(out["public"]) == len(out["archive"]) == len(events)
    assert out["quarantine"] == []
    by_key = {r.key: r for r in out["public"]}
    archive_by_key = {r.key: r for r in out["archive"]}
    for key, raw in zip(keys, events, strict=True):
        event = json.loads(raw)
        public, archive = by_key[key], archive_by_key[key]
        if "input" not in event or not isinstance(event.get("input"), str):
            assert json.loads(public.value or b"") == reference(event, "public")
            assert json.loads(archive.value or b"") == reference(event, "archive")
        headers, archive_headers = dict(public.headers), dict(archive.headers)
        assert headers[HEADER_POLICY] == b"public"
        assert archive_headers[HEADER_POLICY] == b"archive"
        assert headers["trace"] == b"t-1"
        assert headers["_secrets"] == b"***"
        assert int(headers[HEADER_REDACTIONS] or b"0") >= int(
            archive_headers[HEADER_REDACTIONS] or b"0"
        )
    assert "consumed 16 events" in done.stderr


def test_poison_records_quarantined_while_neighbours_flow(stack: Stack) -> None:
    good = json.dumps({"_secrets": CANARY, "n": 1}).encode()
    huge = json.dumps({"blob": "x" * 5_000_000, "_secrets": CANARY}).encode()
    # The raw topic accepts 5 MB records; the outputs keep the broker's 1 MB default.
    stack.set_config(stack.topic("workflow", "raw"), max_message_bytes="10485760")
    values: list[bytes | None] = [
        good,
        b"not json",
        good,
        b"\xff\xfe",
        good,
        b"",
        good,
        b"[1,2]",
        huge,
        None,
        good,
    ]
    stack.produce("workflow", values, config={"message.max.bytes": 10_485_760})
    done = stack.streamer("run", "--stop-when-caught-up")
    assert done.returncode == 0, done.stderr
    out = stack.outputs("workflow")
    public_values = [r.value for r in out["public"]]
    assert public_values.count(b'{"_secrets": "***", "n": 1}') == 5
    assert public_values.count(None) == 1  # the tombstone, passed on
    assert [r.value for r in out["archive"]].count(None) == 1
    reasons = Counter(dict(r.headers)[HEADER_REASON] for r in out["quarantine"])
    assert reasons == {b"invalid_json": 2, b"not_utf8": 1, b"not_object": 1, b"too_large": 1}
    for record in out["quarantine"]:
        headers = dict(record.headers)
        assert headers[HEADER_SOURCE_TOPIC] == stack.topic("workflow", "raw").encode()
        assert int(headers[HEADER_SOURCE_OFFSET] or b"-1") >= 0
        if headers[HEADER_REASON] == b"too_large":
            assert record.value is None  # by reference only
    for records in out.values():
        for record in records:
            assert CANARY.encode() not in (record.value or b"") or record in out["quarantine"]
    assert CANARY not in done.stderr
    assert CANARY not in done.stdout
