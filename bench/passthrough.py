"""The baseline of `make bench`: a pass-through with the streamer's client settings and batch
loop shape, minus the streamer's own work (records, masking, headers, size checks, metrics).

    python -m bench.passthrough --mode txn|plain [--stop-when-caught-up]

It reads the same STREAMER_* settings as `streamer run` and uses streamer.kafka's
consumer_config/producer_config unchanged. Per batch: consume(BATCH_SIZE, COMMIT_INTERVAL_MS)
-> produce each record's unchanged key, value, headers and timestamp to the route's public and
archive topics (same partition) -> commit:

- ``txn``: one transactional producer; send_offsets_to_transaction + commit_transaction.
- ``plain``: an idempotent producer; flush, check deliveries, then commit the offsets.

So what it reaches is the ceiling the Kafka client (librdkafka through confluent-kafka's
Python binding) sets on this machine for the streamer's loop. Without --stop-when-caught-up it
runs until SIGTERM/SIGINT, finishing the open batch first. A failure exits 1 (no retries: a
baseline that needed them would not be one).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streamer import kafka
from streamer.settings import load_settings

_failed: list[KafkaError] = []


def _delivered(error: KafkaError | None, _message: Message) -> None:
    if error is not None:
        _failed.append(error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.passthrough")
    parser.add_argument("--mode", choices=["txn", "plain"], required=True)
    parser.add_argument("--stop-when-caught-up", action="store_true")
    args = parser.parse_args(argv)
    transactional = args.mode == "txn"

    settings = load_settings()
    route = settings.routes[0]
    outputs = (route.public, route.archive)
    limits = kafka.max_message_bytes(settings, outputs)
    txn_id = (
        (settings.transactional_id or f"{settings.group_id}-passthrough") if transactional else None
    )
    producer = Producer(kafka.producer_config(settings, txn_id, kafka.batch_bytes(limits.values())))
    if transactional:
        producer.init_transactions(30)
    consumer = Consumer(kafka.consumer_config(settings))

    targets: dict[int, int] = {}
    if args.stop_when_caught_up:
        for p in consumer.list_topics(route.raw, timeout=30).topics[route.raw].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(route.raw, p), 30)
            if high > low:
                targets[p] = high
    reached: dict[int, int] = {}
    assigned: set[int] = set()
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def on_assign(_c: object, parts: list[TopicPartition]) -> None:
        assigned.update(p.partition for p in parts)
        print(f"assigned {sorted(p.partition for p in parts)}", file=sys.stderr, flush=True)

    def on_revoke(_c: object, parts: list[TopicPartition]) -> None:
        assigned.difference_update(p.partition for p in parts)

    consumer.subscribe([route.raw], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    started = time.monotonic()
    consumed = transactions = 0
    timeout = settings.commit_interval_ms / 1000
    try:
        while not stopping:
            messages = consumer.consume(settings.batch_size, timeout)
            last: dict[int, int] = {}
            for message in messages:
                error = message.error()
                partition = message.partition() or 0
                if error is None:
                    if transactional and not last:
                        producer.begin_transaction()
                    key, value, headers = message.key(), message.value(), message.headers()
                    timestamp = message.timestamp()[1]
                    for topic in outputs:
                        while True:
                            try:
                                producer.produce(
                                    topic,
                                    value,
                                    key,
                                    partition=partition,
                                    headers=headers or [],
                                    timestamp=timestamp,
                                    on_delivery=None if transactional else _delivered,
                                )
                                break
                            except BufferError:
                                producer.poll(0.1)
                    last[partition] = message.offset() or 0
                    consumed += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    reached[partition] = max(reached.get(partition, 0), message.offset() or 0)
                elif error.fatal():
                    raise KafkaException(error)
            if last:
                offsets = [TopicPartition(route.raw, p, o + 1) for p, o in last.items()]
                if transactional:
                    metadata = consumer.consumer_group_metadata()
                    producer.send_offsets_to_transaction(offsets, metadata, 30)
                    producer.commit_transaction(60)
                else:
                    if producer.flush(60) or _failed:
                        raise KafkaException(_failed[0] if _failed else KafkaError._TIMED_OUT)
                    consumer.commit(offsets=offsets, asynchronous=False)
                transactions += 1
                for p, o in last.items():
                    reached[p] = max(reached.get(p, 0), o + 1)
            if (
                args.stop_when_caught_up
                and assigned
                and all(reached.get(p, 0) >= end for p, end in targets.items())
            ):
                break
    except KafkaException as exc:
        print(f"passthrough: Kafka error {exc.args[0]}", file=sys.stderr)
        return 1
    finally:
        producer.flush(10)
        consumer.close()
    seconds = max(time.monotonic() - started, 1e-9)
    print(
        f"passthrough ({args.mode}): consumed {consumed} events in {seconds:.1f} s "
        f"({consumed / seconds:,.0f}/s); batches committed {transactions}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
