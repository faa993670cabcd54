"""`make bench` / `make bench-quick`: `streamer run` end to end against a pass-through baseline
on the same broker, in the same run. docs/performance.md has the method and the figures.

    python -m bench.e2e [--quick] [--sizes 1,4,64] [--events N] [--repeat N] [--output FILE]

Per event size (about 1, 4 and 60 KB of realistic Conductor Task events, half of them holding
`_secrets`/`_masked`), one raw topic of 6 partitions is filled once; every case then reads all
of it with a fresh consumer group into fresh output topics:

- mask core: streamer.pipeline.process() on the same events, no Kafka (one core's ceiling);
- pass-through txn / plain: bench/passthrough.py, the streamer's client settings and loop
  shape with nothing else to do: the ceiling the Kafka client sets (the baseline);
- streamer exactly-once / at-least-once: the real `streamer run --stop-when-caught-up`;
- x2 (full run, 4 KB): two pass-throughs, then two `streamer run`, in one group, each with its
  own transactional id, stopped with SIGTERM once the group's committed offsets reach the end;
- latency (4 KB): the transactional pass-through, then `streamer run` (exactly-once), under a
  steady load of half the measured exactly-once rate; a read_committed reader of the public
  topic takes receive time minus the raw record's timestamp (which the public copy keeps).

Rates: ``events/s`` excludes start-up (from the first committed output record to the moment the
group's committed offsets reach the raw topic's end, both seen by a 50 ms poller); ``wall/s``
is from process start to exit (for two processes: to completion). ``MB/s`` counts raw event
bytes consumed (each is written twice). ``CPU us/ev`` is the user+system CPU time of the
processes under test per event, which other load on the machine changes less than the rates;
``broker us/ev`` the same for the local broker. Every case is checked afterwards: a
read_committed count of both outputs, an empty quarantine and no sensitive value left in a
streamer copy. Progress goes to stderr, the table to stdout, the table as JSON to
bench-results/e2e.json (e2e-quick.json for --quick), process logs to bench-results/e2e-logs/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench import common
from bench.common import LEAK_ARCHIVE, LEAK_PUBLIC, PARTITIONS, Memory, Process, Topics, Watch, say
from streamer.pipeline import process
from streamer.settings import load_settings

#: Bytes each throughput case moves in the full run: 200,000 events of 4 KB; the 1 KB and
#: 64 KB counts are scaled to the same volume.
FULL_BYTES_EVENTS = 200_000
SIZES = {1: 1_000, 4: 4_000, 64: 64_000}
QUICK_EVENTS = 20_000

#: Targets from the issue: figures to report against, not tests.
TARGET_EOS_RATIO = 0.7
TARGET_ALO_RATIO = 0.8
TARGET_SCALING = 1.6
TARGET_P99_MS = 500.0
#: "Flat": RSS grows by at most this much over the second half of the steady-load run.
FLAT_MB = 10.0

_KEEP_ENV = {
    # settings that tune or secure the clients are honoured, the same for every case
    "STREAMER_KAFKA",
    "STREAMER_BATCH_SIZE",
    "STREAMER_COMMIT_INTERVAL_MS",
    "STREAMER_TRANSACTION_TIMEOUT_MS",
    "STREAMER_SECRET_KEYS",
    "STREAMER_MASKED_KEYS",
}


@dataclass
class Row:
    """One line of the table (and of the JSON)."""

    case: str
    size: str
    events: int = 0
    event_bytes: int = 0
    events_per_s: float | None = None
    wall_events_per_s: float | None = None
    mb_per_s: float | None = None
    baseline: str | None = None
    ratio: float | None = None
    cpu_us_per_event: float | None = None
    #: CPU of the local broker per event during the case (None with an external cluster)
    broker_us_per_event: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    peak_rss_mb: float | None = None
    memory: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)
    #: "ok", or what the read_committed check of the outputs found wrong; None: not checked
    check: str | None = None
    error: str | None = None


@dataclass
class Bench:
    bootstrap: str
    broker_pid: int | None
    logs: Path
    repeat: int
    verify: bool = True
    rows: list[Row] = field(default_factory=list)
    failed: int = 0

    def env(self, topics: Topics, group: str, delivery: str, txn_id: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("STREAMER_") or k in _KEEP_ENV
        }
        env.update(
            STREAMER_BOOTSTRAP_SERVERS=self.bootstrap,
            STREAMER_GROUP_ID=group,
            STREAMER_TRANSACTIONAL_ID=txn_id,
            STREAMER_DELIVERY=delivery,
            STREAMER_ROUTES=topics.routes(),
            STREAMER_QUARANTINE_TOPIC=topics.quarantine,
            STREAMER_TOPIC_PARTITIONS=str(PARTITIONS),
            STREAMER_METRICS_PORT="0",
            PYTHONUNBUFFERED="1",
        )
        return env

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        log = self.logs / f"{name}.log"
        with log.open("wb") as handle:
            started = time.monotonic()
            popen = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT
            )
        return Process(name, popen, log, started, Memory(popen.pid))


def _tail(p: Process, lines: int = 15) -> str:
    try:
        text = p.log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    | " + ln for ln in text[-lines:])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _label(nbytes: float) -> str:
    return f"{nbytes / 1000:.0f} KB" if nbytes >= 1000 else f"{nbytes:.0f} B"


# -- cases -------------------------------------------------------------------------------------


def mask_core(size_label: str, pool: list[bytes], quick: bool) -> Row:
    """streamer.pipeline.process() (both policies from one read) on the pool, best of 3."""
    keys = load_settings().keys
    mean = sum(len(v) for v in pool) / len(pool)
    n = max(int((1e7 if quick else 4e7) / mean), len(pool))
    for value in pool:
        process(value, keys)
    best = cpu = float("inf")
    for _ in range(3):
        start, cpu0 = time.perf_counter(), time.process_time()
        for i in range(n):
            process(pool[i % len(pool)], keys)
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - cpu0)
    rate = n / best
    say(f"{size_label} mask core: {rate:,.0f} events/s ({rate * mean / 1e6:.1f} MB/s)")
    return Row(
        case="mask core (no Kafka)",
        size=size_label,
        events=n,
        event_bytes=round(mean),
        events_per_s=round(rate),
        mb_per_s=round(rate * mean / 1e6, 1),
        cpu_us_per_event=round(cpu / n * 1e6, 1),
    )


def throughput(
    bench: Bench,
    case: str,
    size_label: str,
    raw: str,
    ends: dict[int, int],
    nbytes: int,
    *,
    program: str,
    delivery: str,
    processes: int,
) -> Row:
    """One pass over the whole raw topic (``repeat`` times; the fastest pass is kept)."""
    events = sum(ends.values())
    best: Row | None = None
    rates: list[float] = []
    for attempt in range(bench.repeat):
        row = _one_pass(
            bench, case, size_label, raw, ends, nbytes, program, delivery, processes, attempt
        )
        if row.error:
            bench.failed += 1
            return row
        assert row.events_per_s is not None
        rates.append(row.events_per_s)
        if best is None or row.events_per_s > (best.events_per_s or 0):
            best = row
    assert best is not None
    best.runs = rates
    say(
        f"{size_label} {case}: {best.events_per_s:,.0f} events/s excluding start-up, "
        f"{best.wall_events_per_s:,.0f}/s wall, {best.cpu_us_per_event} us CPU/event, "
        f"peak RSS {best.peak_rss_mb} MB"
        + (
            f" (best of {len(rates)}: {', '.join(f'{r:,.0f}' for r in rates)})"
            if len(rates) > 1
            else ""
        )
    )
    assert events == best.events
    return best


def _one_pass(
    bench: Bench,
    case: str,
    size_label: str,
    raw: str,
    ends: dict[int, int],
    nbytes: int,
    program: str,
    delivery: str,
    processes: int,
    attempt: int,
) -> Row:
    events = sum(ends.values())
    slug = re.sub(r"[^a-z0-9]+", "-", f"{size_label} {case}".lower()).strip("-")
    topics = Topics(raw, common.unique(slug))
    group = f"{topics.prefix}-group"
    row = Row(case=case, size=size_label, events=events, event_bytes=round(nbytes / events))
    common.create_topics(bench.bootstrap, topics.outputs)
    catch_up = ["--stop-when-caught-up"] if processes == 1 else []
    if program == "streamer":
        argv = [sys.executable, "-m", "streamer", "run", *catch_up]
    else:
        mode = "txn" if delivery == "exactly-once" else "plain"
        argv = [sys.executable, "-m", "bench.passthrough", "--mode", mode, *catch_up]
    say(f"{size_label} {case}: run {attempt + 1}/{bench.repeat}, {events:,} events")
    watch = Watch(bench.bootstrap, group, topics, ends)
    watch.start()
    cpu0, broker0 = _children_cpu(), common.cpu_seconds(bench.broker_pid)
    procs = [
        bench.spawn(
            f"{slug}-{attempt}-{i}", argv, bench.env(topics, group, delivery, f"{group}-{i}")
        )
        for i in range(processes)
    ]
    timeout = 120 + nbytes / 1e6  # a floor of 1 MB/s: generous, but bounded
    try:
        if processes == 1:
            try:
                procs[0].popen.wait(timeout)
                procs[0].exited = time.monotonic()
            except subprocess.TimeoutExpired:
                row.error = f"did not finish within {timeout:.0f} s"
            watch.wait_done(15, procs)
        elif not watch.wait_done(timeout, procs):
            row.error = f"committed offsets did not reach the end within {timeout:.0f} s"
    finally:
        for p in procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.popen.wait(60)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(10)
                row.error = row.error or f"{p.name} did not stop within 60 s of SIGTERM"
            p.exited = p.exited or time.monotonic()
            p.memory.stop()
        watch.stop()
    cpu = _children_cpu() - cpu0
    broker_cpu = common.cpu_seconds(bench.broker_pid) - broker0
    for p in procs:
        code = p.popen.returncode
        if code != 0 and not row.error:
            row.error = f"{p.name} exited with status {code}"
        text = p.log.read_text(errors="replace")
        row.summary += [
            ln.strip()
            for ln in text.splitlines()
            if re.search(r"consumed \d+ events|transactions committed|batches committed", ln)
        ]
        aborted = re.search(r"aborted (\d+)", text)
        if aborted and int(aborted[1]):
            say(f"  note: {p.name} aborted {aborted[1]} transaction(s)")
    if not row.error and (watch.done is None or watch.first is None):
        row.error = "never saw the committed offsets reach the end"
    if row.error:
        say(f"{size_label} {case}: FAILED: {row.error}")
        for p in procs:
            say(f"  log of {p.name} ({p.log}):\n{_tail(p)}")
        common.delete_topics(bench.bootstrap, topics.outputs)
        return row
    assert watch.done is not None
    assert watch.first is not None
    start = min(p.started for p in procs)
    end_wall = max(p.exited or watch.done for p in procs) if processes == 1 else watch.done
    steady = max(watch.done - watch.first, 1e-3)
    row.seconds = {
        "start_to_first_output": round(watch.first - start, 2),
        "first_output_to_done": round(steady, 2),
        "wall": round(end_wall - start, 2),
    }
    row.events_per_s = round(events / steady)
    row.wall_events_per_s = round(events / (end_wall - start))
    row.mb_per_s = round(nbytes / steady / 1e6, 1)
    row.cpu_us_per_event = round(cpu / events * 1e6, 1)
    if bench.broker_pid:
        row.broker_us_per_event = round(broker_cpu / events * 1e6, 1)
    summaries = [p.memory.summary() for p in procs]
    row.memory = [{"process": p.name, **m} for p, m in zip(procs, summaries, strict=True)]
    peaks = [peak for m in summaries if (peak := m["peak_mb"]) is not None]
    row.peak_rss_mb = max(peaks) if peaks else None
    if bench.verify:
        _verify(bench, topics, events, row, program == "streamer")
    common.delete_topics(bench.bootstrap, topics.outputs)
    return row


def _verify(bench: Bench, topics: Topics, events: int, row: Row, masked: bool) -> None:
    counts, leaks = common.count_committed(
        bench.bootstrap,
        [topics.public, topics.archive, topics.quarantine],
        leaks={topics.public: LEAK_PUBLIC, topics.archive: LEAK_ARCHIVE} if masked else None,
    )
    problems = []
    if counts[topics.public] != events or counts[topics.archive] != events:
        problems.append(
            f"read_committed counts public {counts[topics.public]}, archive "
            f"{counts[topics.archive]}, expected {events} each"
        )
    if counts[topics.quarantine]:
        problems.append(f"{counts[topics.quarantine]} quarantined")
    if leaks:
        problems.append(f"{leaks} copies hold a sensitive value")
    if problems:
        row.check = "; ".join(problems)
        bench.failed += 1
        say(f"  CHECK FAILED: {row.check}")
    else:
        row.check = "ok"
        say(
            f"  checked: {events:,} committed in public and in archive, none quarantined"
            + (", no sensitive value left" if masked else "")
        )


def latency(bench: Bench, size: int, rate: float, seconds: float, program: str) -> Row:
    """``program`` (`streamer run` or the transactional pass-through) under a steady ``rate``;
    a read_committed reader of the public topic measures receive time minus the raw record's
    timestamp."""
    prefix = common.unique(f"latency-{program}")
    topics = Topics(f"{prefix}.raw", prefix)
    common.create_topics(bench.bootstrap, [topics.raw, *topics.outputs])
    group = f"{prefix}-group"
    label = _label(size)
    name = "streamer exactly-once" if program == "streamer" else "pass-through txn"
    row = Row(case=f"latency {name} @ {rate:,.0f}/s", size=label)
    say(f"{label} latency: {name} under {rate:,.0f} events/s for {seconds:g} s")
    if program == "streamer":
        argv = [sys.executable, "-m", "streamer", "run"]
    else:
        argv = [sys.executable, "-m", "bench.passthrough", "--mode", "txn"]
    env = bench.env(topics, group, "exactly-once", f"{group}-0")
    proc = bench.spawn(f"latency-{program}", argv, env)
    broker0 = common.cpu_seconds(bench.broker_pid)
    reader = Consumer(
        {
            **common.client(bench.bootstrap),
            "group.id": f"{prefix}-reader",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    reader.assign([TopicPartition(topics.public, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    ctx = multiprocessing.get_context("spawn")
    produced = ctx.Value("q", -1)
    loader = ctx.Process(
        target=common.load_producer,
        args=(bench.bootstrap, topics.raw, size, rate, seconds, produced),
        daemon=True,
    )
    latencies: list[float] = []
    cpu = broker_cpu = 0.0
    try:
        deadline = time.monotonic() + 60
        while "assigned " not in proc.log.read_text(errors="replace"):
            if time.monotonic() > deadline or proc.popen.poll() is not None:
                raise RuntimeError("streamer run was not assigned its partitions within 60 s")
            time.sleep(0.1)
        loader.start()
        deadline = time.monotonic() + seconds + 90
        while time.monotonic() < deadline:
            message = reader.poll(0.05)  # poll, not consume(n): returns as soon as one arrives
            if message is not None and message.error() is None:
                latencies.append(time.time() * 1000 - message.timestamp()[1])
            elif message is None and not loader.is_alive() and len(latencies) >= produced.value:
                break
            if proc.popen.poll() is not None:
                raise RuntimeError(f"streamer run exited with status {proc.popen.returncode}")
        loader.join(30)
        cpu = common.cpu_seconds(proc.popen.pid)  # its own alone (the loader is a child too)
        broker_cpu = common.cpu_seconds(bench.broker_pid) - broker0
        if produced.value < 0 or len(latencies) < produced.value:
            raise RuntimeError(f"read {len(latencies)} of {produced.value} events in time")
    except RuntimeError as exc:
        row.error = str(exc)
    finally:
        reader.close()
        if loader.is_alive():
            loader.terminate()
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(60)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(10)
        proc.memory.stop()
        common.delete_topics(bench.bootstrap, [topics.raw, *topics.outputs])
    if row.error:
        bench.failed += 1
        say(f"{label} latency {name}: FAILED: {row.error}\n{_tail(proc)}")
        return row
    row.events = len(latencies)
    row.event_bytes = round(sum(len(v) for v in common.event_pool(size)) / common.POOL)
    row.events_per_s = round(len(latencies) / seconds)
    row.mb_per_s = round(row.events_per_s * row.event_bytes / 1e6, 1)
    row.cpu_us_per_event = round(cpu / max(len(latencies), 1) * 1e6, 1)
    if bench.broker_pid:
        row.broker_us_per_event = round(broker_cpu / max(len(latencies), 1) * 1e6, 1)
    row.p50_ms = round(common.percentile(latencies, 50), 1)
    row.p99_ms = round(common.percentile(latencies, 99), 1)
    row.max_ms = round(max(latencies), 1)
    memory = proc.memory.summary()
    row.memory = [{"process": proc.name, **memory}]
    row.peak_rss_mb = memory["peak_mb"]
    say(
        f"{label} latency {name}: {len(latencies):,} events, p50 {row.p50_ms} ms, "
        f"p99 {row.p99_ms} ms, max {row.max_ms} ms; RSS at 25/50/75/100 %: "
        f"{memory.get('p25_mb')} / {memory.get('p50_mb')} / {memory.get('p75_mb')} / "
        f"{memory.get('end_mb')} MB"
    )
    return row


def warm_broker(bench: Bench, events: int) -> None:
    """An untimed pass of each kind (transactional and plain pass-through, exactly-once and
    at-least-once streamer) over a small topic: a fresh broker JIT-compiles its produce, fetch
    and transaction paths during its first minute, and the first timed cases would pay."""
    pool = common.event_pool(SIZES[4])
    raw = f"{common.unique('warm')}.raw"
    common.create_topics(bench.bootstrap, [raw])
    common.fill(bench.bootstrap, raw, pool, events)
    for program, delivery in (
        ("passthrough", "exactly-once"),
        ("streamer", "exactly-once"),
        ("passthrough", "at-least-once"),
        ("streamer", "at-least-once"),
    ):
        topics = Topics(raw, common.unique(f"warm-{program}"))
        common.create_topics(bench.bootstrap, topics.outputs)
        group = f"{topics.prefix}-group"
        if program == "streamer":
            argv = [sys.executable, "-m", "streamer", "run", "--stop-when-caught-up"]
        else:
            mode = "txn" if delivery == "exactly-once" else "plain"
            argv = [sys.executable, "-m", "bench.passthrough", "--mode", mode]
            argv.append("--stop-when-caught-up")
        proc = bench.spawn(f"warm-up-{program}-{delivery}", argv,
                           bench.env(topics, group, delivery, f"{group}-0"))  # fmt: skip
        try:
            code = proc.popen.wait(120)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            code = proc.popen.wait(10)
        proc.memory.stop()
        if code != 0:
            say(f"  warm-up {program} {delivery} exited with status {code}:\n{_tail(proc)}")
        common.delete_topics(bench.bootstrap, topics.outputs)
    common.delete_topics(bench.bootstrap, [raw])


# -- the run -----------------------------------------------------------------------------------


def run_size(bench: Bench, key: int, events: int, quick: bool, two: bool) -> None:
    pool = common.event_pool(SIZES[key])
    mean = sum(len(v) for v in pool) / len(pool)
    label = _label(mean)
    bench.rows.append(mask_core(label, pool, quick))
    raw = f"{common.unique(f'{key}kb')}.raw"
    common.create_topics(bench.bootstrap, [raw])
    say(f"{label}: writing {events:,} events ({events * mean / 1e6:,.0f} MB) to {raw}")
    nbytes = common.fill(bench.bootstrap, raw, pool, events)
    ends = common.end_offsets(bench.bootstrap, raw)
    assert sum(ends.values()) == events, ends
    plan = [
        ("pass-through txn", "passthrough", "exactly-once", 1),
        ("streamer exactly-once", "streamer", "exactly-once", 1),
        ("pass-through plain", "passthrough", "at-least-once", 1),
        ("streamer at-least-once", "streamer", "at-least-once", 1),
    ]
    if two:
        plan += [
            ("pass-through txn x2", "passthrough", "exactly-once", 2),
            ("streamer exactly-once x2", "streamer", "exactly-once", 2),
        ]
    try:
        for case, program, delivery, processes in plan:
            row = throughput(
                bench, case, label, raw, ends, nbytes,
                program=program, delivery=delivery, processes=processes,
            )  # fmt: skip
            bench.rows.append(row)
    finally:
        common.delete_topics(bench.bootstrap, [raw])


def _ratios(rows: list[Row]) -> None:
    by = {(r.size, r.case): r for r in rows}
    for r in rows:
        base = {
            "streamer exactly-once": "pass-through txn",
            "streamer at-least-once": "pass-through plain",
            "streamer exactly-once x2": "pass-through txn x2",
        }.get(r.case)
        if r.case.startswith("pass-through"):
            r.baseline, r.ratio = r.case, 1.0 if r.events_per_s else None
        if base is None:
            continue
        ref = by.get((r.size, base))
        if ref is not None and ref.events_per_s and r.events_per_s:
            r.baseline, r.ratio = base, round(r.events_per_s / ref.events_per_s, 2)


def _targets(rows: list[Row]) -> list[dict[str, Any]]:
    by = {(r.size, r.case): r for r in rows}
    four = next((r.size for r in rows if r.size == "4 KB"), None) or (rows[0].size if rows else "")
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, target: str, ok: bool | None) -> None:
        out.append({"target": name, "value": value, "wanted": target, "met": ok})

    eos = by.get((four, "streamer exactly-once"))
    add(f"exactly-once / pass-through txn at {four}", eos.ratio if eos else None,
        f">= {TARGET_EOS_RATIO}", eos is not None and eos.ratio is not None
        and eos.ratio >= TARGET_EOS_RATIO)  # fmt: skip
    alo = by.get((four, "streamer at-least-once"))
    add(f"at-least-once / pass-through plain at {four}", alo.ratio if alo else None,
        f">= {TARGET_ALO_RATIO}", alo is not None and alo.ratio is not None
        and alo.ratio >= TARGET_ALO_RATIO)  # fmt: skip
    two = by.get((four, "streamer exactly-once x2"))
    if two is not None and eos is not None and two.events_per_s and eos.events_per_s:
        scale = round(two.events_per_s / eos.events_per_s, 2)
        add(f"two processes / one process, exactly-once at {four}", scale,
            f">= {TARGET_SCALING}", scale >= TARGET_SCALING)  # fmt: skip
        pt1, pt2 = by.get((four, "pass-through txn")), by.get((four, "pass-through txn x2"))
        if pt1 and pt2 and pt1.events_per_s and pt2.events_per_s:
            ceiling = round(pt2.events_per_s / pt1.events_per_s, 2)
            add(f"(for reference) two / one pass-through txn at {four}", ceiling, "-", None)
    lat = next((r for r in rows if r.case.startswith("latency streamer")), None)
    if lat is not None:
        add("p99 latency at half load, exactly-once (ms)", lat.p99_ms, f"< {TARGET_P99_MS:g}",
            lat.p99_ms is not None and lat.p99_ms < TARGET_P99_MS)  # fmt: skip
        growth = lat.memory[0].get("second_half_growth_mb") if lat.memory else None
        add("RSS growth over the second half of the steady run (MB)", growth,
            f"<= {FLAT_MB:g} (flat)", growth is not None and growth <= FLAT_MB)  # fmt: skip
    return out


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def render(rows: list[Row], targets: list[dict[str, Any]]) -> str:
    cols = [
        ("case", 46, "<"), ("events", 9, ">"), ("events/s", 10, ">"), ("wall/s", 9, ">"),
        ("MB/s", 7, ">"), ("x base", 7, ">"), ("CPU us/ev", 10, ">"),
        ("broker us/ev", 13, ">"), ("p50 ms", 8, ">"), ("p99 ms", 8, ">"),
        ("peak RSS MB", 12, ">"),
    ]  # fmt: skip
    head = "".join(f"{name:{align}{width}}" for name, width, align in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.error:
            lines.append(f"{r.size + ' ' + r.case:<46} FAILED: {r.error}")
            continue
        cells = [
            f"{r.size} {r.case}", _fmt(r.events), _fmt(r.events_per_s),
            _fmt(r.wall_events_per_s), _fmt(r.mb_per_s, ".1f"), _fmt(r.ratio, ".2f"),
            _fmt(r.cpu_us_per_event, ",.1f"), _fmt(r.broker_us_per_event, ",.1f"),
            _fmt(r.p50_ms, ".1f"), _fmt(r.p99_ms, ".1f"),
            _fmt(r.peak_rss_mb, ".1f"),
        ]  # fmt: skip
        lines.append("".join(f"{c:{a}{w}}" for c, (_, w, a) in zip(cells, cols, strict=True)))
    checked = [r for r in rows if r.check is not None]
    bad = [r for r in checked if r.check != "ok"]
    lines.append("")
    for r in bad:
        lines.append(f"CHECK FAILED for {r.size} {r.case}: {r.check}")
    if checked and not bad:
        lines.append(
            f"outputs checked for all {len(checked)} throughput cases: every event committed "
            "once in public and once in archive (read_committed), none quarantined, no "
            "sensitive value in a streamer copy"
        )
    lines.append("")
    lines.append("targets (figures, not tests):")
    for t in targets:
        met = {True: "met", False: "NOT met", None: ""}[t["met"]]
        lines.append(f"  {t['target']:<58} {_fmt(t['value'], '.2f'):>8}  {t['wanted']:<14} {met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="20,000 events at 4 KB, one process, 10 s of load"
    )
    parser.add_argument("--sizes", help="comma-separated KB sizes out of 1,4,64")
    parser.add_argument("--events", type=int, help="events at 4 KB (others scaled by bytes)")
    parser.add_argument("--repeat", type=int, default=1, help="passes per case; best is kept")
    parser.add_argument("--latency-seconds", type=float, help="steady-load duration")
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="steady load in events/s (default: half the exactly-once rate)",
    )
    parser.add_argument(
        "--latency-only", action="store_true", help="only the latency case (needs --latency-rate)"
    )
    parser.add_argument("--no-two", action="store_true", help="skip the two-process cases")
    parser.add_argument(
        "--two", action="store_true", help="with --quick: run the two-process cases anyway"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the output counts")
    parser.add_argument("--output", type=Path, help="JSON file (default bench-results/e2e.json)")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.latency_only and not args.latency_rate:
        parser.error("--latency-only needs --latency-rate")
    sizes = [int(s) for s in (args.sizes or ("4" if quick else "1,4,64")).split(",")]
    if any(s not in SIZES for s in sizes):
        parser.error(f"--sizes takes values out of {sorted(SIZES)}")
    base_events = args.events or (QUICK_EVENTS if quick else FULL_BYTES_EVENTS)
    seconds = args.latency_seconds or (10.0 if quick else 30.0)
    output = args.output or Path("bench-results") / ("e2e-quick.json" if quick else "e2e.json")
    settings = load_settings()  # what the cases share: batch size, commit interval, client props

    load_before = os.getloadavg()
    cores = os.cpu_count() or 1
    say(
        f"python {platform.python_version()}, confluent-kafka {confluent_kafka.__version__}, "
        f"librdkafka {confluent_kafka.libversion()[0]}, {cores} cores, load average "
        f"{load_before[0]:.2f}; batch size {settings.batch_size}, commit interval "
        f"{settings.commit_interval_ms} ms, {PARTITIONS} partitions"
    )
    if load_before[0] > cores / 2:
        say(f"the machine is busy (load {load_before[0]:.1f} on {cores} cores): figures are noisy")
    logs = Path("bench-results") / "e2e-logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    started = time.monotonic()
    with common.kafka() as (bootstrap, broker_pid):
        common.warm_up(bootstrap)
        bench = Bench(bootstrap, broker_pid, logs, max(args.repeat, 1), verify=not args.no_verify)
        say("warming the broker up: one untimed pass of each kind over 5,000 events")
        warm_broker(bench, 5_000)
        eos_rate: float | None = None
        for key in sorted(sizes, key=lambda k: k != 4) if not args.latency_only else []:
            events = max(round(base_events * SIZES[4] / SIZES[key]), 1_000)
            if key != 4:
                say(f"{key} KB: {events:,} events, so every size moves about the same bytes")
            # Two processes need a run long enough for the second to join before the first has
            # done the work: not so at 20,000 events, so --quick leaves them out.
            two = (args.two or not quick) and not args.no_two and key == 4
            run_size(bench, key, events, quick, two=two)
            if eos_rate is None:  # 4 KB runs first: its rate sets the latency load
                eos = next(
                    (r for r in bench.rows if r.case == "streamer exactly-once" and not r.error),
                    None,
                )
                eos_rate = eos.events_per_s if eos else None
        rate = args.latency_rate or (eos_rate / 2 if eos_rate else None)
        if rate:
            size = SIZES[4] if 4 in sizes else SIZES[sizes[0]]
            for program in ("passthrough", "streamer"):
                bench.rows.append(latency(bench, size, rate, seconds, program))
        else:
            say("latency: skipped, there is no exactly-once rate to halve")
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    _ratios(bench.rows)
    targets = _targets(bench.rows)
    print()
    busy = load_before[0] > cores / 2 or load_after[0] > cores / 2
    print(
        f"streamer end to end, {'quick' if quick else 'full'} run in {elapsed:.0f} s; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after on {cores} cores"
        + (" (MEASURED UNDER OTHER LOAD: noisy)" if busy else "")
    )
    print(
        "events/s excludes start-up (first committed output -> all offsets committed); wall/s "
        "is process start -> exit; MB/s = raw bytes in;\nx base = events/s over the pass-through "
        "with the same delivery and processes; CPU us/ev = CPU of the processes under test,\n"
        "broker us/ev = CPU of the local broker, per event"
    )
    if len(sizes) > 1:
        print(f"each size moves about {base_events * SIZES[4] / 1e6:,.0f} MB of raw events")
    print(render(bench.rows, targets))
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": {
            "quick": quick,
            "python": platform.python_version(),
            "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0],
            "cores": cores,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "batch_size": settings.batch_size,
            "commit_interval_ms": settings.commit_interval_ms,
            "partitions": PARTITIONS,
            "seconds": round(elapsed, 1),
            "commit": _git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "rows": [asdict(r) for r in bench.rows],
        "targets": targets,
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {output}; process logs in {logs}")
    return 1 if bench.failed else 0


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


if __name__ == "__main__":
    sys.exit(main())
