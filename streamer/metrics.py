"""One metrics object, built on a registry passed in (tests use a fresh one), and the HTTP
endpoint that serves it with ``/healthz`` and ``/readyz``.

Label values come from small fixed sets (route names from the settings, policies, configured
key names, rejection reasons, librdkafka error names, topic-partitions): nothing grows with
workflow ids, names or payloads.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from streamer import __version__
from streamer.masking import Reason
from streamer.policy import POLICY_VERSION, Policy

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_MASK_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1, 1.0)


class Metrics:
    """Every metric streamer exports; see the README's metrics reference."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.redactions = Counter(
            "streamer_redactions",
            "Values replaced with *** by route, policy and sensitive key",
            ["route", "policy", "key"],
            registry=registry,
        )
        self.clean = Counter(
            "streamer_events_clean",
            "Events that needed no redaction in either copy",
            ["route"],
            registry=registry,
        )
        self.consumed = Counter(
            "streamer_events_consumed", "Raw records consumed", ["route"], registry=registry
        )
        self.produced = Counter(
            "streamer_events_produced",
            "Records committed to an output (public, archive or quarantine)",
            ["route", "output"],
            registry=registry,
        )
        self.quarantined = Counter(
            "streamer_events_quarantined",
            "Raw records sent to quarantine, by reason",
            ["route", "reason"],
            registry=registry,
        )
        self.transactions = Counter(
            "streamer_transactions",
            "Kafka transactions (or at-least-once batches) by outcome",
            ["outcome"],
            registry=registry,
        )
        self.delivery_errors = Counter(
            "streamer_delivery_errors",
            "Producer delivery errors by librdkafka error name",
            ["error"],
            registry=registry,
        )
        self.rebalances = Counter(
            "streamer_rebalances", "Consumer group rebalance events", ["kind"], registry=registry
        )
        self.assigned = Gauge(
            "streamer_partitions_assigned", "Raw partitions assigned", registry=registry
        )
        self.lag = Gauge(
            "streamer_consumer_lag",
            "Records behind the end of each assigned raw partition",
            ["topic", "partition"],
            registry=registry,
        )
        self.latency = Histogram(
            "streamer_commit_latency_seconds",
            "From the raw record's timestamp to the commit of its copies",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.mask_seconds = Histogram(
            "streamer_mask_duration_seconds",
            "Masking time per event, both policies",
            buckets=_MASK_BUCKETS,
            registry=registry,
        )
        self.ready = Gauge("streamer_ready", "1 when /readyz answers 200", registry=registry)
        build = Gauge(
            "streamer_build_info",
            "Build information",
            ["version", "policy_version"],
            registry=registry,
        )
        build.labels(__version__, POLICY_VERSION).set(1)

    def prepare(self, routes: list[str], keys: list[str]) -> None:
        """Create every known series at zero, so rates and alerts work from the first scrape."""
        for route in routes:
            self.clean.labels(route)
            self.consumed.labels(route)
            for output in ("public", "archive", "quarantine"):
                self.produced.labels(route, output)
            for reason in Reason:  # a first quarantine must show as an increase from 0
                self.quarantined.labels(route, reason.value)
            for policy in Policy:
                for key in keys:
                    self.redactions.labels(route, policy.value, key)
        for outcome in ("committed", "aborted"):
            self.transactions.labels(outcome)
        for kind in ("assigned", "revoked", "lost"):
            self.rebalances.labels(kind)


class Health:
    """What ``/readyz`` reports: the producer is initialised, partitions are assigned, and the
    last transaction did not fail (or a later one succeeded)."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.producer_ready = False
        self.assigned = False
        self.failing_since: float | None = None
        self.metrics = metrics
        self._lock = threading.Lock()
        if metrics is not None:
            # Read at scrape time: "failing for over 30 s" turns true with no update to set it.
            metrics.ready.set_function(lambda: 1.0 if self.is_ready()[0] else 0.0)

    def update(self, **state: object) -> None:
        with self._lock:
            for name, value in state.items():
                setattr(self, name, value)

    def is_ready(self) -> tuple[bool, str]:
        if not self.producer_ready:
            return False, "producer not initialised"
        if not self.assigned:
            return False, "no partitions assigned"
        if self.failing_since is not None and time.monotonic() - self.failing_since > 30:
            return False, "transactions failing for over 30 s"
        return True, "ready"


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port, in a daemon thread."""

    def __init__(self, metrics: Metrics, health: Health, host: str, port: int) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n")
                elif path == "/readyz":
                    ready, why = health.is_ready()
                    self._send(200 if ready else 503, why.encode() + b"\n")
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

            def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Scrapes are not worth a log line each."""

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
