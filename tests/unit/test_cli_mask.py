"""`streamer mask` run as a subprocess, end to end: order, quarantine, exit codes, summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.reference import CONDUCTOR, DATA

STREAMER = [sys.executable, "-m", "streamer"]
CANARY = "CANARY-cli-7f3a"


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    return subprocess.run(
        [*STREAMER, *args], input=stdin, capture_output=True, timeout=60, check=False, env=env
    )


def _events() -> list[bytes]:
    rows = [json.loads(line) for line in (DATA / "rules.jsonl").read_text().splitlines()]
    lines = [json.dumps(r["event"]).encode() for r in rows]
    lines += [
        json.dumps(json.loads(p.read_bytes())).encode() for p in sorted(CONDUCTOR.glob("*.json"))
    ]
    return lines


def test_every_line_masked_in_order_exit_0(tmp_path: Path) -> None:
    lines = _events()
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    proc = run("mask", "--policy", "archive", "--input", str(source), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    written = out.read_bytes().splitlines()
    assert len(written) == len(lines)
    for raw, masked in zip(lines, written, strict=True):
        assert json.loads(masked).keys() == json.loads(raw).keys()
    assert b"events: 16  written: 16  quarantined: 0" in proc.stderr
    assert b"redactions archive (written): _secrets=" in proc.stderr


def test_bad_lines_are_quarantined_never_written_exit_1(tmp_path: Path) -> None:
    good = json.dumps({"_secrets": CANARY, "n": 1}).encode()
    stdin = (
        b"\n".join(
            [good, b"", b'{"_secrets":"' + CANARY.encode() + b'"', b"[1]", b"\xff\xfe", good]
        )
        + b"\n"
    )
    quarantine = tmp_path / "q.jsonl"
    proc = run("mask", "--policy", "public", "--quarantine", str(quarantine), stdin=stdin)
    assert proc.returncode == 1
    assert proc.stdout == b'{"_secrets": "***", "n": 1}\n' * 2
    records = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in records] == [
        (2, "invalid_json"),
        (3, "invalid_json"),
        (4, "not_object"),
        (5, "not_utf8"),
    ]
    assert records[3]["base64"] == "//4="
    assert b"quarantined: 4" in proc.stderr
    assert b"quarantined invalid_json: lines 2, 3" in proc.stderr
    assert CANARY.encode() not in proc.stderr
    assert CANARY.encode() not in proc.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("mask").returncode == 2
    assert run("mask", "--policy", "secret").returncode == 2
    missing = run("mask", "--policy", "public", "--input", str(tmp_path / "missing.jsonl"))
    assert missing.returncode == 2
    assert b"cannot open" in missing.stderr
    overlap = run("mask", "--policy", "public", "--secret-key", "_masked")
    assert overlap.returncode == 2
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text('batch_size = "many"\nno_such_setting = 1\n')
    proc = run("--config", str(bad_config), "mask", "--policy", "public")
    assert proc.returncode == 2
    assert b"setting batch_size" in proc.stderr
    assert b"setting no_such_setting" in proc.stderr


def test_extra_keys_from_the_command_line() -> None:
    proc = run(
        "mask",
        "--policy",
        "archive",
        "--secret-key",
        "password",
        "--masked-key",
        "pii",
        stdin=b'{"password":"p","pii":"x"}\n',
    )
    assert proc.returncode == 0
    assert proc.stdout == b'{"password":"***","pii":"x"}\n'


def test_help_and_version() -> None:
    assert b"mask" in run("--help").stdout
    assert b"--quarantine" in run("mask", "--help").stdout
    assert run("--version").stdout.startswith(b"streamer ")


def test_progress_bar_draws_on_a_terminal_only() -> None:
    import io

    from streamer.maskfile import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = Progress(screen, total_bytes=1000)
    progress.last = -1.0  # draw on the first event
    progress.advance(500)
    progress.close()
    assert "50.0%" in screen.getvalue()
    assert "1 events" in screen.getvalue()
    assert screen.getvalue().endswith("\n")
    piped = io.StringIO()
    quiet = Progress(piped, total_bytes=1000)
    quiet.advance(500)
    quiet.close()
    assert piped.getvalue() == ""
