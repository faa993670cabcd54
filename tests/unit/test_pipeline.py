"""The pure pipeline: routed copies, tombstones, rejections, and the headers of each output."""

from __future__ import annotations

from streamer.masking import Reason, Rejected
from streamer.pipeline import (
    HEADER_POLICY,
    HEADER_REASON,
    HEADER_REDACTIONS,
    HEADER_SOURCE_OFFSET,
    TOMBSTONE,
    Routed,
    output_headers,
    process,
    quarantine_headers,
)
from streamer.policy import DEFAULT_KEYS, Policy


def test_routed_copies_and_counts() -> None:
    result = process(b'{"_secrets":1,"_masked":2}', DEFAULT_KEYS)
    assert isinstance(result, Routed)
    assert result.public == b'{"_secrets":"***","_masked":"***"}'
    assert result.archive == b'{"_secrets":"***","_masked":2}'
    assert (result.count(Policy.PUBLIC), result.count(Policy.ARCHIVE)) == (2, 1)


def test_tombstone_stays_a_tombstone() -> None:
    assert process(None, DEFAULT_KEYS) is TOMBSTONE
    assert TOMBSTONE.public is None
    assert TOMBSTONE.archive is None


def test_rejection_is_data() -> None:
    result = process(b"nope", DEFAULT_KEYS)
    assert isinstance(result, Rejected)
    assert result.reason is Reason.INVALID_JSON


def test_output_headers_keep_raw_ones_mask_sensitive_names_and_add_ours() -> None:
    raw = [("trace", b"t"), ("_secrets", b"hunter2"), ("_masked", b"m"), (HEADER_POLICY, b"forged")]
    public = output_headers(raw, Policy.PUBLIC, 3, DEFAULT_KEYS)
    archive = output_headers(raw, Policy.ARCHIVE, 1, DEFAULT_KEYS)
    assert public == [
        ("trace", b"t"),
        ("_secrets", b"***"),
        ("_masked", b"***"),
        (HEADER_POLICY, b"public"),
        ("streamer-policy-version", b"1"),
        (HEADER_REDACTIONS, b"3"),
    ]
    assert ("_masked", b"m") in archive
    assert ("_secrets", b"***") in archive
    assert (HEADER_POLICY, b"forged") not in archive


def test_quarantine_headers_name_the_source_and_reason() -> None:
    headers = dict(quarantine_headers([("trace", b"t")], "raw", 2, 41, Reason.NOT_UTF8))
    assert headers["trace"] == b"t"
    assert headers[HEADER_SOURCE_OFFSET] == b"41"
    assert headers[HEADER_REASON] == b"not_utf8"
