"""PURE: sensitive values inside Java map text, the server's default rendering of summaries.

``WorkflowSummary`` and ``TaskSummary`` carry ``input``/``output`` as ``Map.toString()`` text:
``{orderId=ORD-1, _secrets={apiKey=sk_1}, items=[{sku=A, _secrets=L-1}]}``. That format has no
quoting, so a value holding ``, `` or brackets cannot be told from structure. We parse a strict
subset (scalars hold no ``{``, ``[`` and no ``, ``) and, where the text does not fit it, report
it as ambiguous so the caller replaces the whole string: never guess where a secret ends.
"""

from __future__ import annotations

import re
from collections.abc import Set

from streamer.policy import REDACTED

_MAX_DEPTH = 256
_SCALAR_END = re.compile(r", |[{}\[\]]")
_BAD_KEY = re.compile(r", |[{}\[\]]")


class _Ambiguous(Exception):
    """The text cannot be split into keys and values unambiguously."""


class _Parser:
    def __init__(self, text: str, replaced: Set[str]) -> None:
        self.text = text
        self.replaced = replaced
        self.spans: list[tuple[int, int, str]] = []

    def value(self, i: int, depth: int) -> int:
        if depth > _MAX_DEPTH:
            raise _Ambiguous
        c = self.text[i : i + 1]
        if c == "{":
            return self.map(i + 1, depth)
        if c == "[":
            return self.list(i + 1, depth)
        m = _SCALAR_END.search(self.text, i)
        if m is None:
            return len(self.text)
        if self.text[m.start()] in "{[":
            raise _Ambiguous
        return m.start()

    def map(self, i: int, depth: int) -> int:
        if self.text.startswith("}", i):
            return i + 1
        while True:
            eq = self.text.find("=", i)
            if eq < 0:
                raise _Ambiguous
            key = self.text[i:eq]
            if _BAD_KEY.search(key):
                raise _Ambiguous
            end = self.value(eq + 1, depth + 1)
            if key in self.replaced:
                self.spans.append((eq + 1, end, key))
            i = self.after_item(end, "}")
            if i < 0:
                return -i

    def list(self, i: int, depth: int) -> int:
        if self.text.startswith("]", i):
            return i + 1
        while True:
            end = self.value(i, depth + 1)
            i = self.after_item(end, "]")
            if i < 0:
                return -i

    def after_item(self, end: int, close: str) -> int:
        """Index of the next item, or minus the index after the closing bracket."""
        if self.text.startswith(", ", end):
            return end + 2
        if self.text.startswith(close, end):
            return -(end + 1)
        raise _Ambiguous


def mask_java_map(text: str, replaced: Set[str], counts: dict[str, int]) -> str | None:
    """Replace the values of ``replaced`` keys in Java map text with ``***``.

    Returns the new text (the same text when nothing needed replacing), or ``None`` when the text
    is not unambiguous Java map text. ``counts`` gains one per value replaced, per key; a value
    that already reads ``***`` is not counted again, so a second pass changes nothing.
    """
    if text[:1] not in ("{", "["):
        return None
    parser = _Parser(text, replaced)
    try:
        if parser.value(0, 0) != len(text):
            return None
    except _Ambiguous:
        return None
    except RecursionError:
        return None
    out: list[str] = []
    pos = 0
    found: dict[str, int] = {}
    for start, end, key in sorted(parser.spans):
        if start < pos:
            continue
        if text[start:end] != REDACTED:
            found[key] = found.get(key, 0) + 1
        out.append(text[pos:start])
        out.append(REDACTED)
        pos = end
    out.append(text[pos:])
    for key, n in found.items():
        counts[key] = counts.get(key, 0) + n
    return "".join(out)
