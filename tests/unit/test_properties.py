"""Property-based tests of the masking rules against the reference model in tests/reference.py."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.masking import Masked, mask_event
from streamer.policy import Policy
from tests.reference import reference

NAMES = ["_secrets", "_masked"]
_canary = itertools.count()

keys = st.one_of(
    st.sampled_from(
        [*NAMES, *NAMES, "_Secrets", "secrets", "_secrets_", "_masked ", "maskedEmail"]
    ),
    st.text(max_size=6).filter(lambda k: not any(n in k for n in NAMES)),
)
plain_text = st.text(max_size=12).filter(lambda t: not any(n in t for n in NAMES))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    plain_text,
)


def _plant(value: Any) -> Any:
    """Make every string leaf a unique canary, so its absence from public can be checked."""
    if isinstance(value, dict):
        return {k: _plant(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plant(v) for v in value]
    if isinstance(value, str) or value is None:
        return f"CANARY{next(_canary)}x"
    return value


trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=30,
)
events = st.dictionaries(keys, trees, min_size=1, max_size=6)


@st.composite
def encoded(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    event = _plant_under_sensitive(draw(events))
    indent = draw(st.sampled_from([None, 0, 2]))
    separators = draw(st.sampled_from([None, (",", ":"), (" , ", " : ")]))
    text = json.dumps(event, indent=indent, separators=separators, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):  # spell some names with escapes: "\u005fsecrets" is _secrets
        text = re.sub(r'"_(secrets|masked)"(\s*):', r'"\\u005f\1"\2:', text)
    return event, text.encode()


def _plant_under_sensitive(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plant(v) if k in NAMES else _plant_under_sensitive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plant_under_sensitive(v) for v in value]
    return value


def _canaries(value: Any, under: str | None = None) -> list[tuple[str, str | None]]:
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            inner = (
                "_secrets" if "_secrets" in (under, k) else (under or (k if k in NAMES else None))
            )
            out.extend(_canaries(v, inner))
        return out
    if isinstance(value, list):
        return [c for v in value for c in _canaries(v, under)]
    return [(value, under)] if isinstance(value, str) and value.startswith("CANARY") else []


def _outermost(value: Any, replaced: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if k in replaced:
                counts[k] = counts.get(k, 0) + 1
            else:
                for kk, n in _outermost(v, replaced).items():
                    counts[kk] = counts.get(kk, 0) + n
    elif isinstance(value, list):
        for v in value:
            for kk, n in _outermost(v, replaced).items():
                counts[kk] = counts.get(kk, 0) + n
    return counts


def _mask(raw: bytes) -> Masked:
    result = mask_event(raw)
    assert isinstance(result, Masked), result
    return result


@settings(max_examples=400, deadline=None)
@given(encoded())
def test_copies_equal_the_reference_model(case: tuple[dict[str, Any], bytes]) -> None:
    event, raw = case
    result = _mask(raw)
    assert json.loads(result.public) == reference(event, "public")
    assert json.loads(result.archive) == reference(event, "archive")
    assert dict(result.redactions.get(Policy.PUBLIC, {})) == _outermost(event, set(NAMES))
    assert dict(result.redactions.get(Policy.ARCHIVE, {})) == _outermost(event, {"_secrets"})


@settings(max_examples=300, deadline=None)
@given(encoded())
def test_no_planted_value_survives_in_public_and_masked_ones_survive_in_archive(
    case: tuple[dict[str, Any], bytes],
) -> None:
    event, raw = case
    result = _mask(raw)
    public, archive = result.public.decode(), result.archive.decode()
    for canary, under in _canaries(event):
        assert canary not in public
        assert (canary in archive) == (under == "_masked")


@settings(max_examples=300, deadline=None)
@given(encoded())
def test_applying_a_policy_twice_is_applying_it_once(case: tuple[dict[str, Any], bytes]) -> None:
    _, raw = case
    once = _mask(raw)
    assert _mask(once.public).public == once.public
    assert _mask(once.archive).archive == once.archive
    assert _mask(once.public).count(Policy.PUBLIC) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(keys.filter(lambda k: k not in NAMES), trees, min_size=1, max_size=6),
    st.sampled_from([None, 1]),
    st.booleans(),
)
def test_events_without_sensitive_keys_come_out_byte_for_byte(
    event: dict[str, Any], indent: int | None, ascii_only: bool
) -> None:
    if _outermost(event, set(NAMES)):
        return
    raw = json.dumps(event, indent=indent, ensure_ascii=ascii_only).encode()
    result = _mask(raw)
    assert result.public == raw
    assert result.archive == raw
