"""Avro end to end on the real broker through the real `streamer run`: Avro in, JSON public and
Avro archive out, read back by a plain consumer with fastavro; single-object encoding without
a registry, Confluent framing with a real registry (Apicurio, see registry.py)."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from streamer import avro
from streamer.masking import Masked, Reason, Rejected, mask_event
from streamer.pipeline import HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_TOPIC
from streamer.policy import Policy
from tests.integration.conftest import Stack
from tests.integration.registry import Registry
from tests.reference import CONDUCTOR

pytestmark = pytest.mark.integration
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
WORKFLOWS = [
    p for p in sorted(CONDUCTOR.glob("*.json")) if p.name not in ("02_task_execution.json",)
]
TASK = CONDUCTOR / "02_task_execution.json"
#: Values that sit under _secrets in the samples: none may reach a public copy.
SECRETS = ("vk_live_4Hs8QpZ2mT", "LIC-9F2K-77QA", "s3cr3t")


def _plain_schema(name: str) -> Any:
    """What a consumer outside streamer does: parse the .avsc file with fastavro."""
    return fastavro.parse_schema(json.loads((SCHEMAS / f"{name}.avsc").read_text()))


def _plain_read(value: bytes | None, schema: Any, header: int) -> Any:
    assert value is not None
    return fastavro.schemaless_reader(io.BytesIO(value[header:]), schema, None)


def _routes(stack: Stack, **formats: dict[str, str]) -> str:
    return json.dumps(
        [
            {
                "name": r,
                "raw": stack.topic(r, "raw"),
                "public": stack.topic(r, "public"),
                "archive": stack.topic(r, "archive"),
                **formats.get(r, {}),
            }
            for r in ("workflow", "task")
        ]
    )


def _masked(raw: bytes) -> Masked:
    result = mask_event(raw)
    assert isinstance(result, Masked)
    return result


def _one_partition(values: list[Any]) -> list[bytes | None]:
    """One key for all: one partition, so offsets follow the order produced."""
    return [b"one"] * len(values)


def test_single_object_avro_in_json_public_avro_archive_out(stack: Stack) -> None:
    """No registry: ConductorEvents in single-object encoding on the workflow route; JSON on
    the task route, written out as typed Avro archive records."""
    schema = avro.bundled(avro.CONDUCTOR_EVENT)
    datums = [avro.conductor_event(json.loads(p.read_text())) for p in WORKFLOWS]
    good = [avro.frame_single_object(schema, d) for d in datums]
    corrupt = good[0][:-5]
    unknown = good[0][:2] + bytes(8) + good[0][10:]
    values: list[bytes | None] = [*good, corrupt, unknown, None]
    stack.produce("workflow", values, _one_partition(values))
    task_event = TASK.read_bytes()
    stack.produce("task", [task_event])
    avro_route = {"raw_format": "avro", "archive_format": "avro"}
    done = stack.streamer(
        "run",
        "--stop-when-caught-up",
        STREAMER_ROUTES=_routes(stack, workflow=avro_route, task={"archive_format": "avro"}),
    )
    assert done.returncode == 0, done.stderr

    out = stack.outputs("workflow")
    assert len(out["public"]) == len(out["archive"]) == len(good) + 1
    public, archive = out["public"], out["archive"]  # one partition: in the order produced
    archive_schema = _plain_schema("archive-record")
    fingerprint = avro.bundled(avro.ARCHIVE_RECORD).fingerprint
    for offset, datum in enumerate(datums):
        expected = _masked(avro.to_json(datum))
        assert public[offset].value == expected.public  # JSON text, not Avro
        assert not any(s.encode() in expected.public for s in SECRETS)
        framed = archive[offset].value
        assert framed is not None
        assert framed[:10] == avro.SINGLE_OBJECT_MARKER + fingerprint
        record = _plain_read(framed, archive_schema, 10)
        assert record["event"] == expected.archive.decode()
        assert record["sourceTopic"] == stack.topic("workflow", "raw")
        assert record["sourceOffset"] == offset
        assert record["redactions"] == dict(expected.redactions[Policy.ARCHIVE])
        assert record["workflowId"] == (datum["workflowInstanceId"] or None)
    assert public[-1].value is None  # the tombstone
    assert archive[-1].value is None
    reasons = {
        int(dict(r.headers)[HEADER_SOURCE_OFFSET] or b""): dict(r.headers)[HEADER_REASON]
        for r in out["quarantine"]
    }
    assert reasons == {
        len(good): Reason.AVRO_DECODE.value.encode(),
        len(good) + 1: Reason.UNKNOWN_SCHEMA.value.encode(),
    }
    assert {r.value for r in out["quarantine"]} == {corrupt, unknown}

    task = stack.outputs("task")
    assert task["public"][0].value == _masked(task_event).public
    record = _plain_read(task["archive"][0].value, archive_schema, 10)
    assert record["event"] == _masked(task_event).archive.decode()
    assert record["taskId"] == "c4e2b9a1-7d3f-4e8b-9a6c-1b5d0f2e3a84"
    assert record["redactions"] == {"_secrets": 3}


CREDENTIALS = {
    "type": "record",
    "name": "Credentials",
    "fields": [{"name": "user", "type": "string"}, {"name": "pin", "type": "int"}],
}
TYPED_EVENT = {
    "type": "record",
    "name": "TypedEvent",
    "namespace": "t",
    "fields": [
        {"name": "workflowId", "type": "string"},
        {"name": "_secrets", "type": CREDENTIALS},
        {"name": "input", "type": "string"},
    ],
}


def _registered_read(client: SchemaRegistryClient, value: bytes | None) -> tuple[int, Any]:
    """A plain Confluent-framed read: schema id from the header, schema from the registry."""
    assert value is not None
    assert value[0] == 0
    schema_id = int.from_bytes(value[1:5], "big")
    text = client.get_schema(schema_id).schema_str
    assert text is not None
    return schema_id, _plain_read(value, fastavro.parse_schema(json.loads(text)), 5)


@pytest.fixture
def client(schema_registry: Registry) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": schema_registry.url}) as registry_client:
        yield registry_client


def test_registry_framing_end_to_end(
    stack: Stack, schema_registry: Registry, client: SchemaRegistryClient
) -> None:
    """Confluent framing with a real registry: ConductorEvents to JSON public and Avro
    archive; a typed event whose _secrets record needs a derived schema, registered as a new
    version under the output subject."""
    event_schema = avro.bundled(avro.CONDUCTOR_EVENT)
    event_id = client.register_schema(
        stack.topic("workflow", "raw") + "-value", Schema(event_schema.text, "AVRO")
    )
    datums = [avro.conductor_event(json.loads(p.read_text())) for p in WORKFLOWS[:3]]
    framed = [avro.frame_confluent(event_id, event_schema, d) for d in datums]
    stack.produce("workflow", framed, _one_partition(framed))
    typed = avro.AvroSchema.of(TYPED_EVENT)
    typed_id = client.register_schema(
        stack.topic("task", "raw") + "-value", Schema(typed.text, "AVRO")
    )
    public_subject = stack.topic("task", "public") + "-value"
    client.register_schema(public_subject, Schema(typed.text, "AVRO"))  # version 1: as written
    typed_datum = {
        "workflowId": "w-1",
        "_secrets": {"user": "svc", "pin": 4242},
        "input": '{"_masked":{"email":"a@example.com"},"n":1}',
    }
    stack.produce(
        "task", [avro.frame_confluent(typed_id, typed, typed_datum), b"\x00\x00\x01\x86\xa0\x02"]
    )
    url = {"schema_registry_url": schema_registry.url}
    done = stack.streamer(
        "run",
        "--stop-when-caught-up",
        STREAMER_ROUTES=_routes(
            stack,
            workflow={"raw_format": "avro", "archive_format": "avro", **url},
            task={
                "raw_format": "avro",
                "public_format": "avro-event",
                "archive_format": "avro",
                **url,
            },
        ),
    )
    assert done.returncode == 0, done.stderr

    out = stack.outputs("workflow")
    archive_ids = set()
    for record, datum in zip(out["archive"], datums, strict=True):
        expected = _masked(avro.to_json(datum))
        schema_id, archived = _registered_read(client, record.value)
        archive_ids.add(schema_id)
        assert archived["event"] == expected.archive.decode()
        assert archived["policyVersion"] == "1"
    assert [r.value for r in out["public"]] == [_masked(avro.to_json(d)).public for d in datums]
    assert len(archive_ids) == 1
    assert client.get_versions(stack.topic("workflow", "archive") + "-value") == [1]

    task = stack.outputs("task")  # the quarantine topic is shared: the task route's record
    assert [dict(r.headers)[HEADER_REASON] for r in task["quarantine"]] == [b"unknown_schema"]
    assert (
        dict(task["quarantine"][0].headers)[HEADER_SOURCE_TOPIC]
        == stack.topic("task", "raw").encode()
    )
    _, public = _registered_read(client, task["public"][0].value)
    assert public == {"workflowId": "w-1", "_secrets": "***", "input": '{"_masked":"***","n":1}'}
    assert sorted(client.get_versions(public_subject)) == [1, 2]  # the derived schema
    derived = json.loads(client.get_version(public_subject, 2).schema.schema_str or "")
    assert {f["name"]: f["type"] for f in derived["fields"]}["_secrets"] == "string"
    _, archived = _registered_read(client, task["archive"][0].value)
    assert archived["workflowId"] == "w-1"
    assert archived["redactions"] == {"_secrets": 1}
    assert json.loads(archived["event"])["_secrets"] == "***"
    assert "4242" not in archived["event"]


def test_registry_refuses_an_incompatible_derived_schema(client: SchemaRegistryClient) -> None:
    """With BACKWARD compatibility, a derived schema that turns a record into a string is
    refused by the registry: the record is quarantined (schema_incompatible), not forwarded."""
    typed = avro.AvroSchema.of(TYPED_EVENT)
    subject = "incompatible.public-value"
    client.register_schema(subject, Schema(typed.text, "AVRO"))
    client.set_compatibility(subject, "BACKWARD")
    derived = avro.derive_schema(typed, frozenset({"_secrets", "_masked"}))
    assert derived is not typed
    header = avro.RegistryStore(client).header(derived, "incompatible.public")
    assert isinstance(header, Rejected)
    assert header.reason is Reason.SCHEMA_INCOMPATIBLE


def test_archive_schema_versions_are_compatible_both_ways(client: SchemaRegistryClient) -> None:
    """What schemas/README.md promises, checked by a real registry: version 2 of the archive
    record is FULL compatible with version 1 (backward and forward)."""
    subject = "compat.archive-value"
    v1, v2 = avro.bundled(avro.ARCHIVE_RECORD_V1), avro.bundled(avro.ARCHIVE_RECORD)
    client.register_schema(subject, Schema(v1.text, "AVRO"))
    for level in ("BACKWARD", "FORWARD", "FULL"):
        client.set_compatibility(subject, level)
        assert client.test_compatibility(subject, Schema(v2.text, "AVRO")), level
    assert client.register_schema(subject, Schema(v2.text, "AVRO")) > 0
    assert sorted(client.get_versions(subject)) == [1, 2]


def test_unreachable_registry_redoes_the_batch_and_quarantines_nothing(stack: Stack) -> None:
    """A registry outage is not the record's fault: the transaction is aborted and the batch
    redone until the registry answers; nothing is forwarded or quarantined meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    schema = avro.bundled(avro.CONDUCTOR_EVENT)
    event = avro.conductor_event(json.loads(WORKFLOWS[0].read_text()))
    stack.produce("workflow", [avro.frame_confluent(1, schema, event)])
    url = {"schema_registry_url": f"http://127.0.0.1:{closed}"}
    running = stack.start(
        STREAMER_ROUTES=_routes(stack, workflow={"raw_format": "avro", **url}),
    )
    try:
        running.wait_for("batch failed (_TRANSPORT)", timeout=90)
        running.wait_for("redoing it from offsets", timeout=30)
    finally:
        assert running.stop() == 0, running.text()
    out = stack.outputs("workflow")
    assert out == {"public": [], "archive": [], "quarantine": []}
