"""PURE: one raw record in, a routed result or a rejection out. Errors are data here; the Kafka
layer decides where each goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from streamer import avro
from streamer.masking import Masked, Reason, Rejected, mask_event
from streamer.policy import POLICY_VERSION, REDACTED, KeyPolicy, Policy
from streamer.settings import OutputFormat, RawFormat, Route

Headers = Sequence[tuple[str, bytes | None]]

HEADER_POLICY = "streamer-policy"
HEADER_POLICY_VERSION = "streamer-policy-version"
HEADER_REDACTIONS = "streamer-redactions"
HEADER_SOURCE_TOPIC = "streamer-source-topic"
HEADER_SOURCE_PARTITION = "streamer-source-partition"
HEADER_SOURCE_OFFSET = "streamer-source-offset"
HEADER_REASON = "streamer-reason"
HEADER_CONTENT_TYPE = "streamer-content-type"
_OURS = (
    HEADER_POLICY,
    HEADER_POLICY_VERSION,
    HEADER_REDACTIONS,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_REASON,
    HEADER_CONTENT_TYPE,
)


@dataclass(frozen=True, slots=True)
class Routed:
    """The two copies of one raw record (``None`` values are tombstones) and their redactions."""

    public: bytes | None
    archive: bytes | None
    redactions: Mapping[Policy, Mapping[str, int]]

    def count(self, policy: Policy) -> int:
        return sum(self.redactions.get(policy, {}).values())


TOMBSTONE = Routed(None, None, {})


class SourceRecord(Protocol):
    """Where a record was read (``streamer.record.Record`` is one): typed Avro records say it."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...


def process(
    value: bytes | None,
    keys: KeyPolicy,
    route: Route | None = None,
    source: SourceRecord | None = None,
) -> Routed | Rejected:
    """Apply both policies to one record value: a tombstone stays a tombstone.

    Without a ``route``, or on a JSON-only route, the value is a JSON event and both copies are
    JSON. Otherwise the route's formats apply (docs/avro.md): JSON or Avro in; JSON, a typed
    Avro record, or the masked Avro event out. ``source`` names the raw record in typed records.
    Raises :class:`streamer.avro.RegistryUnavailable`, a retriable ``KafkaException``, when the
    Schema Registry cannot answer: the batch is redone and nothing is quarantined for it."""
    if value is None:
        return TOMBSTONE
    if route is not None and route.uses_avro:
        return _avro_route(route, keys).process(value, source)
    result = mask_event(value, keys)
    if isinstance(result, Masked):
        return Routed(result.public, result.archive, result.redactions)
    return result


@lru_cache(maxsize=256)
def _avro_route(route: Route, keys: KeyPolicy) -> _AvroRoute:
    return _AvroRoute(route, keys)


class _AvroRoute:
    """One route with Avro on either side: its schema store (registry or single-object) and
    the formats of its copies. Schemas are parsed and cached by the store, once."""

    def __init__(self, route: Route, keys: KeyPolicy) -> None:
        self.route = route
        self.keys = keys
        self.store = avro.store_for(route.schema_registry_url, route.subject_name_strategy.value)
        self.outputs = (
            (Policy.PUBLIC, route.public_format, route.public),
            (Policy.ARCHIVE, route.archive_format, route.archive),
        )

    def process(self, value: bytes, record: SourceRecord | None) -> Routed | Rejected:
        if self.route.raw_format is RawFormat.JSON:
            return self._from_json(value, record)
        found = self.store.writer(value)
        if isinstance(found, Rejected):
            return found
        writer, start = found
        datum = avro.decode(writer, value, start)
        if isinstance(datum, Rejected):
            return datum
        if not writer.is_record:
            return Rejected(Reason.NOT_OBJECT, "the writer schema is not a record")
        body = value[start:]
        clean = not self.keys.mentioned(body)
        copies: dict[Policy, bytes] = {}
        redactions: dict[Policy, Mapping[str, int]] = {}
        rendered: list[tuple[object, bytes]] = []  # the same datum is rendered once
        for policy, fmt, topic in self.outputs:
            try:
                masked, counts, schema = avro.mask_datum(writer, datum, self.keys, policy, clean)
                if fmt is OutputFormat.AVRO_EVENT:
                    if masked is datum and schema is writer:
                        out: bytes | Rejected = self._framed(schema, topic, body)
                    else:
                        out = self._framed(schema, topic, _encode(schema, masked))
                else:
                    text = next((t for d, t in rendered if d is masked), None)
                    if text is None:
                        text = avro.to_json(masked)
                        rendered.append((masked, text))
                    out = self._copy(text, fmt, policy, topic, record, counts, masked)
            except RecursionError:
                return Rejected(Reason.TOO_DEEP)
            if isinstance(out, Rejected):
                return out
            copies[policy], redactions[policy] = out, counts
        return Routed(copies[Policy.PUBLIC], copies[Policy.ARCHIVE], redactions)

    def _from_json(self, value: bytes, record: SourceRecord | None) -> Routed | Rejected:
        masked = mask_event(value, self.keys)
        if isinstance(masked, Rejected):
            return masked
        copies: dict[Policy, bytes] = {}
        for policy, fmt, topic in self.outputs:
            copy = masked.public if policy is Policy.PUBLIC else masked.archive
            counts = masked.redactions.get(policy, {})
            out = self._copy(copy, fmt, policy, topic, record, counts)
            if isinstance(out, Rejected):
                return out
            copies[policy] = out
        return Routed(copies[Policy.PUBLIC], copies[Policy.ARCHIVE], masked.redactions)

    def _copy(
        self,
        copy: bytes,
        fmt: OutputFormat,
        policy: Policy,
        topic: str,
        record: SourceRecord | None,
        counts: Mapping[str, int],
        event: Mapping[str, object] | None = None,
    ) -> bytes | Rejected:
        """One masked JSON copy in its output format: as is, or in a typed Avro record."""
        if fmt is OutputFormat.JSON:
            return copy
        schema = avro.output_record_schema(policy)
        source = (
            avro.Source(self.route.raw, 0, 0)
            if record is None
            else avro.Source(record.topic, record.partition, record.offset, record.timestamp)
        )
        datum = avro.typed_record(copy, source, counts, event)
        return self._framed(schema, topic, _encode(schema, datum))

    def _framed(
        self, schema: avro.AvroSchema, topic: str, body: bytes | Rejected
    ) -> bytes | Rejected:
        if isinstance(body, Rejected):
            return body
        header = self.store.header(schema, topic)
        return header if isinstance(header, Rejected) else header + body


def _encode(schema: avro.AvroSchema, datum: object) -> bytes | Rejected:
    """Fail closed: a datum that does not fit its schema is a bug, never a partial copy."""
    try:
        return avro.encode(schema, datum)
    except (ValueError, TypeError, OverflowError, AttributeError, KeyError):
        return Rejected(Reason.INTERNAL_ERROR, "an output datum does not fit its schema")


def content_type(route: Route | None, policy: Policy) -> str:
    """The content type of one copy of ``route``: JSON, Confluent-framed Avro, or Avro
    single-object encoding. (The values tell it too: ``{``, byte 0, or ``C3 01`` first.)"""
    fmt = OutputFormat.JSON
    if route is not None:
        fmt = route.public_format if policy is Policy.PUBLIC else route.archive_format
    if fmt is OutputFormat.JSON:
        return avro.CONTENT_TYPE_JSON
    assert route is not None
    if route.schema_registry_url:
        return avro.CONTENT_TYPE_CONFLUENT
    return avro.CONTENT_TYPE_SINGLE_OBJECT


def output_headers(
    raw: Headers | None,
    policy: Policy,
    redactions: int,
    keys: KeyPolicy,
    content: str | None = None,
) -> list[tuple[str, bytes | None]]:
    """The raw record's headers, as payload: a header named like a key this policy replaces gets
    ``***``; our own header names are never taken from the input. Then ours are added, with
    ``streamer-content-type`` when ``content`` (see :func:`content_type`) is given."""
    replaced = keys.replaced_by(policy)
    out: list[tuple[str, bytes | None]] = [
        (name, REDACTED.encode() if name in replaced else value)
        for name, value in raw or ()
        if name not in _OURS
    ]
    out += [
        (HEADER_POLICY, policy.value.encode()),
        (HEADER_POLICY_VERSION, POLICY_VERSION.encode()),
        (HEADER_REDACTIONS, str(redactions).encode()),
    ]
    if content is not None:
        out.append((HEADER_CONTENT_TYPE, content.encode()))
    return out


def quarantine_headers(
    raw: Headers | None, topic: str, partition: int, offset: int, reason: Reason
) -> list[tuple[str, bytes | None]]:
    """Where the record came from and why it was not forwarded. The quarantine topic is as
    sensitive as the raw topics, so the raw headers travel with the raw value."""
    out = [(name, value) for name, value in raw or () if name not in _OURS]
    out += [
        (HEADER_SOURCE_TOPIC, topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
        (HEADER_REASON, reason.value.encode()),
    ]
    return out
