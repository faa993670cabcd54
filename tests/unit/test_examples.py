"""Table tests: every example of the shared masking rules and every realistic Conductor event."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from streamer.masking import Masked, mask_event
from streamer.policy import Policy
from tests.reference import CONDUCTOR, DATA, at_path, reference, sensitive_paths

RULES = [json.loads(line) for line in (DATA / "rules.jsonl").read_text().splitlines()]
EVENTS = sorted(CONDUCTOR.glob("*.json"))
PATHS = sensitive_paths()


def _masked(raw: bytes) -> Masked:
    result = mask_event(raw)
    assert isinstance(result, Masked), result
    return result


def _inner_json_as_values(doc: dict[str, Any]) -> dict[str, Any]:
    """Summary strings holding JSON text compare by value, not by spacing."""
    out = dict(doc)
    for field in ("input", "output"):
        if isinstance(out.get(field), str) and out[field].startswith('{"'):
            out[field] = json.loads(out[field])
    return out


@pytest.mark.parametrize("row", RULES, ids=[r["id"] for r in RULES])
@pytest.mark.parametrize("compact", [True, False], ids=["compact", "indented"])
def test_rules_table(row: dict[str, Any], compact: bool) -> None:
    raw = json.dumps(row["event"], indent=None if compact else 2).encode()
    result = _masked(raw)
    public = _inner_json_as_values(json.loads(result.public))
    archive = _inner_json_as_values(json.loads(result.archive))
    assert public == _inner_json_as_values(row["public"])
    assert archive == _inner_json_as_values(row["archive"])


@pytest.mark.parametrize("path", EVENTS, ids=[p.name for p in EVENTS])
def test_conductor_event_every_listed_path(path: Any) -> None:
    raw = path.read_bytes()
    event = json.loads(raw)
    result = _masked(raw)
    public, archive = json.loads(result.public), json.loads(result.archive)
    listed = PATHS[path.name]
    for key, where in listed:
        assert at_path(public, where) == "***", where
        expected_archive = (
            reference(at_path(event, where), "archive") if key == "_masked" else "***"
        )
        assert at_path(archive, where) == expected_archive, where
    if path.name not in ("03_workflow_summary.json", "04_task_summary.json"):
        # Outside summary strings the reference model is exact: nothing else changed.
        assert public == reference(event, "public")
        assert archive == reference(event, "archive")
        expected = Counter(key for key, _ in listed)
        assert dict(result.redactions[Policy.PUBLIC]) == dict(expected)
        assert dict(result.redactions[Policy.ARCHIVE]) == {"_secrets": expected["_secrets"]}


def test_near_misses_survive() -> None:
    raw = (CONDUCTOR / "01_workflow_execution_full.json").read_bytes()
    public = _masked(raw).public.decode()
    for kept in (
        '"secrets"',
        '"maskedEmail"',
        "_secrets are rotated nightly",
        "${workflow.input._secrets}",
        "pi_3PQx9LmN_secret_Zt7wQ1",
    ):
        if kept in raw.decode():
            assert kept in public, kept


def test_workflow_summary_java_map_text() -> None:
    result = _masked((CONDUCTOR / "03_workflow_summary.json").read_bytes())
    public, archive = json.loads(result.public), json.loads(result.archive)
    assert public["input"] == (
        "{orderId=ORD-1001, amountCents=12999, customer={id=C-20931, "
        "email=dana.whitfield@example.com, tier=gold, _masked=***}, items=[{sku=SKU-A1, qty=1, "
        "_secrets=***}, {sku=SKU-B7, qty=2, _secrets=***}], "
        "receiptUrl=https://files.example.com/r/ORD-1001.pdf?sig=3b9f0c, _secrets=***, "
        "secrets=near-miss key: must NOT be masked}"
    )
    assert "_masked={ssn=123-45-6789, dob=1984-07-12}" in archive["input"]
    assert "sk_test_51HqLyjWDarjtT1zdp7dc" not in archive["input"]
    assert public["output"] == (
        "{chargeId=ch_3PQx9LmN, receiptMessageId=<20260101000002.4411@mail.example.com>, "
        "_masked=***, licenses=[{sku=SKU-A1, qty=1, _secrets=***}, {sku=SKU-B7, qty=2, "
        "_secrets=***}]}"
    )
    assert result.redactions[Policy.PUBLIC] == {"_secrets": 5, "_masked": 2}
    assert result.redactions[Policy.ARCHIVE] == {"_secrets": 5}


def test_task_summary_json_text_stays_json_text() -> None:
    raw = (CONDUCTOR / "04_task_summary.json").read_bytes()
    event = json.loads(raw)
    result = _masked(raw)
    public, archive = json.loads(result.public), json.loads(result.archive)
    for field in ("input", "output"):
        assert isinstance(public[field], str)
        assert json.loads(public[field]) == reference(json.loads(event[field]), "public")
        assert json.loads(archive[field]) == reference(json.loads(event[field]), "archive")
    assert result.redactions[Policy.PUBLIC] == {"_secrets": 2, "_masked": 3}


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


@pytest.mark.parametrize("path", EVENTS, ids=[p.name for p in EVENTS])
def test_no_sensitive_value_reaches_public(path: Any) -> None:
    """Every string that sat only under a sensitive key is absent from the public bytes."""
    raw = path.read_bytes()
    event = json.loads(raw)
    result = _masked(raw)
    everywhere_else = json.dumps(reference(event, "public"))
    for _, where in PATHS[path.name]:
        for leaf in _leaves(at_path(event, where)):
            if isinstance(leaf, str) and len(leaf) > 3 and leaf not in everywhere_else:
                assert leaf.encode() not in result.public, (where, "value leaked")
