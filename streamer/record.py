"""A consumed Kafka message as plain typed data: the edge between confluent-kafka and the rest."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

Coordinates = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class Record:
    """The parts of a consumed message the pipeline needs, typed once at the edge."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int

    @classmethod
    def of(cls, message: Message) -> Record:
        ts_type, ts = message.timestamp()
        raw_headers = message.headers() or []
        headers = [
            (n, v.encode() if isinstance(v, str) else v)
            for n, v in (raw_headers.items() if isinstance(raw_headers, dict) else raw_headers)
        ]
        key, value = message.key(), message.value()
        return cls(
            topic=str(message.topic()),
            partition=int(message.partition() or 0),
            offset=int(message.offset() or 0),
            key=key.encode() if isinstance(key, str) else key,
            value=value.encode() if isinstance(value, str) else value,
            headers=headers,
            timestamp=ts if ts_type != TIMESTAMP_NOT_AVAILABLE else 0,
        )

    @property
    def coordinates(self) -> Coordinates:
        return (self.topic, self.partition, self.offset)
