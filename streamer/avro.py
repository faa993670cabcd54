"""Avro with fastavro: the schemas of ``schemas/``, two framings, masking inside Avro data, and
the typed public/archive records. Pure apart from the Schema Registry client (HTTP); no Kafka
consumer or producer here.

Framings:

* **Confluent Schema Registry**: magic byte ``0``, the 4-byte big-endian schema id, the Avro
  body. Writer schemas are looked up by id; output schemas are registered under a subject named
  by the route's strategy (``topic-name``, ``record-name``, ``topic-record-name``).
* **Avro single-object encoding** (no registry configured): ``C3 01``, the 8-byte
  little-endian CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, the
  Avro body. Writer schemas are the ones of ``schemas/`` (and the derived schemas written by
  this process).

Masking inside an Avro datum follows the JSON rules: a record field or map entry named like a
sensitive key gets ``"***"``, and every string is masked as text by the masking core (JSON
text inside it by the JSON rules, Java map text by its own, unparseable text that uses a name as
a key as a whole). Where ``"***"`` does not fit a field's type, the output is written with a
*derived* schema in which that field is a string.
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cache, cached_property, lru_cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import fastavro
import simdjson
from confluent_kafka import KafkaError, KafkaException
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streamer.masking import Reason, Rejected, mask_bytes, validate
from streamer.policy import POLICY_VERSION, REDACTED, KeyPolicy, Policy

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

#: The schemas of ``schemas/`` by file stem.
CONDUCTOR_EVENT = "conductor-event"
ARCHIVE_RECORD = "archive-record"
ARCHIVE_RECORD_V1 = "archive-record.v1"
PUBLIC_RECORD = "public-record"

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = 0
_SINGLE_OBJECT_HEADER = len(SINGLE_OBJECT_MARKER) + 8
_CONFLUENT_HEADER = 5

#: Content types of the three encodings (for headers and docs).
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CONFLUENT = "application/vnd.confluent.avro"
CONTENT_TYPE_SINGLE_OBJECT = "avro/binary"  # single-object encoding, as the Avro spec calls it

#: Epoch milliseconds that every Avro reader can turn into a datetime (years 1970-9999).
_MAX_MILLIS = 253_402_300_799_999
_INT32 = 2**31


class RegistryUnavailable(KafkaException):
    """The Schema Registry cannot answer (network, 5xx, authorisation). Not the record's fault:
    the runner aborts the batch and redoes it, as for any retriable Kafka error."""

    @classmethod
    def because(cls, what: str) -> RegistryUnavailable:
        return cls(KafkaError(KafkaError._TRANSPORT, f"schema registry: {what}"))


# -- schemas ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AvroSchema:
    """One schema, parsed once and fingerprinted once. Compared by identity: every schema is
    made once by the store that knows it."""

    text: str
    parsed: Any

    @classmethod
    def of(cls, schema: Any) -> AvroSchema:
        """From JSON text or its loaded form. Raises on an invalid schema."""
        obj = json.loads(schema) if isinstance(schema, str) else schema
        parsed = fastavro.parse_schema(obj)
        text = schema if isinstance(schema, str) else json.dumps(obj, separators=(",", ":"))
        return cls(text, parsed)

    @cached_property
    def canonical(self) -> str:
        """The Parsing Canonical Form (what fingerprints and compatibility are about)."""
        return str(to_parsing_canonical_form(self.parsed))

    @cached_property
    def fingerprint(self) -> bytes:
        """CRC-64-AVRO of the canonical form, 8 bytes little-endian (fastavro's hex is that
        byte order already)."""
        return bytes.fromhex(fingerprint(self.canonical, "CRC-64-AVRO"))

    @property
    def fullname(self) -> str | None:
        """The record's full name, or ``None`` for a schema that is not a named type."""
        if isinstance(self.parsed, dict) and isinstance(self.parsed.get("name"), str):
            return str(self.parsed["name"])
        return None

    @property
    def is_record(self) -> bool:
        return isinstance(self.parsed, dict) and self.parsed.get("type") in ("record", "error")

    @cached_property
    def named(self) -> Mapping[str, Any]:
        if isinstance(self.parsed, dict):
            return dict(self.parsed.get("__named_schemas", {}))
        return {}

    @cached_property
    def unbounded(self) -> bool:
        """Whether an array's items can take zero bytes (null, empty records): then a few bytes
        can declare billions of items, which fastavro would build one by one."""
        named = self.named

        def zero(node: Any, seen: frozenset[str]) -> bool:
            if isinstance(node, str):
                if node == "null":
                    return True
                if node in named and node not in seen:
                    return zero(named[node], seen | {node})
                return False
            if isinstance(node, dict):
                kind = node.get("type")
                if kind in ("record", "error"):
                    return all(zero(f["type"], seen) for f in node["fields"])
                if kind == "fixed":
                    return node.get("size") == 0
                return kind == "null"
            return False

        found = False

        def walk(node: Any, seen: frozenset[str]) -> None:
            nonlocal found
            if found:
                return
            if isinstance(node, str) and node in named and node not in seen:
                walk(named[node], seen | {node})
            elif isinstance(node, list):
                for branch in node:
                    walk(branch, seen)
            elif isinstance(node, dict):
                kind = node.get("type")
                if kind == "array":
                    found = zero(node["items"], frozenset())
                    walk(node["items"], seen)
                elif kind == "map":
                    walk(node["values"], seen)
                elif kind in ("record", "error"):
                    for field in node["fields"]:
                        walk(field["type"], seen)

        walk(self.parsed, frozenset())
        return found


@cache
def bundled(name: str) -> AvroSchema:
    """A schema of ``schemas/`` by file stem (``archive-record``, ``archive-record.v1``, ...),
    read from the installed package and parsed once."""
    resource = files("streamer.schemas").joinpath(f"{name}.avsc")
    return AvroSchema.of(resource.read_text(encoding="utf-8"))


@cache
def bundled_names() -> tuple[str, ...]:
    """Every schema of ``schemas/``, by file stem."""
    names = (p.name for p in files("streamer.schemas").iterdir())
    return tuple(sorted(n.removesuffix(".avsc") for n in names if n.endswith(".avsc")))


def output_record_schema(policy: Policy) -> AvroSchema:
    """The typed record written for a copy in the ``avro`` format."""
    return bundled(PUBLIC_RECORD if policy is Policy.PUBLIC else ARCHIVE_RECORD)


# -- framing ---------------------------------------------------------------------------------


class SchemaStore(Protocol):
    """Where writer schemas come from and output schemas go: one per framing."""

    def writer(self, value: bytes) -> tuple[AvroSchema, int] | Rejected:
        """The writer schema named by ``value``'s header, and where the body starts."""

    def header(self, schema: AvroSchema, topic: str) -> bytes | Rejected:
        """The header announcing ``schema`` for a value written to ``topic``."""


class SingleObjectStore:
    """Avro single-object encoding; writer schemas are looked up by fingerprint among the
    schemas of ``schemas/`` and those this process wrote (derived schemas)."""

    def __init__(self, schemas: Iterable[AvroSchema] | None = None) -> None:
        known = schemas if schemas is not None else (bundled(n) for n in bundled_names())
        self._by_fingerprint: dict[bytes, AvroSchema] = {}
        for schema in known:
            self.learn(schema)

    def learn(self, schema: AvroSchema) -> AvroSchema:
        """Remember ``schema`` (the first one of a fingerprint wins) and return the one kept."""
        return self._by_fingerprint.setdefault(schema.fingerprint, schema)

    def writer(self, value: bytes) -> tuple[AvroSchema, int] | Rejected:
        if len(value) < _SINGLE_OBJECT_HEADER or not value.startswith(SINGLE_OBJECT_MARKER):
            return Rejected(Reason.AVRO_DECODE, "no Avro single-object marker (C3 01)")
        fp = value[2:_SINGLE_OBJECT_HEADER]
        schema = self._by_fingerprint.get(fp)
        if schema is None:
            return Rejected(Reason.UNKNOWN_SCHEMA, f"fingerprint {fp.hex()}")
        return schema, _SINGLE_OBJECT_HEADER

    def header(self, schema: AvroSchema, topic: str) -> bytes:
        self.learn(schema)
        return SINGLE_OBJECT_MARKER + schema.fingerprint


def subject_name(strategy: str, topic: str, schema: AvroSchema) -> str:
    """Confluent's subject name strategies for a record value."""
    if strategy == "topic-name":
        return f"{topic}-value"
    name = schema.fullname or "unnamed"
    if strategy == "record-name":
        return name
    if strategy == "topic-record-name":
        return f"{topic}-{name}"
    raise ValueError(f"unknown subject name strategy {strategy!r}")


class RegistryStore:
    """Confluent framing with a Confluent-compatible Schema Registry: writer schemas by id,
    output schemas registered (idempotently) under the strategy's subject."""

    def __init__(self, client: SchemaRegistryClient, strategy: str = "topic-name") -> None:
        subject_name(strategy, "t", bundled(PUBLIC_RECORD))  # refuse an unknown strategy now
        self.client = client
        self.strategy = strategy
        self._by_id: dict[int, AvroSchema | Rejected] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def writer(self, value: bytes) -> tuple[AvroSchema, int] | Rejected:
        if len(value) < _CONFLUENT_HEADER or value[0] != CONFLUENT_MAGIC:
            return Rejected(Reason.AVRO_DECODE, "no Confluent magic byte 0 and schema id")
        schema_id = int.from_bytes(value[1:_CONFLUENT_HEADER], "big")
        found = self._by_id.get(schema_id)
        if found is None:
            found, lasting = self._fetch(schema_id)
            if lasting:  # an id unknown now may be known later; what an id names never changes
                self._by_id[schema_id] = found
        if isinstance(found, Rejected):
            return found
        return found, _CONFLUENT_HEADER

    def _fetch(self, schema_id: int) -> tuple[AvroSchema | Rejected, bool]:
        """The schema of an id, and whether that answer may be cached."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            registered = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return Rejected(Reason.UNKNOWN_SCHEMA, f"schema id {schema_id}"), False
            raise RegistryUnavailable.because(f"HTTP {exc.http_status_code}") from None
        except Exception as exc:  # httpx transport errors, timeouts: retried by the client
            raise RegistryUnavailable.because(type(exc).__name__) from None
        kind = (registered.schema_type or "AVRO").upper()
        if kind != "AVRO":
            detail = f"schema id {schema_id} is {kind}, not Avro"
            return Rejected(Reason.UNKNOWN_SCHEMA, detail), True
        if registered.references:
            detail = f"schema id {schema_id} uses references"
            return Rejected(Reason.UNKNOWN_SCHEMA, detail), True
        try:
            return AvroSchema.of(registered.schema_str), True
        except Exception:
            return Rejected(Reason.UNKNOWN_SCHEMA, f"schema id {schema_id} does not parse"), True

    def header(self, schema: AvroSchema, topic: str) -> bytes | Rejected:
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        subject = subject_name(self.strategy, topic, schema)
        key = (subject, schema.text)
        schema_id = self._ids.get(key)
        if schema_id is None:
            try:
                schema_id = self.client.register_schema(subject, Schema(schema.text, "AVRO"))
            except SchemaRegistryError as exc:
                if exc.http_status_code in (409, 422):
                    return Rejected(
                        Reason.SCHEMA_INCOMPATIBLE,
                        f"subject {subject}: HTTP {exc.http_status_code}, code {exc.error_code}",
                    )
                raise RegistryUnavailable.because(f"HTTP {exc.http_status_code}") from None
            except Exception as exc:
                raise RegistryUnavailable.because(type(exc).__name__) from None
            self._ids[key] = schema_id
            self._by_id.setdefault(schema_id, schema)
        return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")


def store_for(registry_url: str, strategy: str = "topic-name") -> SchemaStore:
    """One store per registry (and strategy); the single-object store when ``registry_url``
    is empty. Cached, so schemas are fetched and parsed once per process."""
    return _store_for(registry_url, strategy)


@lru_cache(maxsize=64)
def _store_for(registry_url: str, strategy: str) -> SchemaStore:
    if not registry_url:
        return SingleObjectStore()
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return RegistryStore(SchemaRegistryClient.new_client({"url": registry_url}), strategy)


# -- bytes <-> datum -------------------------------------------------------------------------


def decode(schema: AvroSchema, value: bytes, start: int = 0) -> Any:
    """The datum in ``value[start:]``, written with ``schema``; ``Rejected`` (positions only,
    never payload) when it does not decode or leaves bytes over."""
    if schema.unbounded:
        return Rejected(Reason.AVRO_DECODE, "the writer schema has arrays of zero-size items")
    buffer = io.BytesIO(value)
    buffer.seek(start)
    try:
        datum = fastavro.schemaless_reader(buffer, schema.parsed, None)
    except Exception as exc:  # fastavro raises many types on corrupt input
        return Rejected(Reason.AVRO_DECODE, f"{type(exc).__name__} near byte {buffer.tell()}")
    if buffer.tell() != len(value):
        return Rejected(
            Reason.AVRO_DECODE, f"{len(value) - buffer.tell()} bytes left after the datum"
        )
    return datum


def encode(schema: AvroSchema, datum: Any) -> bytes:
    """The Avro body of ``datum`` (no header)."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema.parsed, datum)
    return buffer.getvalue()


def frame_single_object(schema: AvroSchema, datum: Any) -> bytes:
    """``datum`` in Avro single-object encoding: the form producers use without a registry."""
    return SINGLE_OBJECT_MARKER + schema.fingerprint + encode(schema, datum)


def frame_confluent(schema_id: int, schema: AvroSchema, datum: Any) -> bytes:
    """``datum`` framed for a Confluent registry under ``schema_id``."""
    return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big") + encode(schema, datum)


def _json_default(value: Any) -> Any:
    """Avro values JSON has no type for: bytes and fixed as code points 0-255 (as Avro's own
    JSON encoding does), logical types as text."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not an Avro value")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_json(datum: Any) -> bytes:
    """A decoded Avro datum as compact JSON text (UTF-8): records and maps as objects, unions
    as their value, bytes as code points, logical types as text, NaN and infinities as text."""
    try:
        text = json.dumps(
            datum, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
        )
    except ValueError:
        text = json.dumps(
            _finite(datum), ensure_ascii=False, separators=(",", ":"), default=_json_default
        )
    return text.encode("utf-8")


# -- masking inside a datum ------------------------------------------------------------------


def _is_plain_string(node: Any) -> bool:
    return node == "string" or (
        isinstance(node, dict) and node.get("type") == "string" and "logicalType" not in node
    )


def _is_stringish(node: Any) -> bool:
    return node == "string" or (isinstance(node, dict) and node.get("type") == "string")


def holds_redacted(node: Any) -> bool:
    """Whether ``"***"`` is a valid value of this type: a plain string, or a union with one."""
    if isinstance(node, list):
        return any(_is_plain_string(branch) for branch in node)
    return _is_plain_string(node)


def _with_string(node: Any) -> Any:
    """A type that also holds ``"***"``: string branches with a logical type become plain."""
    branches = node if isinstance(node, list) else [node]
    out = ["string" if _is_stringish(b) else b for b in branches]
    if "string" not in out:
        out.append("string")
    return out if len(out) > 1 else out[0]


_NAMED = frozenset({"record", "error", "enum", "fixed"})


def _clean(node: dict[str, Any], drop: str = "") -> dict[str, Any]:
    return {k: v for k, v in node.items() if not k.startswith("__") and k != drop}


def derive_schema(
    schema: AvroSchema, replaced: frozenset[str], widened: frozenset[int] = frozenset()
) -> AvroSchema:
    """``schema`` with every record field named in ``replaced`` whose type cannot hold
    ``"***"`` turned into a string, and the maps in ``widened`` (ids of map nodes of
    ``schema.parsed`` that held a replaced key) given a string branch. ``schema`` itself when
    nothing changes."""
    changed = False
    defined: set[str] = set()

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, list):
            return [walk(branch) for branch in node]
        if isinstance(node, str):
            # A reference: its definition may have gone with a replaced field; then the first
            # reference left defines it.
            if node in schema.named and node not in defined:
                return walk(schema.named[node])
            return node
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        name = node.get("name")
        if kind in _NAMED and isinstance(name, str):
            if name in defined:
                return name
            defined.add(name)
        if kind in ("record", "error"):
            fields = []
            for field in node["fields"]:
                out = _clean(field)
                if field["name"] in replaced and not holds_redacted(field["type"]):
                    changed = True
                    out["type"] = "string"
                    out["doc"] = f"Replaced with {json.dumps(REDACTED)} by streamer."
                    if "default" in field:
                        out["default"] = REDACTED
                else:
                    out["type"] = walk(field["type"])
                fields.append(out)
            return {**_clean(node, "fields"), "fields": fields}
        if kind == "map":
            values = walk(node["values"])
            if id(node) in widened and not holds_redacted(values):
                changed = True
                values = _with_string(values)
            return {**_clean(node, "values"), "values": values}
        if kind == "array":
            return {**_clean(node, "items"), "items": walk(node["items"])}
        return _clean(node)

    derived = walk(schema.parsed)
    return AvroSchema.of(derived) if changed else schema


_Walk = Callable[[Any, dict[str, int], set[int]], Any]


class _Masker:
    """One policy over the data of one writer schema: the walk, compiled once from the schema
    into one function per type (``None`` where nothing can change), and its derived schemas."""

    def __init__(self, schema: AvroSchema, keys: KeyPolicy, policy: Policy) -> None:
        self.schema = schema
        self.keys = keys
        self.policy = policy
        self.replaced = keys.replaced_by(policy)
        self.named = schema.named
        self.static = derive_schema(schema, self.replaced)
        self._derived: dict[frozenset[int], AvroSchema] = {}
        self.sensitive_fields = _has_field_named(schema, keys.all_keys)
        self._cells: dict[str, list[_Walk | None]] = {}
        self._root = self._compile(schema.parsed)

    def mask(self, datum: Any, clean: bool) -> tuple[Any, dict[str, int], AvroSchema]:
        """The masked datum, the values replaced per key, and the schema to write it with."""
        if self._root is None or (clean and not self.sensitive_fields):
            return datum, {}, self.static
        counts: dict[str, int] = {}
        widened: set[int] = set()
        out = self._root(datum, counts, widened)
        if not widened:
            return out, counts, self.static
        key = frozenset(widened)
        schema = self._derived.get(key)
        if schema is None:
            schema = self._derived[key] = derive_schema(self.schema, self.replaced, key)
        return out, counts, schema

    # -- compiling the walk --------------------------------------------------------------

    def _resolve(self, node: Any) -> Any:
        return self.named.get(node, node) if isinstance(node, str) else node

    def _kind(self, node: Any) -> Any:
        node = self._resolve(node)
        return node.get("type") if isinstance(node, dict) else node

    def _compile(self, node: Any) -> _Walk | None:
        if isinstance(node, list):
            return self._union(node)
        if isinstance(node, str):
            if node == "string":
                return self._text
            if node == "bytes":
                return self._bytes
            return self._named(node) if node in self.named else None
        kind = node.get("type")
        if kind in _NAMED and node.get("name") in self.named:
            return self._named(node["name"])
        if kind == "map":
            return self._map(node)
        if kind == "array":
            return self._array(node)
        if kind == "string":
            return self._text
        if kind == "bytes":
            return self._bytes
        return None

    def _named(self, name: str) -> _Walk | None:
        """A named type, compiled once; a recursive reference calls it through a cell."""
        known = self._cells.get(name)
        if known is not None:
            return lambda datum, counts, widened: (
                datum if known[0] is None else known[0](datum, counts, widened)
            )
        cell: list[_Walk | None] = [None]
        self._cells[name] = cell
        node = self.named[name]
        cell[0] = self._record(node) if node.get("type") in ("record", "error") else None
        return cell[0]

    def _record(self, node: dict[str, Any]) -> _Walk | None:
        fields: list[tuple[str, _Walk | None]] = []
        for field in node["fields"]:
            name = field["name"]
            if name in self.replaced:
                fields.append((name, None))
            elif (walk := self._compile(field["type"])) is not None:
                fields.append((name, walk))
        if not fields:
            return None

        def record(datum: Any, counts: dict[str, int], widened: set[int]) -> Any:
            if not isinstance(datum, dict):
                return datum
            out = None
            for name, walk in fields:
                value = datum.get(name)
                if walk is None:  # named like a key this policy replaces
                    if value != REDACTED:
                        counts[name] = counts.get(name, 0) + 1
                    new: Any = REDACTED
                else:
                    new = walk(value, counts, widened)
                if new is not value:
                    if out is None:
                        out = dict(datum)
                    out[name] = new
            return datum if out is None else out

        return record

    def _map(self, node: dict[str, Any]) -> _Walk:
        walk = self._compile(node["values"])
        fits = holds_redacted(node["values"])
        node_id = id(node)
        replaced = self.replaced

        def map_(datum: Any, counts: dict[str, int], widened: set[int]) -> Any:
            if not isinstance(datum, dict):
                return datum
            out = None
            for key, value in datum.items():
                if key in replaced:
                    if value != REDACTED:
                        counts[key] = counts.get(key, 0) + 1
                    if not fits:
                        widened.add(node_id)
                    new: Any = REDACTED
                elif walk is None:
                    continue
                else:
                    new = walk(value, counts, widened)
                if new is not value:
                    if out is None:
                        out = dict(datum)
                    out[key] = new
            return datum if out is None else out

        return map_

    def _array(self, node: dict[str, Any]) -> _Walk | None:
        walk = self._compile(node["items"])
        if walk is None:
            return None

        def array(datum: Any, counts: dict[str, int], widened: set[int]) -> Any:
            if not isinstance(datum, list):
                return datum
            out = None
            for i, item in enumerate(datum):
                new = walk(item, counts, widened)
                if new is not item:
                    if out is None:
                        out = list(datum)
                    out[i] = new
            return datum if out is None else out

        return array

    def _union(self, union: list[Any]) -> _Walk | None:
        """Dispatch on the decoded value's Python type to the branch it came from."""
        kinds = [(self._kind(branch), branch) for branch in union]

        def first(*wanted: str) -> _Walk | None:
            return next((self._compile(b) for k, b in kinds if k in wanted), None)

        text, raw, items = first("string"), first("bytes"), first("array")
        records = [
            (frozenset(f["name"] for f in self._resolve(b)["fields"]), self._compile(b))
            for k, b in kinds
            if k in ("record", "error")
        ]
        maps = [self._compile(b) for k, b in kinds if k == "map"]
        objects = [w for _, w in records] + maps
        if text is raw is items is None and all(w is None for w in objects):
            return None

        def pick(datum: dict[str, Any]) -> _Walk | None:
            if len(objects) == 1:
                return objects[0]
            fields = datum.keys()
            for names, walk in records:
                if names == fields:
                    return walk
            return maps[0] if maps else (records[0][1] if records else None)

        def union_(datum: Any, counts: dict[str, int], widened: set[int]) -> Any:
            if isinstance(datum, str):
                walk = text
            elif isinstance(datum, dict):
                walk = pick(datum)
            elif isinstance(datum, list):
                walk = items
            elif isinstance(datum, bytes):
                walk = raw
            else:
                return datum
            return datum if walk is None else walk(datum, counts, widened)

        return union_

    # -- leaves --------------------------------------------------------------------------

    def _text(self, value: Any, counts: dict[str, int], widened: object = None) -> Any:
        """A string as the masking core treats a string value of a JSON event: JSON text by
        the JSON rules (and it stays JSON text), Java map text by its rules, text that uses a
        replaced name as a key but parses as neither replaced whole."""
        if not isinstance(value, str):
            return value
        data = value.encode("utf-8")
        if not self.keys.mentioned(data):
            return value
        if value.lstrip()[:1] == "{" and validate(data) is None:
            # The usual case (a workflow or task as JSON text), without quoting it first.
            masked, found = mask_bytes(data, self.keys, self.policy, 1)
            text = value if masked is data else masked.decode("utf-8")
        else:
            quoted = json.dumps(value, ensure_ascii=False).encode("utf-8")
            masked, found = mask_bytes(quoted, self.keys, self.policy)
            text = value if masked is quoted else json.loads(masked)
        for key, n in found.items():
            counts[key] = counts.get(key, 0) + n
        return text

    def _bytes(self, value: Any, counts: dict[str, int], widened: object = None) -> Any:
        """Bytes as text of code points 0-255 (byte-exact both ways), like the JSON output."""
        if not isinstance(value, bytes) or not self.keys.mentioned(value):
            return value
        text = self._text(value.decode("latin-1"), counts)
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            return REDACTED.encode()


def _has_field_named(schema: AvroSchema, names: frozenset[str]) -> bool:
    """Whether any record of ``schema`` has a field with one of ``names``."""
    found = False

    def walk(node: Any) -> None:
        nonlocal found
        if isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, dict):
            if node.get("type") in ("record", "error"):
                for field in node["fields"]:
                    found = found or field["name"] in names
                    walk(field["type"])
            walk(node.get("values"))
            walk(node.get("items"))

    walk(schema.parsed)
    return found


@lru_cache(maxsize=1024)
def masker(schema: AvroSchema, keys: KeyPolicy, policy: Policy) -> _Masker:
    """The masker of ``schema``'s data for one policy, built once."""
    return _Masker(schema, keys, policy)


def mask_datum(
    schema: AvroSchema, datum: Any, keys: KeyPolicy, policy: Policy, clean: bool = False
) -> tuple[Any, dict[str, int], AvroSchema]:
    """Apply ``policy`` to a datum decoded with ``schema``: the masked datum (``datum`` itself
    when nothing changed), the values replaced per key, and the schema to write it with
    (``schema``, or a derived one where ``"***"`` does not fit). ``clean`` tells that the
    datum's encoded bytes mention no sensitive name (``keys.mentioned``): then only fields
    named like a key can change, and a schema without such fields skips the walk."""
    return masker(schema, keys, policy).mask(datum, clean)


# -- typed public/archive records ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """Where a raw record was read: the identity an archive record carries."""

    topic: str
    partition: int
    offset: int
    timestamp: int = 0


class _Parsers(threading.local):
    def __init__(self) -> None:
        self.parser = simdjson.Parser()


_PARSERS = _Parsers()
_FACT_KEYS = (
    "eventType",
    "workflowId",
    "workflowInstanceId",
    "workflowName",
    "workflowType",
    "workflowVersion",
    "version",
    "taskId",
    "taskType",
    "correlationId",
    "status",
    "startTime",
    "createTime",
    "scheduledTime",
    "updateTime",
    "endTime",
)
_FACT_SET = frozenset(_FACT_KEYS)
_NESTED_OBJECT = ("payload",)
_NESTED_TEXT = ("workflow", "task")


def _bounded_int(text: str) -> int | None:
    return int(text) if len(text) <= 20 else None


_LENIENT = json.JSONDecoder(parse_int=_bounded_int, parse_constant=lambda _: None)


def _present(obj: Any) -> dict[str, Any]:
    """The scalar facts an object holds. Keys are listed first: looking up an absent key in a
    simdjson document costs far more than listing the keys."""
    keys = [k for k in obj.keys() if k in _FACT_SET]  # noqa: SIM118 - simdjson objects
    facts = {}
    for key in keys:
        value = obj[key]
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            facts[key] = value
    return facts


def _layer(data: bytes) -> tuple[dict[str, Any], list[Any]]:
    """The scalar facts of one JSON object, and the nested objects/texts that may hold more."""
    nested: list[Any] = []
    doc: Any
    try:
        doc = _PARSERS.parser.parse(data)
    except (ValueError, RuntimeError):
        try:
            doc = _LENIENT.decode(data.decode("utf-8"))
        except (ValueError, RecursionError):
            return {}, nested
    facts, nested = _of(doc)
    del doc
    return facts, nested


def _of(doc: Any) -> tuple[dict[str, Any], list[Any]]:
    """``_layer`` of a parsed object (a simdjson document, a dict, a decoded Avro record)."""
    nested: list[Any] = []
    if isinstance(doc, list) or not hasattr(doc, "keys"):
        return {}, nested
    facts = _present(doc)
    names = set(doc.keys())
    for key in _NESTED_OBJECT:
        value = doc[key] if key in names else None
        if value is not None and hasattr(value, "keys") and not isinstance(value, list):
            nested.append(_present(value))
    for key in _NESTED_TEXT:
        value = doc[key] if key in names else None
        if isinstance(value, str) and value.lstrip().startswith("{"):
            nested.append(value.encode("utf-8"))
    return facts, nested


def _facts(copy: bytes, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Scalar facts from the event's top level, then its ``payload`` object (Conductor's
    Kafka status events), then its ``workflow``/``task`` JSON text (Orkes CDC events).
    ``event``, the decoded form of ``copy`` when there is one, saves parsing ``copy``."""
    facts, nested = _layer(copy) if event is None else _of(event)
    for more in nested:
        inner = more if isinstance(more, dict) else _layer(more)[0]
        for key, value in inner.items():
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                facts.setdefault(key, value)
    return facts


def _text_fact(facts: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = facts.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _int_fact(facts: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = facts.get(name)
        if isinstance(value, int) and -_INT32 <= value < _INT32:
            return value
    return None


_ISO_Z = re.compile(r"Z$")


def millis(value: Any) -> int | None:
    """Epoch milliseconds from Conductor's epoch millis or ISO-8601 text; ``None`` for 0,
    negative, unparseable or out-of-range values."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(_ISO_Z.sub("+00:00", value.strip()))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = round(moment.timestamp() * 1000)
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_MILLIS:
        return value
    return None


def _time_fact(facts: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        found = millis(facts.get(name))
        if found is not None:
            return found
    return None


def typed_record(
    copy: bytes,
    source: Source,
    redactions: Mapping[str, int],
    event: Mapping[str, Any] | None = None,
    version: str = POLICY_VERSION,
) -> dict[str, Any]:
    """The ``streamer.PublicRecord``/``streamer.ArchiveRecord`` datum of one masked JSON copy
    (``event``: the same copy as a decoded Avro datum, when it is one). Every field comes from
    the masked copy, never from the raw event."""
    facts = _facts(copy, event)
    return {
        "sourceTopic": source.topic,
        "sourcePartition": source.partition,
        "sourceOffset": source.offset,
        "sourceTimestamp": millis(source.timestamp),
        "eventType": _text_fact(facts, "eventType"),
        "workflowId": _text_fact(facts, "workflowId", "workflowInstanceId"),
        "workflowName": _text_fact(facts, "workflowName", "workflowType"),
        "workflowVersion": _int_fact(facts, "workflowVersion", "version"),
        "taskId": _text_fact(facts, "taskId"),
        "taskType": _text_fact(facts, "taskType"),
        "correlationId": _text_fact(facts, "correlationId"),
        "status": _text_fact(facts, "status"),
        "startTime": _time_fact(facts, "startTime", "createTime", "scheduledTime"),
        "updateTime": _time_fact(facts, "updateTime"),
        "endTime": _time_fact(facts, "endTime"),
        "policyVersion": version,
        "redactions": dict(redactions),
        "event": copy.decode("utf-8"),
    }


def conductor_event(event: Mapping[str, Any], kind: str = "workflow") -> dict[str, Any]:
    """A ``ConductorEvent`` datum around one Workflow or Task execution (as Orkes' CDC sink
    writes it); for tests, demos and benchmarks."""
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    task = kind == "task"
    task_id = event.get("taskId") if task else None
    return {
        "_schema": "ConductorEvent",
        "workflowType": str(event.get("workflowType") or event.get("workflowName") or ""),
        "eventType": str(event.get("status") or "UPDATED"),
        "workflowInstanceId": str(event.get("workflowInstanceId") or event.get("workflowId") or ""),
        "sink": "kafka:conductor:conductor.cdc",
        "taskId": str(task_id) if task_id else None,
        "workflow": None if task else text,
        "task": text if task else None,
    }
