"""A slow, obviously-correct model of masking rules 1-4 over parsed JSON, for comparisons."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
CONDUCTOR = DATA / "conductor"


def reference(
    value: Any,
    policy: str,
    secret: frozenset[str] = frozenset({"_secrets"}),
    masked: frozenset[str] = frozenset({"_masked"}),
) -> Any:
    """The copy ``policy`` makes of ``value``: every replaced key's value becomes ``"***"``."""
    replaced = secret | masked if policy == "public" else secret
    if isinstance(value, dict):
        return {
            k: "***" if k in replaced else reference(v, policy, secret, masked)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [reference(v, policy, secret, masked) for v in value]
    return value


def sensitive_paths() -> dict[str, list[tuple[str, str]]]:
    """PATHS.txt: file name -> [(key, JSON path)]."""
    paths: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in (CONDUCTOR / "PATHS.txt").read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].split(":")[0]
            paths[current] = []
        elif line.strip():
            key, path = line.split()
            paths[current].append((key, path))
    return paths


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def at_path(doc: Any, path: str) -> Any:
    """The value at a ``$.a.b[0].c`` path."""
    assert path.startswith("$")
    for name, index in _STEP.findall(path[1:]):
        doc = doc[int(index)] if index else doc[name]
    return doc
