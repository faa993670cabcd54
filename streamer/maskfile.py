"""`streamer mask`: the masking core over JSON Lines files, with no Kafka at all.

For backfills, audits and trying a policy. One output line per input line, in order; a line
that cannot be proven safe goes to the quarantine file instead, never to the output.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from streamer.masking import Masked, Rejected, mask_event
from streamer.policy import KeyPolicy, Policy

#: Line numbers listed in the summary; the quarantine file has them all.
_LISTED = 20


@dataclass
class Summary:
    """What a run did, in counts and line numbers only: never payload text."""

    events: int = 0
    masked: int = 0
    quarantined: dict[str, list[int]] = field(default_factory=dict)
    redactions: dict[Policy, dict[str, int]] = field(default_factory=dict)
    clean: int = 0

    @property
    def quarantined_count(self) -> int:
        return sum(len(lines) for lines in self.quarantined.values())

    def add(self, result: Masked | Rejected, line: int) -> None:
        self.events += 1
        if isinstance(result, Rejected):
            self.quarantined.setdefault(result.reason.value, []).append(line)
            return
        self.masked += 1
        if not any(result.redactions.get(p) for p in Policy):
            self.clean += 1
        for policy, counts in result.redactions.items():
            into = self.redactions.setdefault(policy, {})
            for key, n in counts.items():
                into[key] = into.get(key, 0) + n

    def render(self, policy: Policy) -> str:
        lines = [
            f"events: {self.events}  written: {self.masked}  quarantined: "
            f"{self.quarantined_count}  needing no redaction: {self.clean}"
        ]
        for p in Policy:
            counts = self.redactions.get(p, {})
            shown = ", ".join(f"{k}={n}" for k, n in sorted(counts.items())) or "none"
            mark = " (written)" if p is policy else ""
            lines.append(f"redactions {p.value}{mark}: {shown}")
        for reason, numbers in sorted(self.quarantined.items()):
            listed = ", ".join(str(n) for n in numbers[:_LISTED])
            more = f" and {len(numbers) - _LISTED} more" if len(numbers) > _LISTED else ""
            lines.append(f"quarantined {reason}: lines {listed}{more}")
        return "\n".join(lines)


def quarantine_record(line: int, raw: bytes, result: Rejected) -> bytes:
    """A quarantine line: as sensitive as the raw input, so it may carry the original text."""
    record: dict[str, object] = {"line": line, "reason": result.reason.value}
    if result.detail:
        record["detail"] = result.detail
    try:
        record["text"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["base64"] = base64.b64encode(raw).decode("ascii")
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    for raw in stream:
        yield raw.rstrip(b"\n").removesuffix(b"\r")


class Progress:
    """A one-line progress bar on a terminal; silent otherwise (pipes, CI, logs)."""

    def __init__(self, out: TextIO, total_bytes: int | None) -> None:
        self.out = out
        self.total = total_bytes
        self.enabled = out.isatty()
        self.done = 0
        self.events = 0
        self.started = self.last = time.monotonic()

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        self.events += 1
        if self.enabled and (now := time.monotonic()) - self.last >= 0.1:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.events / max(now - self.started, 1e-9)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"[{bar:<30}] {frac:6.1%} {self.events} events {rate:,.0f}/s"
        else:
            text = f"{self.events} events {rate:,.0f}/s"
        self.out.write("\r" + text)
        self.out.flush()

    def close(self) -> None:
        if self.enabled and self.events:
            self._draw(time.monotonic())
            self.out.write("\n")
            self.out.flush()


def _size(stream: BinaryIO) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size or None
    except (OSError, ValueError):
        return None


def mask_lines(
    source: BinaryIO,
    sink: BinaryIO,
    quarantine: BinaryIO | None,
    policy: Policy,
    keys: KeyPolicy,
    progress: Progress | None = None,
) -> Summary:
    """Mask every line of ``source`` into ``sink``; rejected lines go to ``quarantine``."""
    summary = Summary()
    for number, raw in enumerate(_lines(source), start=1):
        result = mask_event(raw, keys)
        summary.add(result, number)
        if isinstance(result, Rejected):
            if quarantine is not None:
                quarantine.write(quarantine_record(number, raw, result))
        else:
            sink.write(result.public if policy is Policy.PUBLIC else result.archive)
            sink.write(b"\n")
        if progress is not None:
            progress.advance(len(raw) + 1)
    if progress is not None:
        progress.close()
    return summary


def open_progress(source: BinaryIO) -> Progress:
    return Progress(sys.stderr, _size(source))
