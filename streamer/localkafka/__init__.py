"""A local, Docker-free Apache Kafka broker for development and tests.

The broker jars come from Maven Central (resolved once by `mvn` into a cache) and run as a
plain `java` process on 127.0.0.1. `python -m streamer.localkafka up|down|status` drives it
for `make kafka-up` / `make kafka-down`; tests call `start()` / `stop()` directly.
"""

from streamer.localkafka.broker import (
    KAFKA_VERSION,
    Broker,
    LocalKafkaError,
    cache_dir,
    ensure_jars,
    is_running,
    start,
    stop,
)

__all__ = [
    "KAFKA_VERSION",
    "Broker",
    "LocalKafkaError",
    "cache_dir",
    "ensure_jars",
    "is_running",
    "start",
    "stop",
]
