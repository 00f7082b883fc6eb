"""Prometheus metrics the collector exposes about itself."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class CollectorMetrics:
    received: Counter
    accepted: Counter
    rejected: Counter
    requests: Counter
    queue_rows: Gauge
    queue_bytes: Gauge
    wal_bytes: Gauge
    flush_seconds: Histogram
    flush_rows: Counter
    flush_errors: Counter
    #: Export requests refused by ingest authentication, by reason ("unauthenticated", "rate_limited")
    refusals: Counter
    #: Items accepted per ingest token, labelled with the token's name (never the token)
    token_items: Counter
    #: Export requests identical to one already logged (a client's retry), acknowledged without
    #: being written again (collector/dedup.py)
    duplicates: Counter
    #: Export requests whose client disconnected before sending its whole body, by receiver
    #: ("otlp_http", "zipkin"): nothing was answered or stored
    aborted: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CollectorMetrics:
        """Register the collector's metrics in ``registry`` (not the process-wide default)."""
        return cls(
            received=Counter(
                "sloscope_items_received",
                "Spans, log records or metric points received",
                ["signal"],
                registry=registry,
            ),
            accepted=Counter(
                "sloscope_items_accepted",
                "Items written to the write-ahead log and acknowledged",
                ["signal"],
                registry=registry,
            ),
            rejected=Counter(
                "sloscope_items_rejected", "Items refused, by reason", ["signal", "reason"], registry=registry
            ),
            requests=Counter(
                "sloscope_export_requests",
                "Export requests by outcome",
                ["signal", "transport", "code"],
                registry=registry,
            ),
            queue_rows=Gauge(
                "sloscope_queue_rows",
                "Acknowledged items not yet in the store",
                ["signal"],
                registry=registry,
            ),
            queue_bytes=Gauge(
                "sloscope_queue_bytes",
                "Bytes of acknowledged requests not yet in the store",
                ["signal"],
                registry=registry,
            ),
            wal_bytes=Gauge(
                "sloscope_wal_bytes",
                "Size of the write-ahead log segments on disk",
                ["signal"],
                registry=registry,
            ),
            flush_seconds=Histogram(
                "sloscope_flush_seconds",
                "Time to write one batch into the store",
                ["signal"],
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=registry,
            ),
            flush_rows=Counter(
                "sloscope_flushed_items", "Items written into the store", ["signal"], registry=registry
            ),
            flush_errors=Counter(
                "sloscope_flush_errors",
                "Failed attempts to write a batch into the store",
                ["signal"],
                registry=registry,
            ),
            refusals=Counter(
                "sloscope_ingest_refusals",
                "Export requests refused by ingest authentication, by reason",
                ["signal", "reason"],
                registry=registry,
            ),
            token_items=Counter(
                "sloscope_ingest_token_items",
                "Items accepted per ingest token (the token's name in the tokens file)",
                ["token", "signal"],
                registry=registry,
            ),
            duplicates=Counter(
                "sloscope_duplicate_requests",
                "Export requests identical to one already in the write-ahead log (a retry), not logged again",
                ["signal"],
                registry=registry,
            ),
            aborted=Counter(
                "sloscope_requests_aborted",
                "Export requests abandoned by their client before the whole body arrived",
                ["receiver"],
                registry=registry,
            ),
        )
