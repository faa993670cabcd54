"""`python -m bench.avro`: Avro in and out through the pipeline, against fastavro's own decode
and encode of the same records, in the same run.

Cases (Conductor Task events wrapped in Orkes' ConductorEvent, single-object encoding; with
and without sensitive keys):

* avro -> json + avro: the Avro event in, a JSON public copy and a typed ArchiveRecord out;
* avro -> avro-event: the masked event in its own schema for both copies;
* json -> avro: a JSON event in, typed PublicRecord and ArchiveRecord out.

The baselines are what any Avro consumer pays: fastavro decoding the input record, and
fastavro encoding the records streamer writes (both copies), with already-parsed schemas.
Figures, not tests; they go to ``bench-results/avro.json``.
"""

from __future__ import annotations

import io
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro

from bench.events import task_event
from streamer import avro
from streamer.pipeline import Routed, process
from streamer.policy import DEFAULT_KEYS, Policy
from streamer.settings import Route

SIZES = [(1_000, 20_000), (4_000, 10_000), (64_000, 1_000)]


class _Source:
    topic = "bench.raw"
    partition = 0
    offset = 0
    timestamp = 1767229209100


def _route(**formats: Any) -> Route:
    return Route(name="b", raw="b.raw", public="b.public", archive="b.archive", **formats)


def _rate(fn: Callable[[], object], n: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def _decode(schema: Any, body: bytes) -> Callable[[], object]:
    return lambda: fastavro.schemaless_reader(io.BytesIO(body), schema, None)


def _encode(pairs: list[tuple[Any, Any]]) -> Callable[[], object]:
    def run() -> object:
        out = io.BytesIO()
        for schema, datum in pairs:
            fastavro.schemaless_writer(out, schema, datum)
        return out

    return run


def _pipeline(data: bytes, route: Route) -> Callable[[], object]:
    return lambda: process(data, DEFAULT_KEYS, route, _Source())


def _written(routed: Routed, schemas: dict[Policy, Any]) -> list[tuple[Any, Any]]:
    """The Avro datums streamer wrote (decoded back), to time fastavro encoding the same."""
    pairs = []
    for policy, schema in schemas.items():
        framed = routed.public if policy is Policy.PUBLIC else routed.archive
        assert framed is not None
        pairs.append((schema, fastavro.schemaless_reader(io.BytesIO(framed[10:]), schema, None)))
    return pairs


def measure(quick: bool = False) -> list[dict[str, Any]]:
    """Events per second of each case and of its fastavro baselines; prints a table."""
    event_schema = avro.bundled(avro.CONDUCTOR_EVENT)
    public_record = avro.bundled(avro.PUBLIC_RECORD).parsed
    archive_record = avro.bundled(avro.ARCHIVE_RECORD).parsed
    rows: list[dict[str, Any]] = []
    header = (
        f"{'case':<36}{'events/s':>11}{'fastavro dec':>14}{'fastavro enc':>14}"
        f"{'dec+enc':>11}{'ratio':>8}"
    )
    print(f"Avro through the pipeline, both copies per event; python {platform.python_version()}")
    print(header)
    print("-" * len(header))
    for size, n in SIZES:
        count = max(n // 10, 20) if quick else n
        for sensitive in (True, False):
            raw_json = task_event(size, sensitive)
            datum = avro.conductor_event(json.loads(raw_json), "task")
            value = avro.frame_single_object(event_schema, datum)
            body = value[10:]
            kinds = [
                ("avro -> json + avro", value, _route(raw_format="avro", archive_format="avro")),
                (
                    "avro -> avro-event",
                    value,
                    _route(
                        raw_format="avro", public_format="avro-event", archive_format="avro-event"
                    ),
                ),
                ("json -> avro", raw_json, _route(public_format="avro", archive_format="avro")),
            ]
            for name, data, route in kinds:
                routed = process(data, DEFAULT_KEYS, route, _Source())
                assert isinstance(routed, Routed), routed
                assert bool(routed.count(Policy.PUBLIC)) == sensitive
                if route.public_format == "json":
                    written = {Policy.ARCHIVE: archive_record}
                elif route.public_format == "avro":
                    written = {Policy.PUBLIC: public_record, Policy.ARCHIVE: archive_record}
                else:
                    written = dict.fromkeys(Policy, event_schema.parsed)
                outputs = _written(routed, written)
                ours = _rate(_pipeline(data, route), count)
                dec = _rate(_decode(event_schema.parsed, body), count)
                enc = _rate(_encode(outputs), count)
                both = 1 / (1 / dec + 1 / enc)
                label = f"{len(raw_json) / 1000:,.0f} KB {'sensitive' if sensitive else 'clean'}"
                case = f"{label} {name}"
                rows.append(
                    {
                        "case": case,
                        "event_bytes": len(raw_json),
                        "avro_bytes": len(value),
                        "events_per_s": round(ours),
                        "fastavro_decode_per_s": round(dec),
                        "fastavro_encode_per_s": round(enc),
                        "fastavro_decode_encode_per_s": round(both),
                        "ratio_to_decode_encode": round(ours / both, 2),
                    }
                )
                print(
                    f"{case:<36}{ours:>11,.0f}{dec:>14,.0f}{enc:>14,.0f}{both:>11,.0f}"
                    f"{ours / both:>7.2f}x"
                )
    return rows


def main() -> int:
    rows = measure(quick="--quick" in sys.argv)
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "avro.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"written to {out / 'avro.json'}")
    print(
        "fastavro dec: decoding the Avro input (the ConductorEvent, also for json -> avro); "
        "enc: encoding the Avro copies written; ratio: events/s over dec+enc"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
