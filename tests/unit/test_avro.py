"""Avro: schemas/, both framings, masking inside Avro data, derived schemas, quarantine reasons,
and schema evolution. The registry here is confluent-kafka's in-memory mock; the integration
tests run the same paths against a real (Apicurio) registry."""

from __future__ import annotations

import io
import json
import math
import random
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import fastavro
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro.read import SchemaResolutionError

from streamer import avro
from streamer.avro import AvroSchema, RegistryStore, RegistryUnavailable, SingleObjectStore
from streamer.masking import Masked, Reason, Rejected, mask_event
from streamer.pipeline import (
    HEADER_CONTENT_TYPE,
    Routed,
    content_type,
    output_headers,
    process,
)
from streamer.policy import DEFAULT_KEYS, POLICY_VERSION, KeyPolicy, Policy
from streamer.settings import Route, SettingsError, load_settings
from tests.reference import CONDUCTOR, reference

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SAMPLES = Path(__file__).resolve().parents[2] / "streamer" / "samples" / "events.jsonl"
TASK_FILES = {"02_task_execution.json", "04_task_summary.json"}


def _samples() -> list[tuple[str, str, dict[str, Any]]]:
    """Every sample event: (id, workflow|task, event)."""
    out = []
    for path in sorted(CONDUCTOR.glob("*.json")):
        kind = "task" if path.name in TASK_FILES else "workflow"
        out.append((path.stem, kind, json.loads(path.read_text())))
    for line in SAMPLES.read_text().splitlines():
        row = json.loads(line)
        out.append((f"samples-{row['name']}", row["route"], row["event"]))
    return out


SAMPLE_EVENTS = _samples()
SAMPLE_IDS = [s[0] for s in SAMPLE_EVENTS]


class Source:
    """A consumed record's coordinates, as the runner's Record carries them."""

    topic = "c.raw"
    partition = 2
    offset = 41
    timestamp = 1767225602015


def _route(**formats: Any) -> Route:
    return Route(name="c", raw="c.raw", public="c.public", archive="c.archive", **formats)


def _routed(value: bytes, route: Route, keys: KeyPolicy = DEFAULT_KEYS) -> Routed:
    result = process(value, keys, route, Source())
    assert isinstance(result, Routed), result
    return result


def _read(schema: AvroSchema, framed: bytes | None, header: int = 10) -> Any:
    assert framed is not None
    return _resolve(framed[header:], schema.parsed, None)


def _resolve(body: bytes, writer: Any, reader: Any) -> Any:
    """Read ``body`` written with ``writer`` as ``reader`` (Avro schema resolution)."""
    return fastavro.schemaless_reader(io.BytesIO(body), writer, reader)


def _schema(fields: list[dict[str, Any]], name: str = "Event") -> AvroSchema:
    return AvroSchema.of({"type": "record", "name": name, "namespace": "t", "fields": fields})


def _masked(raw: bytes, keys: KeyPolicy = DEFAULT_KEYS) -> Masked:
    result = mask_event(raw, keys)
    assert isinstance(result, Masked), result
    return result


def _rabin(text: str) -> bytes:
    """CRC-64-AVRO as the Avro specification writes it: an independent check on fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in text.encode("utf-8"):
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


# -- schemas/ ----------------------------------------------------------------------------------


def test_every_schema_file_is_bundled_and_documented() -> None:
    files = sorted(p.name.removesuffix(".avsc") for p in SCHEMAS.glob("*.avsc"))
    assert list(avro.bundled_names()) == files
    assert set(files) >= {"conductor-event", "archive-record", "archive-record.v1", "public-record"}
    for name in files:
        schema = json.loads((SCHEMAS / f"{name}.avsc").read_text())
        assert schema["doc"], name
        for field in schema["fields"]:
            assert field.get("doc"), f"{name}: {field['name']}"
        assert avro.bundled(name).text == (SCHEMAS / f"{name}.avsc").read_text()


def test_readme_lists_every_schema_with_its_fingerprint() -> None:
    readme = (SCHEMAS / "README.md").read_text()
    for name in avro.bundled_names():
        row = f"| `{name}.avsc` | `{avro.bundled(name).fullname}`"
        assert row in readme, name
        assert f"`{avro.bundled(name).fingerprint.hex()}`" in readme, name


def test_public_record_has_the_archive_record_shape() -> None:
    public = json.loads(avro.bundled(avro.PUBLIC_RECORD).text)
    archive = json.loads(avro.bundled(avro.ARCHIVE_RECORD).text)
    assert [(f["name"], f["type"]) for f in public["fields"]] == [
        (f["name"], f["type"]) for f in archive["fields"]
    ]


def test_conductor_event_has_the_orkes_fields() -> None:
    fields = {
        f["name"]: f["type"] for f in json.loads(avro.bundled("conductor-event").text)["fields"]
    }
    assert list(fields) == [
        "_schema",
        "workflowType",
        "eventType",
        "workflowInstanceId",
        "sink",
        "taskId",
        "workflow",
        "task",
    ]
    assert fields["taskId"] == fields["workflow"] == fields["task"] == ["null", "string"]


@pytest.mark.parametrize("name", ["conductor-event", "archive-record", "public-record", "null"])
def test_fingerprint_is_the_specifications_crc64(name: str) -> None:
    schema = AvroSchema.of('"null"') if name == "null" else avro.bundled(name)
    assert schema.fingerprint == _rabin(schema.canonical)
    if name == "null":  # the value the Avro specification's test suite lists for "null"
        assert int.from_bytes(schema.fingerprint, "little") == 7195948357588979594


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind", "event"), SAMPLE_EVENTS, ids=SAMPLE_IDS)
def test_round_trip_conductor_event(name: str, kind: str, event: dict[str, Any]) -> None:
    schema = avro.bundled(avro.CONDUCTOR_EVENT)
    datum = avro.conductor_event(event, kind)
    framed = avro.frame_single_object(schema, datum)
    found = SingleObjectStore().writer(framed)
    assert not isinstance(found, Rejected)
    writer, start = found
    assert writer.fingerprint == schema.fingerprint
    assert avro.decode(writer, framed, start) == datum
    assert json.loads(datum[kind]) == event


@pytest.mark.parametrize(("name", "kind", "event"), SAMPLE_EVENTS, ids=SAMPLE_IDS)
@pytest.mark.parametrize("policy", list(Policy))
def test_round_trip_typed_records_from_json(
    name: str, kind: str, event: dict[str, Any], policy: Policy
) -> None:
    raw = json.dumps(event).encode()
    routed = _routed(raw, _route(public_format="avro", archive_format="avro"))
    masked = _masked(raw)
    framed = routed.public if policy is Policy.PUBLIC else routed.archive
    schema = avro.output_record_schema(policy)
    assert framed is not None
    assert framed[:10] == avro.SINGLE_OBJECT_MARKER + schema.fingerprint
    record = _read(schema, framed)
    copy = masked.public if policy is Policy.PUBLIC else masked.archive
    assert record["event"] == copy.decode()
    assert record["redactions"] == dict(masked.redactions.get(policy, {}))
    assert routed.redactions[policy] == masked.redactions.get(policy, {})
    assert (record["sourceTopic"], record["sourcePartition"], record["sourceOffset"]) == (
        "c.raw",
        2,
        41,
    )
    assert record["sourceTimestamp"] == datetime(2026, 1, 1, 0, 0, 2, 15000, tzinfo=UTC)
    assert record["policyVersion"] == POLICY_VERSION
    top = event.get("payload", event)
    assert record["workflowId"] == top.get("workflowId") or top.get("workflowInstanceId")
    assert record["status"] == top.get("status")


@pytest.mark.parametrize(("name", "kind", "event"), SAMPLE_EVENTS, ids=SAMPLE_IDS)
def test_round_trip_avro_in_every_output_format(
    name: str, kind: str, event: dict[str, Any]
) -> None:
    """Avro in: the JSON copies are the JSON rules applied to the event rendered as JSON; the
    avro-event copies carry the same values in the event's own schema; nothing secret left."""
    schema = avro.bundled(avro.CONDUCTOR_EVENT)
    datum = avro.conductor_event(event, kind)
    value = avro.frame_single_object(schema, datum)
    expected = _masked(avro.to_json(datum))
    as_json = _routed(value, _route(raw_format="avro"))
    assert as_json.public == expected.public
    assert as_json.archive == expected.archive
    assert as_json.redactions == expected.redactions
    as_avro = _routed(
        value, _route(raw_format="avro", public_format="avro-event", archive_format="avro-event")
    )
    assert as_avro.redactions == expected.redactions
    for policy, framed in ((Policy.PUBLIC, as_avro.public), (Policy.ARCHIVE, as_avro.archive)):
        assert framed is not None
        assert framed[2:10] == schema.fingerprint  # ConductorEvent: "***" fits every field
        copy = _read(schema, framed)
        json_copy = expected.public if policy is Policy.PUBLIC else expected.archive
        assert copy == json.loads(json_copy)
        again = _masked(avro.to_json(copy))  # complete: a second pass finds nothing
        assert not again.redactions[policy]
    typed = _routed(value, _route(raw_format="avro", archive_format="avro"))
    record = _read(avro.bundled(avro.ARCHIVE_RECORD), typed.archive)
    assert record["event"] == expected.archive.decode()
    assert record["eventType"] == datum["eventType"]
    assert record["workflowId"] == (datum["workflowInstanceId"] or None)


def test_clean_avro_event_is_passed_through_byte_for_byte() -> None:
    schema = avro.bundled(avro.CONDUCTOR_EVENT)
    datum = avro.conductor_event({"workflowId": "w", "status": "RUNNING", "input": {"a": 1}})
    value = avro.frame_single_object(schema, datum)
    routed = _routed(
        value, _route(raw_format="avro", public_format="avro-event", archive_format="avro-event")
    )
    assert routed.public == routed.archive == value
    assert not any(routed.redactions.values())


def test_registry_framing_round_trip() -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://round-trip"})
    schema = avro.bundled(avro.CONDUCTOR_EVENT)
    schema_id = client.register_schema("c.raw-value", Schema(schema.text, "AVRO"))
    datum = avro.conductor_event(
        json.loads((CONDUCTOR / "02_task_execution.json").read_text()), "task"
    )
    value = avro.frame_confluent(schema_id, schema, datum)
    assert value[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    store = RegistryStore(client)
    found = store.writer(value)
    assert not isinstance(found, Rejected)
    writer, start = found
    assert start == 5
    assert avro.decode(writer, value, start) == datum
    header = store.header(avro.bundled(avro.ARCHIVE_RECORD), "c.archive")
    assert isinstance(header, bytes)
    archive_id = int.from_bytes(header[1:5], "big")
    registered = client.get_schema(archive_id).schema_str
    assert registered is not None
    assert json.loads(registered) == json.loads(avro.bundled(avro.ARCHIVE_RECORD).text)
    assert client.get_versions("c.archive-value") == [1]
    assert store.header(avro.bundled(avro.ARCHIVE_RECORD), "c.archive") == header


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        ("topic-name", "c.archive-value"),
        ("record-name", "streamer.ArchiveRecord"),
        ("topic-record-name", "c.archive-streamer.ArchiveRecord"),
    ],
)
def test_subject_name_strategies(strategy: str, subject: str) -> None:
    client = SchemaRegistryClient.new_client({"url": f"mock://{strategy}"})
    store = RegistryStore(client, strategy)
    assert isinstance(store.header(avro.bundled(avro.ARCHIVE_RECORD), "c.archive"), bytes)
    assert client.get_subjects() == [subject]


def test_unknown_subject_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="strategy"):
        RegistryStore(SchemaRegistryClient.new_client({"url": "mock://x"}), "topic")


# -- masking rules inside Avro -----------------------------------------------------------------


def _mask(
    schema: AvroSchema, datum: Any, policy: Policy, keys: KeyPolicy = DEFAULT_KEYS
) -> tuple[Any, dict[str, int], AvroSchema]:
    body = avro.encode(schema, datum)
    clean = not keys.mentioned(body)
    masked, counts, out_schema = avro.mask_datum(
        schema, avro.decode(schema, body), keys, policy, clean
    )
    if clean:  # the fast path must not change the outcome
        assert avro.mask_datum(schema, datum, keys, policy)[:2] == (masked, counts)
    if out_schema is not schema:  # what the output decodes to with the schema it is written with
        assert avro.decode(out_schema, avro.encode(out_schema, masked)) == masked
    return masked, counts, out_schema


def test_string_fields_holding_json_text_are_masked_by_the_json_rules() -> None:
    schema = _schema([{"name": "input", "type": "string"}, {"name": "n", "type": "long"}])
    text = '{"_secrets":{"k":"v"},"_masked":{"m":1},"n":"\\u005fsecrets"}'
    public, counts, out = _mask(schema, {"input": text, "n": 1}, Policy.PUBLIC)
    assert out is schema
    assert public["input"] == '{"_secrets":"***","_masked":"***","n":"\\u005fsecrets"}'
    assert counts == {"_secrets": 1, "_masked": 1}
    archive, counts, _ = _mask(schema, {"input": text, "n": 1}, Policy.ARCHIVE)
    assert archive["input"] == '{"_secrets":"***","_masked":{"m":1},"n":"\\u005fsecrets"}'
    assert counts == {"_secrets": 1}


@pytest.mark.parametrize(
    ("text", "public"),
    [
        ("{orderId=1, _secrets={pin=0000}, x=y}", "{orderId=1, _secrets=***, x=y}"),
        ("${workflow.input._secrets.token}", "${workflow.input._secrets.token}"),
        ("see _secrets in the docs", "see _secrets in the docs"),
        ("_secrets=abc and more = broken {", "***"),
    ],
    ids=["java-map-text", "expression", "prose", "unparseable-fail-closed"],
)
def test_string_fields_follow_the_text_rules(text: str, public: str) -> None:
    schema = _schema([{"name": "input", "type": ["null", "string"]}])
    masked, _, _ = _mask(schema, {"input": text}, Policy.PUBLIC)
    assert masked["input"] == public


def test_record_field_named_secrets_of_string_type_keeps_the_schema() -> None:
    schema = _schema([{"name": "_secrets", "type": "string"}, {"name": "x", "type": "int"}])
    masked, counts, out = _mask(schema, {"_secrets": "tok-1", "x": 1}, Policy.ARCHIVE)
    assert masked == {"_secrets": "***", "x": 1}
    assert counts == {"_secrets": 1}
    assert out is schema
    again, counts, _ = _mask(schema, masked, Policy.ARCHIVE)
    assert again == masked
    assert counts == {}  # already "***": nothing new replaced


CREDENTIALS = {
    "type": "record",
    "name": "Credentials",
    "fields": [{"name": "user", "type": "string"}, {"name": "pin", "type": "int"}],
}


def test_record_field_of_record_type_gets_a_derived_string_field() -> None:
    schema = _schema(
        [
            {"name": "_secrets", "type": CREDENTIALS, "doc": "raw"},
            {"name": "_masked", "type": ["null", "t.Credentials"], "default": None},
            {"name": "n", "type": "long"},
        ]
    )
    datum = {"_secrets": {"user": "u", "pin": 1}, "_masked": {"user": "m", "pin": 2}, "n": 5}
    public, counts, out = _mask(schema, datum, Policy.PUBLIC)
    assert public == {"_secrets": "***", "_masked": "***", "n": 5}
    assert counts == {"_secrets": 1, "_masked": 1}
    fields = {f["name"]: f for f in json.loads(out.text)["fields"]}
    assert fields["_secrets"]["type"] == "string"
    assert fields["_masked"]["type"] == "string"
    assert fields["_masked"]["default"] == "***"
    assert fields["n"]["type"] == "long"
    assert out.fingerprint != schema.fingerprint
    archive, counts, out = _mask(schema, datum, Policy.ARCHIVE)
    assert archive == {"_secrets": "***", "_masked": {"user": "m", "pin": 2}, "n": 5}
    fields = {f["name"]: f for f in json.loads(out.text)["fields"]}
    assert fields["_secrets"]["type"] == "string"
    # Kept, so its type stays; its definition moves here from the replaced _secrets field.
    assert fields["_masked"]["type"][0] == "null"
    assert fields["_masked"]["type"][1]["name"] == "t.Credentials"


def test_null_under_a_sensitive_record_field_is_replaced_and_counted() -> None:
    schema = _schema([{"name": "_secrets", "type": ["null", CREDENTIALS], "default": None}])
    masked, counts, out = _mask(schema, {"_secrets": None}, Policy.PUBLIC)
    assert masked == {"_secrets": "***"}
    assert counts == {"_secrets": 1}
    assert json.loads(out.text)["fields"][0]["type"] == "string"


def test_masked_record_keeps_its_type_but_loses_nested_secrets_in_the_archive() -> None:
    inner = {
        "type": "record",
        "name": "Kept",
        "fields": [
            {"name": "email", "type": "string"},
            {"name": "_secrets", "type": {"type": "map", "values": "string"}},
        ],
    }
    schema = _schema(
        [
            {
                "name": "outputData",
                "type": {
                    "type": "record",
                    "name": "Out",
                    "fields": [{"name": "_masked", "type": inner}],
                },
            }
        ]
    )
    datum = {"outputData": {"_masked": {"email": "a@example.com", "_secrets": {"pin": "0000"}}}}
    archive, counts, out = _mask(schema, datum, Policy.ARCHIVE)
    assert archive == {"outputData": {"_masked": {"email": "a@example.com", "_secrets": "***"}}}
    assert counts == {"_secrets": 1}
    assert out is not schema  # a map field named _secrets: "***" needs a string type
    public, counts, _ = _mask(schema, datum, Policy.PUBLIC)
    assert public == {"outputData": {"_masked": "***"}}
    assert counts == {"_masked": 1}


def test_map_entries_named_like_keys_are_replaced() -> None:
    strings = _schema([{"name": "inputData", "type": {"type": "map", "values": "string"}}])
    masked, counts, out = _mask(strings, {"inputData": {"_secrets": "s", "a": "b"}}, Policy.PUBLIC)
    assert masked == {"inputData": {"_secrets": "***", "a": "b"}}
    assert counts == {"_secrets": 1}
    assert out is strings


def test_map_values_get_a_string_branch_only_when_a_key_is_replaced() -> None:
    schema = _schema([{"name": "counters", "type": {"type": "map", "values": "long"}}])
    masked, counts, out = _mask(schema, {"counters": {"a": 1}}, Policy.PUBLIC)
    assert (masked, counts, out) == ({"counters": {"a": 1}}, {}, schema)
    masked, counts, out = _mask(schema, {"counters": {"_masked": 7, "a": 1}}, Policy.PUBLIC)
    assert masked == {"counters": {"_masked": "***", "a": 1}}
    assert counts == {"_masked": 1}
    assert json.loads(out.text)["fields"][0]["type"]["values"] == ["long", "string"]
    masked, _, out2 = _mask(schema, {"counters": {"_masked": 7}}, Policy.ARCHIVE)
    assert masked == {"counters": {"_masked": 7}}  # the archive keeps _masked values
    assert out2 is schema
    _, _, again = _mask(schema, {"counters": {"_masked": 8}}, Policy.PUBLIC)
    assert again is out  # derived once per shape, then reused


def test_arrays_unions_bytes_and_configured_keys() -> None:
    item = {
        "type": "record",
        "name": "Item",
        "fields": [
            {"name": "token", "type": ["null", "string", "long"]},
            {"name": "blob", "type": ["null", "bytes"], "default": None},
            {"name": "sku", "type": "string"},
        ],
    }
    schema = _schema([{"name": "items", "type": {"type": "array", "items": item}}])
    keys = KeyPolicy(frozenset({"_secrets", "token"}), frozenset({"_masked"}))
    blob = b'{"_secrets":{"k":"v"},"x":"\xe9"}'
    datum = {
        "items": [
            {"token": 42, "blob": blob, "sku": "A"},
            {"token": "t", "blob": None, "sku": '{"token":"x"}'},
        ]
    }
    masked, counts, out = _mask(schema, datum, Policy.PUBLIC, keys)
    assert masked["items"][0] == {
        "token": "***",
        "blob": b'{"_secrets":"***","x":"\xe9"}',
        "sku": "A",
    }
    assert masked["items"][1] == {"token": "***", "blob": None, "sku": '{"token":"***"}'}
    assert counts == {"token": 3, "_secrets": 1}
    assert out is schema  # token's union already holds a string


def test_unions_of_records_and_maps_are_walked_by_the_branch_decoded() -> None:
    step = {
        "type": "record",
        "name": "Step",
        "fields": [
            {"name": "_masked", "type": "string"},
            {"name": "next", "type": ["null", "Step"]},
        ],
    }
    other = {"type": "record", "name": "Other", "fields": [{"name": "_secrets", "type": "int"}]}
    choice = ["null", step, other, {"type": "map", "values": "string"}]
    again = ["null", "t.Step", "t.Other", {"type": "map", "values": "string"}]
    schema = _schema([{"name": "a", "type": choice}, {"name": "b", "type": again}])
    datum = {
        "a": {"_masked": "m1", "next": {"_masked": "m2", "next": None}},
        "b": {"_secrets": 5},
    }
    public, counts, out = _mask(schema, datum, Policy.PUBLIC)
    assert public == {
        "a": {"_masked": "***", "next": {"_masked": "***", "next": None}},
        "b": {"_secrets": "***"},
    }
    assert counts == {"_masked": 2, "_secrets": 1}
    assert out is not schema  # Other._secrets is an int: a string in the derived schema
    maps = {"a": {"_secrets": "x", "k": "v"}, "b": None}
    public, counts, out = _mask(schema, maps, Policy.ARCHIVE)
    assert public == {"a": {"_secrets": "***", "k": "v"}, "b": None}
    assert counts == {"_secrets": 1}


def test_avro_masking_agrees_with_the_reference_model() -> None:
    """Random nested maps and arrays: the Avro walk and the JSON reference model agree."""
    value: dict[str, Any] = {"type": "map", "values": ["null", "string", "long"]}
    nested: Any = value
    for _ in range(3):
        nested = {
            "type": "map",
            "values": ["null", "string", "long", {"type": "array", "items": nested}],
        }
    schema = _schema([{"name": "data", "type": nested}])
    rnd = random.Random(7)
    names = ["_secrets", "_masked", "a", "b", "_Secrets"]

    def build(depth: int) -> Any:
        if depth == 0:
            return rnd.choice([None, "v", 3])
        return {
            rnd.choice(names): [build(depth - 1) for _ in range(rnd.randrange(3))]
            if depth > 1
            else build(0)
            for _ in range(rnd.randrange(1, 4))
        }

    for _ in range(50):
        datum = {"data": build(4)}
        for policy in Policy:
            masked, _, _ = _mask(schema, datum, policy)
            assert masked == reference(datum, policy.value)


TRICKY_STRINGS = [
    "plain",
    '{"_secrets":{"k":"v"},"n":1}',
    '{"a":{"_masked":[1,2]},"b":"{\\"_secrets\\":\\"x\\"}"}',
    '{"\\u005fsecrets":"escaped name"}',
    "{orderId=1, _secrets={pin=0000}, _masked=m}",
    "${workflow.input._secrets.token}",
    "_masked=value, unparseable {",
    '["_secrets", {"_secrets": 1}]',
    "***",
]


def test_avro_json_copies_are_the_json_rules_on_the_rendered_event() -> None:
    """Random datums: the JSON copy of an Avro event (the walk, then JSON) is byte for byte
    what the masking core makes of the event rendered as JSON, with the same counts."""
    values: Any = ["null", "string", "long"]
    schema = _schema(
        [
            {
                "name": "data",
                "type": {"type": "map", "values": [*values, {"type": "array", "items": values}]},
            },
            {"name": "_masked", "type": ["null", "string"], "default": None},
            {"name": "text", "type": "string"},
        ]
    )
    rnd = random.Random(3)
    names = ["_secrets", "_masked", "a", "b", "secrets"]

    def leaf() -> Any:
        return rnd.choice([None, 7, *TRICKY_STRINGS])

    for _ in range(300):
        datum = {
            "data": {
                rnd.choice(names): [leaf() for _ in range(2)] if rnd.random() < 0.3 else leaf()
                for _ in range(rnd.randrange(4))
            },
            "_masked": rnd.choice([None, *TRICKY_STRINGS]),
            "text": rnd.choice(TRICKY_STRINGS),
        }
        value = avro.frame_single_object(schema, datum)
        expected = _masked(avro.to_json(datum))
        route = _route(raw_format="avro")
        _install(schema)
        routed = _routed(value, route)
        assert (routed.public, routed.archive) == (expected.public, expected.archive)
        assert routed.redactions == {p: dict(expected.redactions.get(p, {})) for p in Policy}


def _install(schema: AvroSchema) -> None:
    """Let the single-object store (shared by routes without a registry) know ``schema``."""
    store = avro.store_for("")
    assert isinstance(store, SingleObjectStore)
    store.learn(schema)


# -- derived schemas with a registry and in single-object mode ---------------------------------


def _secret_record_event() -> tuple[AvroSchema, dict[str, Any]]:
    schema = _schema(
        [
            {"name": "workflowId", "type": "string"},
            {"name": "_secrets", "type": CREDENTIALS},
            {"name": "status", "type": "string"},
        ],
        name="TypedEvent",
    )
    return schema, {"workflowId": "w-1", "_secrets": {"user": "u", "pin": 1234}, "status": "DONE"}


def _registry(name: str) -> RegistryStore:
    """The store (and in-memory registry) a route with ``mock://<name>`` uses: shared, since
    stores are cached per URL."""
    store = avro.store_for(f"mock://{name}")
    assert isinstance(store, RegistryStore)
    return store


def test_derived_schema_is_registered_as_a_new_version() -> None:
    schema, datum = _secret_record_event()
    store = _registry("derived")
    raw_id = store.client.register_schema("c.public-value", Schema(schema.text, "AVRO"))
    value = avro.frame_confluent(raw_id, schema, datum)
    route = _route(
        raw_format="avro",
        public_format="avro-event",
        archive_format="avro-event",
        schema_registry_url="mock://derived",
    )
    routed = _routed(value, route)
    assert sorted(store.client.get_versions("c.public-value")) == [1, 2]
    assert routed.public is not None
    public_id = int.from_bytes(routed.public[1:5], "big")
    assert public_id != raw_id
    derived = AvroSchema.of(store.client.get_schema(public_id).schema_str)
    assert json.loads(derived.text)["fields"][1]["type"] == "string"
    masked = {"workflowId": "w-1", "_secrets": "***", "status": "DONE"}
    assert _read(derived, routed.public, 5) == masked
    assert routed.redactions[Policy.PUBLIC] == {"_secrets": 1}
    again = _routed(value, route)  # registered once: the id is cached, no third version
    assert again.public == routed.public
    assert sorted(store.client.get_versions("c.public-value")) == [1, 2]


def test_derived_schema_in_single_object_mode_has_its_own_fingerprint() -> None:
    schema, datum = _secret_record_event()
    store = SingleObjectStore([schema])
    value = avro.frame_single_object(schema, datum)
    found = store.writer(value)
    assert not isinstance(found, Rejected)
    masked, counts, derived = avro.mask_datum(schema, datum, DEFAULT_KEYS, Policy.ARCHIVE)
    header = store.header(derived, "c.archive")
    assert (
        header
        == avro.SINGLE_OBJECT_MARKER + derived.fingerprint
        != avro.SINGLE_OBJECT_MARKER + schema.fingerprint
    )
    out = header + avro.encode(derived, masked)
    found = store.writer(out)  # the store learnt the derived schema when it wrote it
    assert not isinstance(found, Rejected)
    assert avro.decode(found[0], out, found[1]) == {
        "workflowId": "w-1",
        "_secrets": "***",
        "status": "DONE",
    }
    assert counts == {"_secrets": 1}


MockRegistry = type(SchemaRegistryClient.new_client({"url": "mock://type"}))


class RefusingRegistry(MockRegistry):  # type: ignore[misc,valid-type]
    """A registry whose compatibility check refuses every new schema."""

    def register_schema(
        self, subject_name: str, schema: Schema, normalize_schemas: bool = False
    ) -> int:
        raise SchemaRegistryError(409, 409, "Schema being registered is incompatible")


def test_incompatible_output_schema_is_quarantined() -> None:
    store = RegistryStore(RefusingRegistry({"url": "mock://refuse"}))
    header = store.header(avro.bundled(avro.ARCHIVE_RECORD), "c.archive")
    assert isinstance(header, Rejected)
    assert header.reason is Reason.SCHEMA_INCOMPATIBLE
    assert "c.archive-value" in header.detail


# -- quarantine: corrupt, unknown schema --------------------------------------------------------


def _event_value() -> bytes:
    schema = avro.bundled(avro.CONDUCTOR_EVENT)
    event = json.loads((CONDUCTOR / "02_task_execution.json").read_text())
    return avro.frame_single_object(schema, avro.conductor_event(event, "task"))


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda v: v[:-7], Reason.AVRO_DECODE),  # truncated
        (lambda v: v + b"\x00\x00", Reason.AVRO_DECODE),  # bytes left over
        (lambda v: v[:10] + b"\x02\x00" + v[12:], Reason.AVRO_DECODE),  # string length off
        (lambda v: b"\x00\x00\x00\x00\x01" + v[10:], Reason.AVRO_DECODE),  # Confluent framing
        (lambda v: json.dumps({"a": 1}).encode(), Reason.AVRO_DECODE),  # JSON, not Avro
        (lambda v: v[:2], Reason.AVRO_DECODE),  # marker only
        (lambda v: v[:2] + bytes(8) + v[10:], Reason.UNKNOWN_SCHEMA),  # unknown fingerprint
    ],
    ids=["truncated", "trailing", "bad-length", "confluent", "json", "marker-only", "unknown-fp"],
)
def test_corrupt_or_unknown_records_are_rejected(mangle: Any, reason: Reason) -> None:
    result = process(mangle(_event_value()), DEFAULT_KEYS, _route(raw_format="avro"), Source())
    assert isinstance(result, Rejected)
    assert result.reason is reason


def test_invalid_utf8_in_a_string_is_rejected_without_payload_in_the_detail() -> None:
    schema = _schema([{"name": "s", "type": "string"}])
    value = avro.SINGLE_OBJECT_MARKER + schema.fingerprint + b"\x06a\xffb"
    result = process(value, DEFAULT_KEYS, _route(raw_format="avro"), Source())
    assert isinstance(result, Rejected)
    assert result.reason is Reason.UNKNOWN_SCHEMA  # not one of schemas/
    store = SingleObjectStore([schema])
    found = store.writer(value)
    assert not isinstance(found, Rejected)
    decoded = avro.decode(found[0], value, found[1])
    assert isinstance(decoded, Rejected)
    assert decoded.reason is Reason.AVRO_DECODE
    assert decoded.detail.startswith("UnicodeDecodeError near byte ")
    assert "\\x" not in decoded.detail


@pytest.mark.parametrize(
    "items",
    [
        "null",
        {"type": "record", "name": "Empty", "fields": []},
        {"type": "fixed", "name": "F", "size": 0},
    ],
    ids=["null", "empty-record", "empty-fixed"],
)
def test_arrays_of_zero_size_items_are_refused(items: Any) -> None:
    """Ten bytes could declare 10^18 nulls: such writer schemas are not decoded at all."""
    schema = _schema([{"name": "a", "type": ["null", {"type": "array", "items": items}]}])
    assert schema.unbounded
    result = avro.decode(schema, b"\x02\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00")
    assert isinstance(result, Rejected)
    assert result.reason is Reason.AVRO_DECODE
    bounded = _schema([{"name": "a", "type": {"type": "array", "items": ["null", "int"]}}])
    assert not bounded.unbounded
    assert not any(avro.bundled(n).unbounded for n in avro.bundled_names())


def test_random_bytes_after_a_known_header_never_raise() -> None:
    """Fuzz: corrupt bodies are rejected with a reason or decode to some datum; never raise."""
    value = _event_value()
    rnd = random.Random(11)
    route = _route(raw_format="avro", archive_format="avro")
    seen = set()
    for _ in range(2000):
        body = bytearray(value[10:])
        for _ in range(rnd.randrange(1, 6)):
            body[rnd.randrange(len(body))] = rnd.randrange(256)
        cut = rnd.choice([len(body), rnd.randrange(len(body) + 1)])
        result = process(value[:10] + bytes(body[:cut]), DEFAULT_KEYS, route, Source())
        seen.add(type(result).__name__ if isinstance(result, Routed) else result.reason.value)
    assert "avro_decode" in seen
    assert seen <= {"Routed", "avro_decode", "invalid_json", "not_utf8"}


def test_unknown_schema_id_and_non_avro_schemas_are_rejected() -> None:
    store = _registry("unknown")
    client = store.client
    unknown = store.writer(b"\x00\x00\x00\x03\xe7" + b"\x02")
    assert isinstance(unknown, Rejected)
    assert unknown.reason is Reason.UNKNOWN_SCHEMA
    assert unknown.detail == "schema id 999"
    assert isinstance(store.writer(b"\x00\x00\x00\x00\x01"), Rejected)
    late = Schema('{"type":"record","name":"L","fields":[]}', "AVRO")
    assert client.register_schema("late-value", late) == 1
    assert not isinstance(store.writer(b"\x00\x00\x00\x00\x01"), Rejected), "asked again"
    json_id = client.register_schema("x-value", Schema('{"type":"object"}', "JSON"))
    refused = store.writer(b"\x00" + json_id.to_bytes(4, "big") + b"{}")
    assert isinstance(refused, Rejected)
    assert refused.reason is Reason.UNKNOWN_SCHEMA
    string_id = client.register_schema("y-value", Schema('"string"', "AVRO"))
    route = _route(raw_format="avro", schema_registry_url="mock://unknown")
    value = b"\x00" + string_id.to_bytes(4, "big") + b"\x02a"
    result = process(value, DEFAULT_KEYS, route, Source())
    assert isinstance(result, Rejected)
    assert result.reason is Reason.NOT_OBJECT


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_registry_fails_the_batch_instead_of_quarantining() -> None:
    conf = {"url": f"http://127.0.0.1:{_closed_port()}", "max.retries": 0}
    with SchemaRegistryClient(conf) as client:
        store = RegistryStore(client)
        with pytest.raises(RegistryUnavailable) as caught:
            store.writer(b"\x00\x00\x00\x00\x01\x02")
        assert isinstance(caught.value, KafkaException)
        assert not caught.value.args[0].fatal()
        with pytest.raises(RegistryUnavailable):
            store.header(avro.bundled(avro.ARCHIVE_RECORD), "c.archive")


def test_content_types_of_the_copies() -> None:
    route = _route(raw_format="avro", archive_format="avro")
    assert content_type(route, Policy.PUBLIC) == "application/json"
    assert content_type(route, Policy.ARCHIVE) == "avro/binary"
    registry = _route(archive_format="avro", schema_registry_url="mock://ct")
    assert content_type(registry, Policy.ARCHIVE) == "application/vnd.confluent.avro"
    assert content_type(None, Policy.ARCHIVE) == "application/json"
    raw = [(HEADER_CONTENT_TYPE, b"spoofed"), ("trace", b"t")]
    headers = output_headers(
        raw, Policy.ARCHIVE, 0, DEFAULT_KEYS, content_type(route, Policy.ARCHIVE)
    )
    assert [h for h in headers if h[0] == HEADER_CONTENT_TYPE] == [
        (HEADER_CONTENT_TYPE, b"avro/binary")
    ]
    assert HEADER_CONTENT_TYPE not in dict(output_headers(raw, Policy.PUBLIC, 0, DEFAULT_KEYS))


def test_tombstones_stay_tombstones() -> None:
    result = process(None, DEFAULT_KEYS, _route(raw_format="avro", archive_format="avro"), Source())
    assert isinstance(result, Routed)
    assert result.public is None
    assert result.archive is None


# -- schema evolution --------------------------------------------------------------------------


def _archive_datum(version: int) -> dict[str, Any]:
    raw = (CONDUCTOR / "02_task_execution.json").read_bytes()
    record = avro.typed_record(
        _masked(raw).archive, avro.Source("c.raw", 0, 7, 1767229209100), {"_secrets": 3}
    )
    if version == 1:
        for added in ("taskId", "taskType", "correlationId"):
            del record[added]
    return record


def test_evolution_backward_a_v2_reader_reads_v1_records() -> None:
    v1, v2 = avro.bundled(avro.ARCHIVE_RECORD_V1), avro.bundled(avro.ARCHIVE_RECORD)
    framed = avro.frame_single_object(v1, _archive_datum(1))
    found = SingleObjectStore().writer(framed)  # the v1 fingerprint is known
    assert not isinstance(found, Rejected)
    assert found[0].fingerprint == v1.fingerprint
    read = _resolve(framed[10:], v1.parsed, v2.parsed)
    assert read["taskId"] is read["taskType"] is read["correlationId"] is None
    assert read["workflowId"] == "9a1d7c3b-8e2f-4b6a-a5c4-3f1e0d9b8a72"


def test_evolution_forward_a_v1_reader_reads_v2_records() -> None:
    v1, v2 = avro.bundled(avro.ARCHIVE_RECORD_V1), avro.bundled(avro.ARCHIVE_RECORD)
    body = avro.encode(v2, _archive_datum(2))
    read = _resolve(body, v2.parsed, v1.parsed)
    assert "taskId" not in read
    assert read["event"] == _archive_datum(1)["event"]
    assert read["redactions"] == {"_secrets": 3}


ORKES_MINIMAL = {
    "name": "ConductorEvent",
    "type": "record",
    "fields": [
        {"name": "_schema", "type": "string"},
        {"name": "workflowType", "type": "string"},
        {"name": "eventType", "type": "string"},
        {"name": "workflowInstanceId", "type": "string"},
        {"name": "sink", "type": "string"},
        {"name": "taskId", "type": "string", "default": ""},
        {"name": "workflow", "type": "string", "default": ""},
        {"name": "task", "type": "string", "default": ""},
    ],
}


def test_conductor_event_reads_orkes_minimal_schema_and_back_when_set() -> None:
    orkes, ours = AvroSchema.of(ORKES_MINIMAL), avro.bundled(avro.CONDUCTOR_EVENT)
    datum = avro.conductor_event({"workflowId": "w", "status": "RUNNING"})
    written = {**datum, "taskId": "", "task": ""}
    assert _resolve(avro.encode(orkes, written), orkes.parsed, ours.parsed) == written
    full = {**datum, "taskId": "t", "task": "{}"}
    assert _resolve(avro.encode(ours, full), ours.parsed, orkes.parsed) == full
    with pytest.raises(SchemaResolutionError):  # null has no string form: documented
        _resolve(avro.encode(ours, datum), ours.parsed, orkes.parsed)


def test_orkes_minimal_schema_events_are_masked() -> None:
    orkes = AvroSchema.of(ORKES_MINIMAL)
    event = json.loads((CONDUCTOR / "01_workflow_execution_full.json").read_text())
    datum = {**avro.conductor_event(event), "taskId": "", "task": ""}
    schema_id = _registry("orkes").client.register_schema("cdc-value", Schema(orkes.text, "AVRO"))
    route = _route(
        raw_format="avro",
        public_format="avro-event",
        archive_format="avro",
        schema_registry_url="mock://orkes",
    )
    routed = _routed(avro.frame_confluent(schema_id, orkes, datum), route)
    assert routed.public is not None
    public = _read(orkes, routed.public, 5)
    assert "tok-" not in public["workflow"]
    assert json.loads(public["workflow"]) == json.loads(_masked(datum["workflow"].encode()).public)
    assert routed.redactions[Policy.PUBLIC] == {"_secrets": 14, "_masked": 15}


# -- JSON rendering, timestamps, settings ------------------------------------------------------


def test_to_json_renders_every_avro_value() -> None:
    datum = {
        "b": b"\x00\xff",
        "t": datetime(2026, 1, 1, tzinfo=UTC),
        "u": UUID(int=1),
        "d": Decimal("1.10"),
        "f": math.inf,
        "n": math.nan,
        "l": [1.5, -math.inf],
    }
    assert json.loads(avro.to_json(datum)) == {
        "b": "\u0000\u00ff",
        "t": "2026-01-01T00:00:00+00:00",
        "u": "00000000-0000-0000-0000-000000000001",
        "d": "1.10",
        "f": "Infinity",
        "n": "NaN",
        "l": [1.5, "-Infinity"],
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1767225600000, 1767225600000),
        ("2026-01-01T00:00:02.015Z", 1767225602015),
        ("2026-01-01T00:00:02", 1767225602000),
        (0, None),
        (-5, None),
        (10**17, None),
        ("not a time", None),
        (True, None),
    ],
)
def test_millis(value: Any, expected: int | None) -> None:
    assert avro.millis(value) == expected


def test_typed_record_facts_from_every_shape() -> None:
    def facts(name: str) -> dict[str, Any]:
        raw = (CONDUCTOR / name).read_bytes()
        return avro.typed_record(_masked(raw).archive, avro.Source("t", 0, 0), {})

    workflow = facts("01_workflow_execution_full.json")
    assert workflow["workflowName"] == "order_checkout"
    assert workflow["workflowVersion"] == 3
    assert workflow["startTime"] == 1767225600000
    summary = facts("03_workflow_summary.json")
    assert summary["workflowName"] == "order_checkout"
    assert summary["workflowVersion"] == 3
    assert summary["endTime"] == 1767225602015
    status_event = facts("07_kafka_workflow_status_event.json")
    assert status_event["eventType"] == "completed"
    assert status_event["workflowId"] == "7f3c2a9e-5b1d-4e8a-9c6f-2d4b8e1a0c37"
    assert status_event["status"] == "COMPLETED"
    big = avro.typed_record(
        b'{"workflowVersion": 99999999999, "n": 1e400, "status": ""}', avro.Source("t", 0, 0), {}
    )
    assert big["workflowVersion"] is None
    assert big["status"] is None


def test_route_formats_in_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    routes = [
        {
            "name": "cdc",
            "raw": "cdc.raw",
            "public": "cdc.public",
            "archive": "cdc.archive",
            "raw_format": "avro",
            "archive_format": "avro",
            "schema_registry_url": "http://127.0.0.1:8081",
            "subject_name_strategy": "record-name",
        }
    ]
    default = load_settings().routes[0]
    assert (default.raw_format, default.public_format, default.archive_format) == ("json",) * 3
    assert not default.uses_avro
    assert default.schema_registry_url == ""
    monkeypatch.setenv("STREAMER_ROUTES", json.dumps(routes))
    route = load_settings().routes[0]
    assert (route.raw_format, route.public_format, route.archive_format) == ("avro", "json", "avro")
    assert route.subject_name_strategy == "record-name"
    assert route.uses_avro


@pytest.mark.parametrize(
    "change",
    [
        {"public_format": "avro-event"},
        {"raw_format": "xml"},
        {"schema_registry_url": "ftp://user:pw@registry"},
        {"subject_name_strategy": "topic"},
    ],
)
def test_bad_route_formats_are_refused(
    change: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    route = {"name": "c", "raw": "c.raw", "public": "c.public", "archive": "c.archive", **change}
    monkeypatch.setenv("STREAMER_ROUTES", json.dumps([route]))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "routes.0" in message
    assert "pw@registry" not in message  # a setting's value is never shown


@pytest.fixture(autouse=True)
def _fresh_routes() -> Iterator[None]:
    """Routes and stores are cached per process; tests that swap a store must not leak it."""
    from streamer import pipeline

    pipeline._avro_route.cache_clear()
    yield
    pipeline._avro_route.cache_clear()
