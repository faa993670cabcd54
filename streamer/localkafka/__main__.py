"""`python -m streamer.localkafka up|down|status`: the broker behind `make kafka-up/down`.

The broker outlives this command, so what `down`/`status` need (pid, ports, folders) is kept
in `$STREAMER_RUN_DIR/kafka.json` (default `.run/kafka.json` under the current directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from streamer.localkafka.broker import Broker, LocalKafkaError, is_running, start, stop


def _state_file() -> Path:
    return Path(os.environ.get("STREAMER_RUN_DIR") or ".run") / "kafka.json"


def _load() -> Broker | None:
    try:
        raw = json.loads(_state_file().read_text())
        return Broker(
            port=int(raw["port"]),
            controller_port=int(raw["controller_port"]),
            data_dir=Path(raw["data_dir"]),
            log_file=Path(raw["log_file"]),
            pid=int(raw["pid"]),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise LocalKafkaError(f"unreadable state file {_state_file()} ({exc}); delete it") from exc


def _save(broker: Broker) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(broker).items()}
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def _alive(broker: Broker | None) -> bool:
    return broker is not None and is_running(broker.pid, broker.data_dir)


def _discard(broker: Broker) -> None:
    """Forget a broker: its data dir was made by `up` for this run only."""
    shutil.rmtree(broker.data_dir, ignore_errors=True)
    _state_file().unlink(missing_ok=True)


def _up() -> int:
    old = _load()
    if old is not None and _alive(old):
        print(f"already running at {old.bootstrap} (pid {old.pid})")
        return 0
    if old is not None:  # left behind by a broker that died or a machine that rebooted
        _discard(old)
    try:
        port = int(os.environ.get("KAFKA_PORT") or 9092)
    except ValueError:
        raise LocalKafkaError(
            f"KAFKA_PORT must be a port number, not {os.environ['KAFKA_PORT']!r}"
        ) from None
    broker = start(port=port)
    _save(broker)
    print(f"Kafka running at {broker.bootstrap} (pid {broker.pid}); logs: {broker.log_file}")
    return 0


def _down() -> int:
    broker = _load()
    if broker is None:
        print("not running")
        return 0
    stop(broker)
    _discard(broker)
    print(f"stopped Kafka at {broker.bootstrap}")
    return 0


def _status() -> int:
    broker = _load()
    if broker is not None and _alive(broker):
        print(f"running at {broker.bootstrap} (pid {broker.pid}); logs: {broker.log_file}")
        return 0
    print("not running")
    return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (errors: one line on stderr, exit 1)."""
    parser = argparse.ArgumentParser(
        prog="python -m streamer.localkafka",
        description="Run a local single-node Kafka broker (port: $KAFKA_PORT, default 9092).",
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        return {"up": _up, "down": _down, "status": _status}[args.command]()
    except LocalKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
