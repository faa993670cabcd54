"""`make bench-mask`: the masking core against a stdlib json round trip of the same events.

Both policies are produced from one read of each event (what `streamer run` does), and compared
with ``json.dumps(json.loads(event))`` in the same process and run. Targets (figures, not tests):
at least 3x the round trip with sensitive keys, 6x without.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.events import task_event
from streamer.masking import Masked, mask_event

CASES = [(1_000, 20_000), (4_000, 10_000), (2_000_000, 20)]


def _rate(fn: Callable[[bytes], object], event: bytes, n: int) -> float:
    fn(event)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn(event)
        best = min(best, time.perf_counter() - start)
    return n / best


def _round_trip(event: bytes) -> object:
    return json.dumps(json.loads(event))


def main() -> int:
    quick = "--quick" in sys.argv
    rows = []
    header = f"{'case':<22}{'events/s':>12}{'MB/s':>9}{'round trip/s':>14}{'ratio':>8}{'target':>8}"
    print(f"masking core, both policies per event; python {platform.python_version()}")
    print(header)
    print("-" * len(header))
    for size, n in CASES:
        for sensitive in (True, False):
            event = task_event(size, sensitive)
            result = mask_event(event)
            assert isinstance(result, Masked)
            assert bool(result.redactions) == sensitive
            count = max(n // 10, 5) if quick else n
            ours = _rate(mask_event, event, count)
            base = _rate(_round_trip, event, count)
            target = 3.0 if sensitive else 6.0
            label = f"{len(event) / 1000:,.0f} KB {'sensitive' if sensitive else 'clean'}"
            row = {
                "case": label,
                "bytes": len(event),
                "events_per_s": round(ours),
                "mb_per_s": round(ours * len(event) / 1e6, 1),
                "round_trip_per_s": round(base),
                "ratio": round(ours / base, 2),
                "target": target,
            }
            rows.append(row)
            print(
                f"{label:<22}{ours:>12,.0f}{row['mb_per_s']:>9}{base:>14,.0f}"
                f"{ours / base:>7.2f}x{target:>7.1f}x"
            )
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "mask.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"written to {out / 'mask.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
