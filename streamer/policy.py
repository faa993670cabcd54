"""Which member names are sensitive, and what each output policy keeps.

Conductor hides a value by nesting it under ``_secrets`` or ``_masked``. The two differ only in
the archive: ``_secrets`` values are destroyed for good, ``_masked`` values are kept so that an
archived workflow can still be restarted. Extra names can be configured in either class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

SECRETS = "_secrets"
MASKED = "_masked"
REDACTED = "***"

#: Bumped whenever the masking rules change meaning; exported as build info and in Avro records.
POLICY_VERSION = "1"


class Policy(StrEnum):
    """An output copy: what readers of that copy may see."""

    PUBLIC = "public"
    ARCHIVE = "archive"


@dataclass(frozen=True)
class KeyPolicy:
    """The sensitive member names, compared exactly after JSON unescaping."""

    secret_keys: frozenset[str] = frozenset({SECRETS})
    masked_keys: frozenset[str] = frozenset({MASKED})

    def __post_init__(self) -> None:
        for name in self.secret_keys | self.masked_keys:
            if not name:
                raise ValueError("a sensitive key name must not be empty")
        both = self.secret_keys & self.masked_keys
        if both:
            raise ValueError(f"keys configured as both secret and masked: {sorted(both)}")

    @cached_property
    def all_keys(self) -> frozenset[str]:
        return self.secret_keys | self.masked_keys

    def replaced_by(self, policy: Policy) -> frozenset[str]:
        """Names whose whole value this policy replaces with ``"***"``."""
        return self.all_keys if policy is Policy.PUBLIC else self.secret_keys

    @cached_property
    def _escape_pattern(self) -> re.Pattern[bytes]:
        chars = {c for name in self.all_keys for c in name}
        codes = sorted({f"{ord(c):04x}" for c in chars} | {f"{ord(c):04X}" for c in chars})
        return re.compile(rb"\\u(?:" + "|".join(codes).encode() + rb")")

    @cached_property
    def _names(self) -> tuple[bytes, ...]:
        return tuple(sorted(n.encode() for n in self.all_keys))

    def mentioned(self, data: bytes) -> bool:
        """Whether ``data`` may spell a sensitive name: the name itself, or a ``\\u`` escape of
        one of its characters (``"\\u005fsecrets"`` is ``_secrets``). ``False`` proves it clean.
        Plain substring search on bytes: much faster than a regex alternation."""
        for name in self._names:
            if name in data:
                return True
        return b"\\u" in data and self._escape_pattern.search(data) is not None

    def mentions(self, data: bytes) -> list[int]:
        """Sorted positions in ``data`` where a sensitive name may be spelled."""
        found: list[int] = []
        for name in self._names:
            at = data.find(name)
            while at >= 0:
                found.append(at)
                at = data.find(name, at + len(name))
        if b"\\u" in data:
            found.extend(m.start() for m in self._escape_pattern.finditer(data))
        found.sort()
        return found

    @cached_property
    def _named(self) -> tuple[tuple[bytes, str, int], ...]:
        return tuple((n.encode(), n, len(n.encode())) for n in sorted(self.all_keys))

    def name_positions(self, data: bytes) -> list[tuple[int, str, int]]:
        """Every literal occurrence of a name in ``data``: (position, name, byte length), in
        order. Names contained in other names occur twice; the caller's checks sort that out."""
        found: list[tuple[int, str, int]] = []
        for encoded, name, size in self._named:
            at = data.find(encoded)
            while at >= 0:
                found.append((at, name, size))
                at = data.find(encoded, at + size)
        found.sort()
        return found

    def key_use_pattern(self, policy: Policy) -> re.Pattern[str]:
        """A name this policy replaces, written where a key goes: ``_secrets=`` in Java map text,
        ``_secrets":`` in JSON text (escaped or not). Used to fail closed on text that cannot be
        parsed; plain prose that merely mentions ``_secrets`` does not match."""
        return self._key_use_patterns[policy]

    @cached_property
    def _key_use_patterns(self) -> dict[Policy, re.Pattern[str]]:
        def build(names: frozenset[str]) -> re.Pattern[str]:
            alts = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
            return re.compile(rf'({alts})(?:=|\\*"\s*:)')

        return {p: build(self.replaced_by(p)) for p in Policy}


DEFAULT_KEYS = KeyPolicy()
