"""PURE: Conductor's masking rules over the bytes of one JSON event; no I/O, no Kafka.

The event is never re-serialised. We find each value that sits under a sensitive member name and
splice ``"***"`` over its bytes, copying everything else verbatim. That is what keeps big
integers, long decimals, ``1e400``, unicode escapes, spacing and member order exact, and it makes
duplicate member names harmless: every occurrence is a separate splice.

Finding those values without a full parse rests on three facts about valid JSON (validity is
checked first, by simdjson): a sensitive name can only occur inside a string token; once each
``\\x`` escape is blanked, the string holding a position starts at the previous ``"``; and a
string token is a member name exactly when the next non-blank character is ``:``. Everything
works on bytes, where substring search is memchr-fast whatever the text's script. An event in
which no sensitive name, nor a ``\\u`` escape of one of its characters, occurs anywhere is clean
and both copies are the input bytes themselves.

String *values* that mention a sensitive name may hold JSON text or Java map text (summaries);
the rules apply inside them too, and text that uses a sensitive name as a key but cannot be
parsed is replaced whole (fail closed).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import simdjson

from streamer.policy import DEFAULT_KEYS, REDACTED, KeyPolicy, Policy
from streamer.summaries import mask_java_map

_QUOTED_REDACTED = b'"***"'
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_COLON = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*")
_SCALAR = re.compile(rb"[^\s,\]}]+")
_STRUCTURE = re.compile(rb'"[^"]*"|[{}\[\]]')
_OPENERS = frozenset(b"{[")
#: An object or array holding no nested one (strings may hold brackets): the usual secret.
_FLAT = re.compile(rb'\{(?:[^{}\[\]"]|"[^"]*")*\}|\[(?:[^{}\[\]"]|"[^"]*")*\]')
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Embedded text is unwrapped at most this many times (JSON in a string in a string ...).
_MAX_EMBEDDING = 16


class Reason(StrEnum):
    """Why an event was rejected: a small fixed set, safe as a metric label."""

    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_OBJECT = "not_object"
    TOO_DEEP = "too_deep"
    TOO_LARGE = "too_large"
    INTERNAL_ERROR = "internal_error"
    #: Avro (streamer.avro): not framed as configured, or does not decode with its writer's schema.
    AVRO_DECODE = "avro_decode"
    #: Avro: the schema id or fingerprint names no schema the registry or schemas/ knows.
    UNKNOWN_SCHEMA = "unknown_schema"
    #: Avro: the registry refuses the output schema under the subject (compatibility settings).
    SCHEMA_INCOMPATIBLE = "schema_incompatible"


_NOTHING: Mapping[Policy, Mapping[str, int]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Masked:
    """Both copies of one event, and how many values each policy replaced, per key."""

    public: bytes
    archive: bytes
    redactions: Mapping[Policy, Mapping[str, int]]

    def count(self, policy: Policy) -> int:
        return sum(self.redactions.get(policy, {}).values())


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that cannot be proven safe. ``detail`` holds positions, never payload text."""

    reason: Reason
    detail: str = ""


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _ignore_number(text: str) -> int:
    return 0


#: Validation only: numbers are not converted (no 4300-digit limit), NaN/Infinity are refused.
_STRICT = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_ignore_number, parse_float=_ignore_number
)


class _Parsers(threading.local):
    """simdjson parsers are not thread-safe and hold one document at a time: one per thread."""

    def __init__(self) -> None:
        self.parser = simdjson.Parser()


_PARSERS = _Parsers()
_BOM = b"\xef\xbb\xbf"


def _is_object(data: bytes) -> bool:
    """Whether ``data`` is one JSON object; raises ``ValueError``/``RecursionError`` if not JSON.

    simdjson validates the whole document (UTF-8 included) without building Python objects, an
    order of magnitude faster than any full parse. It refuses some valid JSON (integers past 64
    bits, ``1e400``, lone surrogate escapes, nesting past 1024), so the standard library has
    the last word on those.
    """
    if data.startswith(_BOM):
        raise ValueError("a byte order mark is not JSON")
    try:
        document = _PARSERS.parser.parse(data)
    except (ValueError, RuntimeError):
        return isinstance(_STRICT.decode(data.decode("utf-8")), dict)
    is_object = isinstance(document, simdjson.Object)
    del document
    return is_object


def validate(raw: bytes) -> Rejected | None:
    """``None`` when ``raw`` is one JSON object; otherwise why not (positions, never text)."""
    try:
        if _is_object(raw):
            return None
    except RecursionError:
        return Rejected(Reason.TOO_DEEP)
    except UnicodeDecodeError as exc:
        return Rejected(Reason.NOT_UTF8, f"byte {exc.start}")
    except json.JSONDecodeError as exc:
        return Rejected(Reason.INVALID_JSON, f"line {exc.lineno} column {exc.colno}")
    except ValueError:
        return Rejected(Reason.INVALID_JSON)
    return Rejected(Reason.NOT_OBJECT)


def mask_event(raw: bytes, keys: KeyPolicy = DEFAULT_KEYS) -> Masked | Rejected:
    """Validate one event once and produce its public and archive copies from one analysis."""
    rejected = validate(raw)
    if rejected is not None:
        return rejected
    if not keys.mentioned(raw):
        return Masked(raw, raw, _NOTHING)
    if b"\\" not in raw:
        both = _mask_members(raw, keys)
        if both is not None:
            return both
    try:
        sites = _sites(raw, keys)
        public, public_counts = _emit(raw, sites, keys, Policy.PUBLIC, 0)
        archive, archive_counts = _emit(raw, sites, keys, Policy.ARCHIVE, 0)
    except RecursionError:
        return Rejected(Reason.TOO_DEEP)
    return Masked(public, archive, {Policy.PUBLIC: public_counts, Policy.ARCHIVE: archive_counts})


def mask_bytes(
    data: bytes, keys: KeyPolicy, policy: Policy, depth: int = 0
) -> tuple[bytes, dict[str, int]]:
    """Apply ``policy`` to valid JSON ``data`` (of any type). Returns ``data`` itself when
    nothing changed, and the values replaced per key."""
    if not keys.mentioned(data):
        return data, {}
    if b"\\" not in data:
        both = _mask_members(data, keys)
        if both is not None:
            copy = both.public if policy is Policy.PUBLIC else both.archive
            return copy, dict(both.redactions[policy])
    return _emit(data, _sites(data, keys), keys, policy, depth)


#: A string token mentioning a sensitive name: ``(start, end, name, value_at, value_end)`` for
#: a sensitive member name and the extent of its value, or ``(start, end, None, content, 0)``
#: for a string value whose decoded ``content`` may need masking.
_Site = tuple[int, int, str | None, Any, int]


def _sites(data: bytes, keys: KeyPolicy) -> list[_Site]:
    """Every sensitive member and every string value mentioning a name, in order; shared by
    both policies, so the event is analysed once."""
    plain = _ESCAPE.sub(b"..", data) if b"\\" in data else data
    all_keys = keys.all_keys
    sites: list[_Site] = []
    floor = 0
    for at in keys.mentions(data):
        if at < floor:
            continue
        start = plain.rfind(b'"', 0, at)
        end = floor = plain.index(b'"', at) + 1
        colon = _COLON.match(data, end)
        if colon is not None:
            name = _unquote(data[start:end])
            if name in all_keys:
                value_at = colon.end()
                sites.append((start, end, name, value_at, _value_end(data, plain, value_at)))
        elif _may_hold_keys(data, start + 1, end - 1, keys):
            sites.append((start, end, None, _unquote(data[start:end]), 0))
    return sites


def _mask_members(data: bytes, keys: KeyPolicy) -> Masked | None:
    """Both copies in one pass, for the common case: no escapes anywhere, and every mention of
    a name is a member name (``"_secrets":``). With no escapes every ``"`` is a real string
    boundary, so a name with a ``"`` on each side and a ``:`` after is a member name. ``None``
    when some mention is anything else (a string value to look into): the general path then
    handles the event."""
    secret = keys.secret_keys
    public: list[bytes] = []
    archive: list[bytes] = []
    public_counts: dict[str, int] = {}
    archive_counts: dict[str, int] = {}
    public_at = archive_at = 0
    for at, name, size in keys.name_positions(data):
        if at < public_at and at < archive_at:
            continue  # inside a value both copies replace
        colon = _COLON.match(data, at + size + 1)
        if data[at - 1 : at] != b'"' or data[at + size : at + size + 1] != b'"' or colon is None:
            return None
        value_at = colon.end()
        value_end = _value_end(data, data, value_at)
        counted = data[value_at:value_end] != _QUOTED_REDACTED
        if at >= public_at:
            public += (data[public_at:value_at], _QUOTED_REDACTED)
            public_at = value_end
            if counted:
                public_counts[name] = public_counts.get(name, 0) + 1
        if name in secret and at >= archive_at:
            archive += (data[archive_at:value_at], _QUOTED_REDACTED)
            archive_at = value_end
            if counted:
                archive_counts[name] = archive_counts.get(name, 0) + 1
    public.append(data[public_at:])
    archive.append(data[archive_at:])
    return Masked(
        b"".join(public) if public_at else data,
        b"".join(archive) if archive_at else data,
        {Policy.PUBLIC: public_counts, Policy.ARCHIVE: archive_counts},
    )


def _emit(
    data: bytes, sites: list[_Site], keys: KeyPolicy, policy: Policy, depth: int
) -> tuple[bytes, dict[str, int]]:
    """Splice one policy's copy together from the shared analysis."""
    replaced = keys.replaced_by(policy)
    counts: dict[str, int] = {}
    out: list[bytes] = []
    pos = 0
    for start, end, name, value_at, value_end in sites:
        if start < pos:
            continue
        if name is not None:
            if name not in replaced:
                continue
            if data[value_at:value_end] != _QUOTED_REDACTED:
                counts[name] = counts.get(name, 0) + 1
            out += (data[pos:value_at], _QUOTED_REDACTED)
            pos = value_end
        else:
            inner = _mask_embedded(value_at, keys, policy, counts, depth + 1)
            if inner is not None:
                out += (data[pos:start], _quote(inner))
                pos = end
    if not out:
        return data, counts
    out.append(data[pos:])
    return b"".join(out), counts


def _may_hold_keys(data: bytes, start: int, end: int, keys: KeyPolicy) -> bool:
    """Cheap filter for string values: only embedded JSON or map text (or text using a name as
    a key) can change; expressions like ``${workflow.input._secrets.key}`` cannot."""
    if start < end and data[start] in b"{[ ":
        return True
    if data.find(b"\\", start, end) >= 0:
        return True
    return keys.key_use_pattern(Policy.PUBLIC).search(data[start:end].decode()) is not None


def _mask_embedded(
    value: str, keys: KeyPolicy, policy: Policy, counts: dict[str, int], depth: int
) -> str | None:
    """The new content of a string value that mentions a sensitive name, or ``None`` to keep it.

    JSON text is masked by the same rules and stays JSON text; Java map text by its own rules;
    text that uses a name this policy replaces as a key but parses as neither becomes ``***``.
    """
    head = value.lstrip()[:1]
    if head in ("{", "[", '"') and depth <= _MAX_EMBEDDING:
        inner = _json_bytes(value)
        if inner is not None:
            masked, inner_counts = mask_bytes(inner, keys, policy, depth)
            _merge(counts, inner_counts)
            return None if masked == inner else masked.decode("utf-8")
        if head in ("{", "["):
            map_counts: dict[str, int] = {}
            masked_map = mask_java_map(value, keys.replaced_by(policy), map_counts)
            if masked_map is not None and not _leaks(masked_map, keys, policy):
                _merge(counts, map_counts)
                return None if masked_map == value else masked_map
    use = keys.key_use_pattern(policy).search(value)
    if use is None:
        return None
    counts[use.group(1)] = counts.get(use.group(1), 0) + 1
    return REDACTED


def _json_bytes(value: str) -> bytes | None:
    """``value`` as UTF-8 bytes when it is JSON text, else ``None``."""
    try:
        data = value.encode("utf-8")
        _STRICT.decode(value)
    except (ValueError, RecursionError):
        return None
    return data


def _leaks(text: str, keys: KeyPolicy, policy: Policy) -> bool:
    """True when masked Java map text still shows a replaced key with a value other than ``***``:
    a second, independent check on the parser."""
    for use in keys.key_use_pattern(policy).finditer(text):
        if not text.startswith("=" + REDACTED, use.end(1)):
            return True
        rest = text[use.end(1) + 1 + len(REDACTED) :][:2]
        if rest and rest[0] not in "}]" and rest != ", ":
            return True
    return False


def _value_end(data: bytes, plain: bytes, at: int) -> int:
    """Index just past the JSON value starting at ``at`` (valid JSON assumed)."""
    first = data[at]
    if first == 0x22:  # "
        return plain.index(b'"', at + 1) + 1
    if first in _OPENERS:
        flat = _FLAT.match(plain, at)
        if flat is not None:
            return flat.end()
        depth = 0
        for token in _STRUCTURE.finditer(plain, at):
            c = plain[token.start()]
            if c in _OPENERS:
                depth += 1
            elif c != 0x22:
                depth -= 1
                if depth == 0:
                    return token.end()
        raise ValueError("unbalanced JSON value")
    match = _SCALAR.match(data, at)
    if match is None:
        raise ValueError("no JSON value at this position")
    return match.end()


def _unquote(token: bytes) -> str:
    if b"\\" not in token:
        return token[1:-1].decode("utf-8")
    value = json.loads(token)
    assert isinstance(value, str)
    return value


def _quote(value: str) -> bytes:
    """A JSON string token; non-ASCII stays readable unless it holds a lone surrogate, which
    UTF-8 cannot carry."""
    return json.dumps(value, ensure_ascii=_SURROGATE.search(value) is not None).encode("utf-8")


def _merge(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n
