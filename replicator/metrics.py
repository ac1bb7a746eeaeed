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

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, make_wsgi_app

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
