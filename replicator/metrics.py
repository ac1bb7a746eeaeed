"""Prometheus metrics: the only module that imports prometheus-client.

`PrometheusSensor` implements the neutral `Sensor` hooks; `MetricsServer` serves `/metrics` and a
`/healthz` liveness answer on the configured address. Names follow Prometheus conventions with the
`replicator_` prefix. No label or value ever holds a secret.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, make_wsgi_app

from replicator import __version__
from replicator.errors import ConfigError

TASK_STATES = ("RUNNING", "FAILED", "PAUSED", "UNASSIGNED", "RESTARTING")


class PrometheusSensor:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        Info("replicator_build", "Version of replicator.", registry=self.registry).info({"version": __version__})
        self._connector_up = Gauge(
            "replicator_connector_up", "1 when the Debezium connector and all its tasks are RUNNING.",
            ["connector"], registry=self.registry,
        )
        self._connector_tasks = Gauge(
            "replicator_connector_tasks", "Connector tasks by state.", ["connector", "state"], registry=self.registry,
        )
        self._errors = Counter(
            "replicator_service_errors", "Errors the service loop recovered from, by stage.", ["stage"],
            registry=self.registry,
        )

        self._events = Counter(
            "replicator_apply_events", "Change events applied to the target, by target table and op.",
            ["table", "op"], registry=self.registry,
        )
        self._batch_events = Histogram(
            "replicator_apply_batch_events", "Events per committed batch.",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000), registry=self.registry,
        )
        self._batch_seconds = Histogram(
            "replicator_apply_batch_seconds", "Time from a batch's first fetch to its commit.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry,
        )
        self._lag = Gauge(
            "replicator_replication_lag_seconds",
            "Max over partitions of now minus the source commit time of the oldest unapplied event; 0 when caught up.",
            registry=self.registry,
        )
        self._lag_source = Gauge(
            "replicator_replication_lag_source_seconds", "The part of the lag spent before the event reached Kafka.",
            registry=self.registry,
        )
        self._lag_target = Gauge(
            "replicator_replication_lag_target_seconds", "The part of the lag spent between Kafka and the target.",
            registry=self.registry,
        )
        self._consumer_lag = Gauge(
            "replicator_consumer_lag_messages", "High watermark minus our next offset, per partition.",
            ["topic", "partition"], registry=self.registry,
        )
        self._retries = Counter(
            "replicator_apply_retries", "Batches retried after a transient failure, by reason.", ["reason"],
            registry=self.registry,
        )
        self._skipped = Counter(
            "replicator_apply_skipped_events", "Events not applied on purpose, by reason.", ["reason"],
            registry=self.registry,
        )
        self._snapshot_rows = Counter(
            "replicator_snapshot_rows", "Rows copied by the snapshot, by source table.", ["table"],
            registry=self.registry,
        )
        self._snapshot_bytes = Counter(
            "replicator_snapshot_bytes", "Bytes streamed by the snapshot copy, by source table.", ["table"],
            registry=self.registry,
        )
        self._snapshot_chunks = Counter(
            "replicator_snapshot_chunks", "Snapshot chunks committed, by source table.", ["table"],
            registry=self.registry,
        )
        self._snapshot_released = Gauge(
            "replicator_snapshot_table_released", "1 when the table's copy is done and it is handed to the stream.",
            ["table"], registry=self.registry,
        )
        self._reconcile_rows = Counter(
            "replicator_reconcile_rows", "Rows hashed by the reconciler, by source table.", ["table"],
            registry=self.registry,
        )
        self._reconcile_chunks = Counter(
            "replicator_reconcile_chunks", "Chunks hashed on both sides by the reconciler, by source table.",
            ["table"], registry=self.registry,
        )
        self._reconcile_differences = Gauge(
            "replicator_reconcile_differences", "Confirmed differing rows of the last pass, by source table.",
            ["table"], registry=self.registry,
        )
        self._reconcile_clean = Gauge(
            "replicator_reconcile_last_clean_pass_timestamp_seconds",
            "When the last pass that found no difference ended, by source table (unix time).",
            ["table"], registry=self.registry,
        )
        self._dead = Counter(
            "replicator_apply_dead_letters", "Events sent to the dead-letter topic and table, by table.", ["table"],
            registry=self.registry,
        )

    def on_apply_batch(self, counts: dict[tuple[str, str], int], events: int, seconds: float) -> None:
        for (table, op), count in counts.items():
            self._events.labels(table, op).inc(count)
        self._batch_events.observe(events)
        self._batch_seconds.observe(seconds)

    def on_apply_lag(self, total_s: float, source_s: float, target_s: float,
                     consumer_lag: dict[tuple[str, int], int]) -> None:
        self._lag.set(total_s)
        self._lag_source.set(source_s)
        self._lag_target.set(target_s)
        for (topic, partition), behind in consumer_lag.items():
            self._consumer_lag.labels(topic, str(partition)).set(behind)

    def on_apply_retry(self, reason: str) -> None:
        self._retries.labels(reason).inc()

    def on_apply_skipped(self, reason: str, count: int) -> None:
        self._skipped.labels(reason).inc(count)

    def on_dead_letter(self, table: str) -> None:
        self._dead.labels(table).inc()

    def on_snapshot_progress(self, table: str, rows: int, size: int) -> None:
        self._snapshot_rows.labels(table).inc(rows)
        self._snapshot_bytes.labels(table).inc(size)
        self._snapshot_chunks.labels(table).inc()

    def on_snapshot_table(self, table: str, rows: int, released: bool) -> None:
        self._snapshot_released.labels(table).set(1 if released else 0)

    def on_reconcile_chunk(self, table: str, rows: int) -> None:
        self._reconcile_rows.labels(table).inc(rows)
        self._reconcile_chunks.labels(table).inc()

    def on_reconcile_table(self, table: str, differences: int, clean: bool, finished_at: float) -> None:
        self._reconcile_differences.labels(table).set(differences)
        if clean:
            self._reconcile_clean.labels(table).set(finished_at)

    def on_connector_status(self, connector: str, running: bool, task_states: list[str]) -> None:
        self._connector_up.labels(connector).set(1 if running else 0)
        for state in TASK_STATES:
            self._connector_tasks.labels(connector, state).set(sum(1 for s in task_states if s == state))

    def on_service_error(self, stage: str) -> None:
        self._errors.labels(stage).inc()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class MetricsServer:
    """Serves /metrics and /healthz in a daemon thread until `close()`."""

    def __init__(self, address: str, sensor: PrometheusSensor, healthy: Callable[[], bool]) -> None:
        host, _, port = address.rpartition(":")
        metrics_app = make_wsgi_app(sensor.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                ok = healthy()
                start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"ok\n" if ok else b"unhealthy\n"]
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]  # untyped WSGI app

        try:
            self._server: WSGIServer = make_server(host or "0.0.0.0", int(port), app,  # noqa: S104
                                                   handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {address}: {exc.strerror}",
                hint="choose a free address in metrics.address",
            ) from None
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
