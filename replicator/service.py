"""The long-running service (`replicator serve`): the composition root.

One supervisor owns the stop event; SIGTERM/SIGINT set it, every loop checks it and sleeps only in
bounded steps. The service keeps the Debezium connector registered and watched, applies the change
events (replicator.apply), and serves /metrics and /healthz; with --snapshot it copies the tables not
copied yet beside the applier, with --reconcile it compares source and target in rolling passes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from connectors import manager
from replicator.config import MigrationConfig
from replicator.errors import ReplicatorError
from replicator.sensor import Sensor

log = logging.getLogger("replicator.service")


class Supervisor:
    def __init__(self) -> None:
        self.stop = threading.Event()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())


class Service:
    def __init__(self, config: MigrationConfig, sensor: Sensor, supervisor: Supervisor,
                 *, poll_interval_s: float = 10.0, say: Callable[[str], None] = log.warning) -> None:
        self._config = config
        self._sensor = sensor
        self._supervisor = supervisor
        self._poll_interval_s = poll_interval_s
        self._say = say

    def run(self, *, apply_connectors: bool) -> None:
        if apply_connectors:
            self.apply_connector_until_done()
        while not self._supervisor.stop.is_set():
            self._watch_connector()
            self._supervisor.stop.wait(self._poll_interval_s)

    def apply_connector_until_done(self) -> None:
        """Retry while Kafka, Connect or the source are still coming up; stop on anything else."""
        delay = 1.0
        while not self._supervisor.stop.is_set():
            try:
                manager.apply(self._config, progress=self._say)
                return
            except ReplicatorError as exc:
                if not exc.retryable:
                    raise
                self._sensor.on_service_error("connectors")
                self._say(f"{exc.line()} (retrying in {delay:.0f} s)")
                self._supervisor.stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _watch_connector(self) -> None:
        try:
            current = manager.status(self._config)
        except ReplicatorError as exc:
            self._sensor.on_service_error("connectors")
            self._sensor.on_connector_status(self._config.connector_name, False, [])
            self._say(exc.line())
            return
        self._sensor.on_connector_status(current.name, current.healthy, [s for _, s in current.tasks])
        if current.failure:
            self._say(f"connector {current.name} {current.failure}")


def serve_forever(config: MigrationConfig, *, apply_connectors: bool, apply_changes: bool,
                  say: Callable[[str], None], snapshot: bool = False, reconcile: bool = False) -> None:
    """`replicator serve`: registers and watches the connector (in a thread), applies the change
    events (in the main thread), serves /metrics and /healthz; SIGTERM finishes the batch in flight."""
    from replicator.metrics import MetricsServer, PrometheusSensor

    supervisor = Supervisor()
    supervisor.install_signal_handlers()
    sensor = PrometheusSensor()
    started = time.monotonic()
    server = MetricsServer(config.metrics.address, sensor, healthy=lambda: not supervisor.stop.is_set())
    say(f"serving /metrics and /healthz on {config.metrics.address}")
    service = Service(config, sensor, supervisor, say=say)
    try:
        if apply_connectors:
            service.apply_connector_until_done()
        if snapshot:
            threading.Thread(target=_snapshot_once, args=(config, sensor, supervisor, say), name="snapshot",
                             daemon=True).start()
        if reconcile:
            threading.Thread(target=_reconcile_continuously, args=(config, sensor, supervisor, say),
                             name="reconcile", daemon=True).start()
        if apply_changes:
            watcher = threading.Thread(target=service.run, kwargs={"apply_connectors": False},
                                       name="connector-watch", daemon=True)
            watcher.start()
            _apply_until_stopped(config, sensor, supervisor, say)
        else:
            service.run(apply_connectors=False)
    finally:
        server.close()
        say(f"stopped after {time.monotonic() - started:.0f} s")


def _snapshot_once(config: MigrationConfig, sensor: Sensor, supervisor: Supervisor,
                   say: Callable[[str], None]) -> None:
    """`serve --snapshot`: copy every table not released yet, beside the applier. A failure is said
    (and counted) and the service goes on applying; a later `replicator snapshot` resumes the copy."""
    from replicator.snapshot.copier import SnapshotCopier

    try:
        SnapshotCopier(config, sensor, say, supervisor.stop).run()
        say("snapshot: every selected table is copied and handed to the change stream")
    except ReplicatorError as exc:
        sensor.on_service_error("snapshot")
        say(f"snapshot: {exc.line()}")


def _reconcile_continuously(config: MigrationConfig, sensor: Sensor, supervisor: Supervisor,
                            say: Callable[[str], None]) -> None:
    """`serve --reconcile`: a rolling pass over every selected table, then `reconcile.interval_s` of
    rest, until the service stops; each table's differences and last clean pass go to /metrics."""
    from replicator.reconcile.checker import Reconciler

    while not supervisor.stop.is_set():
        try:
            report = Reconciler(config, sensor, say, supervisor.stop).run()
            if not supervisor.stop.is_set():
                say(f"reconcile: pass done in {report.seconds:.0f} s: "
                    + ("no difference" if report.ok else "differences or unsettled tables (see above)"))
        except ReplicatorError as exc:
            sensor.on_service_error("reconcile")
            say(f"reconcile: {exc.line()}")
        supervisor.stop.wait(config.reconcile.interval_s)


def _apply_until_stopped(config: MigrationConfig, sensor: Sensor, supervisor: Supervisor,
                         say: Callable[[str], None]) -> None:
    """Run the applier; rebuild it after a retryable failure (broker or target away), stop on others."""
    from replicator.apply.applier import ChangeApplier
    from replicator.dialects import target_writer_for
    from replicator.kafka.dead_letters import KafkaDeadLetterSink

    sink = KafkaDeadLetterSink(config.kafka, config.dead_letter_topic)
    delay = 1.0
    while not supervisor.stop.is_set():
        try:
            applier = ChangeApplier(config, lambda: target_writer_for(config.target, config.state_schema),
                                    sensor, supervisor.stop, dead_letters=sink)
            applier.run()
            return
        except ReplicatorError as exc:
            if not exc.retryable:
                raise
            sensor.on_service_error("apply")
            say(f"{exc.line()} (retrying in {delay:.0f} s)")
            supervisor.stop.wait(delay)
            delay = min(delay * 2, 30.0)


def apply_forever(config: MigrationConfig, *, say: Callable[[str], None]) -> None:
    """`replicator apply`: the change applier with /metrics, until SIGTERM/SIGINT; then the batch in
    flight is finished and committed, and the process exits 0."""
    from replicator.metrics import MetricsServer, PrometheusSensor

    supervisor = Supervisor()
    supervisor.install_signal_handlers()
    sensor = PrometheusSensor()
    server = MetricsServer(config.metrics.address, sensor, healthy=lambda: not supervisor.stop.is_set())
    say(f"applying changes of topic prefix {config.kafka.topic_prefix} to {config.target.describe()}; "
        f"/metrics on {config.metrics.address}")
    try:
        _apply_until_stopped(config, sensor, supervisor, say)
    finally:
        server.close()
    say("stopped: the last batch is committed")
