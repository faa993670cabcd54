"""Events built with the official Conductor Python SDK's models, serialised as it sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamer.masking import Masked, mask_event
from streamer.policy import Policy
from tests.reference import reference

models = pytest.importorskip("conductor.client.http.models")
api_client = pytest.importorskip("conductor.client.http.api_client")


def _serialise(obj: Any) -> bytes:
    """What the SDK puts on the wire: sanitize_for_serialization, then JSON."""
    client = api_client.ApiClient.__new__(api_client.ApiClient)
    return json.dumps(api_client.ApiClient.sanitize_for_serialization(client, obj)).encode()


def _task() -> Any:
    return models.Task(
        task_type="HTTP",
        status="COMPLETED",
        reference_task_name="charge_ref",
        task_id="t-1",
        workflow_instance_id="w-1",
        input_data={
            "http_request": {"uri": "https://pay.example.com", "method": "POST"},
            "_secrets": {"apiKey": "CANARY-sdk-key"},
            "_masked": {"card": "4242"},
        },
        output_data={"response": {"body": {"_secrets": {"token": "CANARY-sdk-token"}}}},
        workflow_task=models.WorkflowTask(
            name="charge",
            task_reference_name="charge_ref",
            input_parameters={"_secrets": {"apiKey": "${workflow.secrets.pay}"}},
            type="HTTP",
        ),
    )


def test_sdk_task_is_masked_at_the_real_paths() -> None:
    raw = _serialise(_task())
    doc = json.loads(raw)
    assert doc["inputData"]["_secrets"] == {"apiKey": "CANARY-sdk-key"}  # the real field names
    result = mask_event(raw)
    assert isinstance(result, Masked)
    assert json.loads(result.public) == reference(doc, "public")
    assert json.loads(result.archive) == reference(doc, "archive")
    assert b"CANARY" not in result.public
    assert result.redactions[Policy.PUBLIC] == {"_secrets": 3, "_masked": 1}


def test_sdk_workflow_with_tasks_and_variables() -> None:
    workflow = models.Workflow(
        workflow_id="w-1",
        workflow_name="checkout",
        status="RUNNING",
        input={"orderId": "O-1", "_secrets": {"stripe": "CANARY-sdk-stripe"}},
        output={"_masked": {"email": "a@example.com"}},
        variables={"_masked": "CANARY-sdk-var"},
        tasks=[_task()],
    )
    raw = _serialise(workflow)
    doc = json.loads(raw)
    assert doc["tasks"][0]["inputData"]["_masked"] == {"card": "4242"}
    result = mask_event(raw)
    assert isinstance(result, Masked)
    assert json.loads(result.public) == reference(doc, "public")
    assert json.loads(result.archive) == reference(doc, "archive")
    assert b"CANARY" not in result.public
    assert b"CANARY-sdk-var" in result.archive


def test_sdk_task_summary_json_text() -> None:
    summary = models.TaskSummary(
        workflow_id="w-1",
        task_id="t-1",
        status="COMPLETED",
        input=json.dumps({"_secrets": {"k": "CANARY-sdk-summary"}, "n": 1}),
        output="{_masked={e=CANARY-sdk-map}, ok=true}",
    )
    result = mask_event(_serialise(summary))
    assert isinstance(result, Masked)
    public = json.loads(result.public)
    assert json.loads(public["input"]) == {"_secrets": "***", "n": 1}
    assert public["output"] == "{_masked=***, ok=true}"
    assert b"CANARY" not in result.public
