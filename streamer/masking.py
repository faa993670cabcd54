"""PURE: Conductor's masking rules over the bytes of one JSON event; no I/O, no Kafka.

The event is never re-serialised. We find each value that sits under a sensitive member name and
splice ``"***"`` over its bytes, copying everything else verbatim. That is what keeps big
integers, long decimals, ``1e400``, unicode escapes, spacing and member order exact, and it makes
duplicate member names harmless: every occurrence is a separate splice.

Finding those values without a full parse rests on three facts about valid JSON (validity is
checked first, by a C parser): a sensitive name can only occur inside a string token; once each
``\\x`` escape is blanked, the string holding a position starts at the previous ``"``; and a
string token is a member name exactly when the next non-blank character is ``:``. An event in
which no sensitive name, nor a ``\\u`` escape of one of its characters, occurs anywhere is clean
and both copies are the input bytes themselves.

String *values* that mention a sensitive name may hold JSON text or Java map text (summaries);
the rules apply inside them too, and text that uses a sensitive name as a key but cannot be
parsed is replaced whole (fail closed).
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from streamer.policy import DEFAULT_KEYS, REDACTED, KeyPolicy, Policy
from streamer.summaries import mask_java_map

_QUOTED_REDACTED = '"***"'
_ESCAPE = re.compile(r"\\.", re.DOTALL)
_COLON = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")
_SCALAR = re.compile(r"[^\s,\]}]+")
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


@dataclass(frozen=True, slots=True)
class Masked:
    """Both copies of one event, and how many values each policy replaced, per key."""

    public: bytes
    archive: bytes
    redactions: Mapping[Policy, Mapping[str, int]] = field(default_factory=dict)

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


_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_STRICT)  # type: ignore[arg-type]


def _parse(text: bytes | str) -> Any:
    """Parse strictly; raises ``ValueError`` or ``RecursionError`` when ``text`` is not JSON.

    orjson is fast but refuses some valid JSON (``1e400``, lone surrogate escapes, nesting past
    1024), so the standard library has the last word.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _STRICT.decode(text if isinstance(text, str) else text.decode("utf-8"))


def validate(raw: bytes | str) -> Rejected | None:
    """``None`` when ``raw`` is one JSON object; otherwise why not."""
    try:
        value = _parse(raw)
    except RecursionError:
        return Rejected(Reason.TOO_DEEP)
    except json.JSONDecodeError as exc:
        return Rejected(Reason.INVALID_JSON, f"line {exc.lineno} column {exc.colno}")
    except ValueError:
        return Rejected(Reason.INVALID_JSON)
    if not isinstance(value, dict):
        return Rejected(Reason.NOT_OBJECT)
    return None


def mask_event(raw: bytes, keys: KeyPolicy = DEFAULT_KEYS) -> Masked | Rejected:
    """Decode one event once and produce its public and archive copies from one analysis."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(Reason.NOT_UTF8, f"byte {exc.start}")
    rejected = validate(raw)
    if rejected is not None:
        return rejected
    if not keys.mentioned(text):
        return Masked(raw, raw, {})
    try:
        sites = _sites(text, keys)
        public, public_counts = _emit(text, sites, keys, Policy.PUBLIC, 0)
        archive, archive_counts = _emit(text, sites, keys, Policy.ARCHIVE, 0)
    except RecursionError:
        return Rejected(Reason.TOO_DEEP)
    return Masked(
        public.encode("utf-8") if public is not text else raw,
        archive.encode("utf-8") if archive is not text else raw,
        {Policy.PUBLIC: public_counts, Policy.ARCHIVE: archive_counts},
    )


def mask_text(
    text: str, keys: KeyPolicy, policy: Policy, depth: int = 0
) -> tuple[str, dict[str, int]]:
    """Apply ``policy`` to valid JSON ``text`` (of any type). Returns ``text`` itself when
    nothing changed, and the values replaced per key."""
    if not keys.mentioned(text):
        return text, {}
    return _emit(text, _sites(text, keys), keys, policy, depth)


@dataclass(slots=True)
class _Site:
    """A string token that mentions a sensitive name: either a sensitive member name, with the
    extent of its value, or a string value whose content may need masking."""

    start: int
    end: int
    name: str | None
    value_at: int = 0
    value_end: int = 0
    content: str = ""


def _sites(text: str, keys: KeyPolicy) -> list[_Site]:
    """Every sensitive member and every string value mentioning a name, in text order; shared
    by both policies, so the event is analysed once."""
    plain = _ESCAPE.sub("..", text) if "\\" in text else text
    sites: list[_Site] = []
    floor = 0
    for at in keys.mentions(text):
        if at < floor:
            continue
        start = plain.rfind('"', 0, at)
        end = floor = plain.index('"', at) + 1
        colon = _COLON.match(text, end)
        if colon is not None:
            name = _unquote(text[start:end])
            if name in keys.all_keys:
                value_at = colon.end()
                sites.append(_Site(start, end, name, value_at, _value_end(text, plain, value_at)))
        elif _may_hold_keys(text, start + 1, end - 1, keys):
            sites.append(_Site(start, end, None, content=_unquote(text[start:end])))
    return sites


def _emit(
    text: str, sites: list[_Site], keys: KeyPolicy, policy: Policy, depth: int
) -> tuple[str, dict[str, int]]:
    """Splice one policy's copy together from the shared analysis."""
    replaced = keys.replaced_by(policy)
    counts: dict[str, int] = {}
    out: list[str] = []
    pos = 0
    for site in sites:
        if site.start < pos:
            continue
        if site.name is not None:
            if site.name not in replaced:
                continue
            if text[site.value_at : site.value_end] != _QUOTED_REDACTED:
                counts[site.name] = counts.get(site.name, 0) + 1
            out.append(text[pos : site.value_at])
            out.append(_QUOTED_REDACTED)
            pos = site.value_end
        else:
            inner = _mask_embedded(site.content, keys, policy, counts, depth + 1)
            if inner is not None:
                out.append(text[pos : site.start])
                out.append(_quote(inner))
                pos = site.end
    if not out:
        return text, counts
    out.append(text[pos:])
    return "".join(out), counts


def _may_hold_keys(text: str, start: int, end: int, keys: KeyPolicy) -> bool:
    """Cheap filter for string values: only embedded JSON or map text (or text using a name as
    a key) can change; expressions like ``${workflow.input._secrets.key}`` cannot."""
    if text[start : start + 1] in ("{", "[", " ") and start < end:
        return True
    if text.find("\\", start, end) >= 0:
        return True
    return keys.key_use_pattern(Policy.PUBLIC).search(text, start, end) is not None


def _mask_embedded(
    value: str, keys: KeyPolicy, policy: Policy, counts: dict[str, int], depth: int
) -> str | None:
    """The new content of a string value that mentions a sensitive name, or ``None`` to keep it.

    JSON text is masked by the same rules and stays JSON text; Java map text by its own rules;
    text that uses a name this policy replaces as a key but parses as neither becomes ``***``.
    """
    head = value.lstrip()[:1]
    if head in ("{", "[", '"') and depth <= _MAX_EMBEDDING:
        try:
            _parse(value)
        except (ValueError, RecursionError):
            pass
        else:
            masked, inner_counts = mask_text(value, keys, policy, depth)
            _merge(counts, inner_counts)
            return None if masked is value else masked
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


def _value_end(text: str, plain: str, at: int) -> int:
    """Index just past the JSON value starting at ``at``."""
    first = text[at]
    if first == '"':
        return plain.index('"', at + 1) + 1
    if first in "{[":
        return int(_SCAN(text, at)[1])
    match = _SCALAR.match(text, at)
    if match is None:
        raise ValueError("no JSON value at this position")
    return match.end()


def _unquote(token: str) -> str:
    if "\\" not in token:
        return token[1:-1]
    value = json.loads(token)
    assert isinstance(value, str)
    return value


def _quote(value: str) -> str:
    """A JSON string token; non-ASCII stays readable unless it holds a lone surrogate, which
    UTF-8 cannot carry."""
    return json.dumps(value, ensure_ascii=_SURROGATE.search(value) is not None)


def _merge(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n
