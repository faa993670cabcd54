"""The `streamer` command: argument parsing, wiring and exit codes; nothing else.

Exit codes: 0 success; 1 some events were quarantined (or the job failed); 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, BinaryIO

from streamer import __version__
from streamer.policy import POLICY_VERSION, KeyPolicy, Policy
from streamer.settings import Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake in the command line or configuration: exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer",
        description="Masks Conductor's _secrets and _masked values in workflow and task "
        "execution events: a public copy, an archive copy, and a quarantine for the rest.",
    )
    parser.add_argument(
        "--version", action="version", version=f"streamer {__version__} (policy {POLICY_VERSION})"
    )
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (STREAMER_* variables win over it)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    mask = sub.add_parser(
        "mask",
        help="mask JSON Lines files offline (no Kafka)",
        description="Apply one policy to a JSON Lines file: one output line per input line, in "
        "order; lines that cannot be proven safe go to the quarantine file instead. Exit 0 when "
        "every line was masked, 1 when some were quarantined, 2 on usage errors.",
    )
    mask.add_argument("--policy", required=True, choices=[p.value for p in Policy])
    mask.add_argument("--input", default="-", help="JSON Lines input; - or absent: stdin")
    mask.add_argument("--output", default="-", help="JSON Lines output; - or absent: stdout")
    mask.add_argument(
        "--quarantine",
        help="where rejected lines go, as JSON with line, reason and the original text "
        "(as sensitive as the input); absent: they are only counted in the summary",
    )
    mask.add_argument(
        "--secret-key",
        action="append",
        default=[],
        metavar="NAME",
        help="another member name treated like _secrets (repeatable)",
    )
    mask.add_argument(
        "--masked-key",
        action="append",
        default=[],
        metavar="NAME",
        help="another member name treated like _masked (repeatable)",
    )
    run = sub.add_parser(
        "run",
        help="the service: consume raw topics, produce public and archive copies",
        description="Consume the raw topics and produce, per event, a public copy, an archive copy "
        "(or a quarantine record), committed exactly once with the consumed offsets. Settings come "
        "from STREAMER_* variables and --config; see the README.",
    )
    run.add_argument(
        "--stop-when-caught-up",
        action="store_true",
        help="stop after the end offsets present at start are committed (backfills, tests, demo)",
    )
    topics = sub.add_parser("topics", help="manage the topics streamer reads and writes")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    topics_sub.add_parser(
        "create",
        help="create the raw, public, archive and quarantine topics (safe to run twice)",
        description="Create every topic of the configured routes and the quarantine topic, with "
        "STREAMER_TOPIC_PARTITIONS partitions and STREAMER_TOPIC_REPLICATION replicas; the archive "
        "topics keep data forever. Existing topics are left as they are.",
    )
    demo = sub.add_parser(
        "demo",
        help="produce the bundled sample events, run once, show raw vs public vs archive",
        description="Create the topics, produce the bundled Conductor sample events (and one "
        "poison record), run `streamer run --stop-when-caught-up`, then print raw, public and "
        "archive side by side and the counts per topic. Uses STREAMER_BOOTSTRAP_SERVERS.",
    )
    demo.add_argument("--show", type=int, default=3, help="events to show side by side")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException
    from prometheus_client import CollectorRegistry

    from streamer.kafka import UnreachableError
    from streamer.metrics import Health, Metrics, MetricsServer
    from streamer.runner import FatalKafkaError, Runner, default_transactional_id

    settings = _settings(args)
    _configure_logging(settings.log_level)
    log = logging.getLogger("streamer")
    metrics = Metrics(CollectorRegistry())
    metrics.prepare([r.name for r in settings.routes], sorted(settings.keys.all_keys))
    health = Health(metrics)
    server = None
    if settings.metrics_port:
        try:
            server = MetricsServer(metrics, health, settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            raise UsageError(
                f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: "
                f"{exc.strerror} (set STREAMER_METRICS_PORT, 0 disables)"
            ) from None
        server.start()
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.port)
    txn_id = default_transactional_id(settings, socket.gethostname)
    log.info(
        "streamer %s: %s, group %s, %s, routes %s",
        __version__,
        settings.bootstrap_servers,
        settings.group_id,
        settings.delivery.value
        + (f" (transactional id {txn_id})" if settings.exactly_once else ""),
        ", ".join(f"{r.raw} -> {r.public} + {r.archive}" for r in settings.routes),
    )
    runner = Runner(settings, metrics, health, txn_id, args.stop_when_caught_up)
    runner.install_signal_handlers()
    try:
        summary = runner.run()
    except (FatalKafkaError, UnreachableError) as exc:
        log.error("stopping: %s", exc)
        return EXIT_FAILURE
    except KafkaException as exc:
        log.error("stopping: Kafka error %s: %s", exc.args[0].name(), exc.args[0].str())
        return EXIT_FAILURE
    finally:
        if server is not None:
            server.stop()
    print(summary.render(), file=sys.stderr)
    return EXIT_OK


def _cmd_topics(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from streamer.kafka import UnreachableError, create_topics

    settings = _settings(args)
    try:
        for topic, outcome in create_topics(settings):
            print(f"{outcome:<8} {topic}")
    except UnreachableError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KafkaException as exc:
        print(f"streamer: cannot create topics: {exc.args[0].str()}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from streamer.demo import run_demo

    return run_demo(_settings(args), args.config, args.show)


def _open(stack: contextlib.ExitStack, path: str, mode: str, std: IO[bytes]) -> BinaryIO:
    """A file opened for the command's duration; ``-`` is the standard stream."""
    if path == "-":
        return std  # type: ignore[return-value]
    try:
        return stack.enter_context(open(path, mode))  # type: ignore[return-value]
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None


def _cmd_mask(args: argparse.Namespace) -> int:
    from streamer.maskfile import mask_lines, open_progress

    settings = load_settings(args.config) if args.config else None
    secret = set(settings.secret_keys if settings else ("_secrets",)) | set(args.secret_key)
    masked = set(settings.masked_keys if settings else ("_masked",)) | set(args.masked_key)
    try:
        keys = KeyPolicy(frozenset(secret), frozenset(masked))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    policy = Policy(args.policy)
    with contextlib.ExitStack() as stack:
        source = _open(stack, args.input, "rb", sys.stdin.buffer)
        sink = _open(stack, args.output, "wb", sys.stdout.buffer)
        quarantine = (
            _open(stack, args.quarantine, "wb", sys.stdout.buffer) if args.quarantine else None
        )
        summary = mask_lines(source, sink, quarantine, policy, keys, open_progress(source))
        sink.flush()
    print(summary.render(policy), file=sys.stderr)
    return EXIT_FAILURE if summary.quarantined_count else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"mask": _cmd_mask, "run": _cmd_run, "topics": _cmd_topics, "demo": _cmd_demo}
    try:
        return handlers[args.command](args)
    except (UsageError, SettingsError) as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
