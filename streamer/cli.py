"""The `streamer` command: argument parsing, wiring and exit codes; nothing else.

Exit codes: 0 success; 1 some events were quarantined (or the job failed); 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, BinaryIO

from streamer import __version__
from streamer.policy import POLICY_VERSION, KeyPolicy, Policy
from streamer.settings import SettingsError, load_settings

EXIT_OK = 0
EXIT_QUARANTINED = 1
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
    return parser


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
    return EXIT_QUARANTINED if summary.quarantined_count else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"mask": _cmd_mask}
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
