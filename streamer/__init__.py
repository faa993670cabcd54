"""streamer: masks Conductor execution events on their way through Kafka."""

__version__ = "0.1.0"
