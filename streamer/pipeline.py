"""PURE: one raw record in, a routed result or a rejection out. Errors are data here; the Kafka
layer decides where each goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamer.masking import Masked, Reason, Rejected, mask_event
from streamer.policy import POLICY_VERSION, REDACTED, KeyPolicy, Policy

Headers = Sequence[tuple[str, bytes | None]]

HEADER_POLICY = "streamer-policy"
HEADER_POLICY_VERSION = "streamer-policy-version"
HEADER_REDACTIONS = "streamer-redactions"
HEADER_SOURCE_TOPIC = "streamer-source-topic"
HEADER_SOURCE_PARTITION = "streamer-source-partition"
HEADER_SOURCE_OFFSET = "streamer-source-offset"
HEADER_REASON = "streamer-reason"
_OURS = (
    HEADER_POLICY,
    HEADER_POLICY_VERSION,
    HEADER_REDACTIONS,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_REASON,
)


@dataclass(frozen=True, slots=True)
class Routed:
    """The two copies of one raw record (``None`` values are tombstones) and their redactions."""

    public: bytes | None
    archive: bytes | None
    redactions: Mapping[Policy, Mapping[str, int]]

    def count(self, policy: Policy) -> int:
        return sum(self.redactions.get(policy, {}).values())


TOMBSTONE = Routed(None, None, {})


def process(value: bytes | None, keys: KeyPolicy) -> Routed | Rejected:
    """Apply both policies to one record value: a tombstone stays a tombstone."""
    if value is None:
        return TOMBSTONE
    result = mask_event(value, keys)
    if isinstance(result, Masked):
        return Routed(result.public, result.archive, result.redactions)
    return result


def output_headers(
    raw: Headers | None, policy: Policy, redactions: int, keys: KeyPolicy
) -> list[tuple[str, bytes | None]]:
    """The raw record's headers, as payload: a header named like a key this policy replaces gets
    ``***``; our own header names are never taken from the input. Then ours are added."""
    replaced = keys.replaced_by(policy)
    out: list[tuple[str, bytes | None]] = [
        (name, REDACTED.encode() if name in replaced else value)
        for name, value in raw or ()
        if name not in _OURS
    ]
    out += [
        (HEADER_POLICY, policy.value.encode()),
        (HEADER_POLICY_VERSION, POLICY_VERSION.encode()),
        (HEADER_REDACTIONS, str(redactions).encode()),
    ]
    return out


def quarantine_headers(
    raw: Headers | None, topic: str, partition: int, offset: int, reason: Reason
) -> list[tuple[str, bytes | None]]:
    """Where the record came from and why it was not forwarded. The quarantine topic is as
    sensitive as the raw topics, so the raw headers travel with the raw value."""
    out = [(name, value) for name, value in raw or () if name not in _OURS]
    out += [
        (HEADER_SOURCE_TOPIC, topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
        (HEADER_REASON, reason.value.encode()),
    ]
    return out
