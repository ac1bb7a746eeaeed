"""The preflight checks and the runner that makes them independent.

A check is a named producer of findings (`Check`). The runner runs every check in a thread of its
own, so an unreachable Kafka (which answers only after its timeout) neither hides nor delays the
database findings. A check that raises becomes one error line of its own: a `ReplicatorError` gives
its message and hint; anything else is reported as a bug in that check. Facts two checks need (the
selected source tables and their columns) are read once, by whichever asks first.

Every check only reads: nothing is created on any server.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from connectors.render import CLASH_HINT, binlog_reader_clash, connection_settings, template
from connectors.rest import KafkaConnect, failed_part
from replicator.config import MigrationConfig
from replicator.dialects import source_inspector_for, target_inspector_for
from replicator.errors import ReplicatorError
from replicator.kafka.admin import TopicAdmin
from replicator.model import Finding, Level, TableId, heartbeat_topic, topic_for
from replicator.preflight.report import Report
from replicator.preflight.tables import planned_targets, table_findings
from replicator.preflight.types import type_findings

log = logging.getLogger(__name__)

KAFKA_TIMEOUT_S = 5.0  # cluster metadata from a reachable broker takes milliseconds
CONNECT_TIMEOUT_S = 5.0


class PreflightContext:
    """The config, and facts shared between checks (read once, on first use, thread-safe)."""

    def __init__(self, config: MigrationConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._read = False
        self._columns: dict[TableId, tuple[str, ...]] | None = None

    def source_columns(self) -> dict[TableId, tuple[str, ...]] | None:
        """Selected source tables and their columns; None when the source cannot be read (the source
        check reports why)."""
        with self._lock:
            if not self._read:
                self._read = True
                try:
                    inspector = source_inspector_for(self.config)
                    try:
                        self._columns = inspector.columns(self.config)
                    finally:
                        inspector.close()
                except Exception as exc:  # reported by the source check, which meets the same failure
                    log.debug("source columns not read: %s", exc)
            return self._columns


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[PreflightContext], Iterable[Finding]]


def check_source(ctx: PreflightContext) -> list[Finding]:
    inspector = source_inspector_for(ctx.config)
    try:
        return inspector.findings(ctx.config)
    finally:
        inspector.close()


def check_target(ctx: PreflightContext) -> list[Finding]:
    inspector = target_inspector_for(ctx.config)
    try:
        columns = ctx.source_columns()
        if columns is None:
            return [*inspector.findings(ctx.config, []),
                    Finding(Level.WARNING, "target", "tables", "not compared with the source tables: the source "
                            "could not be read (see the source findings)", "fix the source, then check again")]
        targets = planned_targets(ctx.config, sorted(columns))
        present = inspector.present(sorted(set(targets.values())))
        absent = sorted({t for t in targets.values() if t not in present})
        return [*inspector.findings(ctx.config, absent), *table_findings(ctx.config, columns, present)]
    finally:
        inspector.close()


def check_kafka(ctx: PreflightContext) -> list[Finding]:
    kafka = ctx.config.kafka
    brokers, topics = TopicAdmin(kafka, timeout_s=KAFKA_TIMEOUT_S).cluster()
    found = [Finding(Level.OK, "kafka", "brokers", f"{brokers} reachable at {kafka.bootstrap_servers}")]
    if kafka.replication_factor > brokers:
        found.append(Finding(Level.ERROR, "kafka", "replication_factor",
                             f"is {kafka.replication_factor} but the cluster has {brokers} broker(s): topics "
                             "cannot be created", f"set kafka.replication_factor to at most {brokers} (or -1)"))
    # Topics of ours that exist already must have one partition (per-table order; see kafka/admin.py).
    ours = [heartbeat_topic(kafka.topic_prefix), topic_for(kafka.topic_prefix, ctx.config.watermark_table)]
    ours += [topic_for(kafka.topic_prefix, t) for t in ctx.source_columns() or {}]
    for topic in sorted(t for t in set(ours) if topics.get(t, 1) > 1):
        found.append(Finding(Level.ERROR, "kafka", f"topic {topic}",
                             f"has {topics[topic]} partitions: a table's events are ordered only within one",
                             "delete it and let connectors apply recreate it with one partition"))
    return found


def check_connect(ctx: PreflightContext) -> list[Finding]:
    config = ctx.config
    client = KafkaConnect(config.connect.url, min(config.connect.request_timeout_s, CONNECT_TIMEOUT_S))
    try:
        version = client.version()
        plugins = client.plugins()
        status = client.status(config.connector_name)
        clash = binlog_reader_clash(config.connector_name, connection_settings(config), client.configs())
    finally:
        client.close()
    found = [Finding(Level.OK, "connect", "worker", f"Kafka Connect {version} at {config.connect.url}")]
    wanted = config.connector.overrides.get("connector.class") or template(config.source.engine)["connector.class"]
    if wanted in plugins:
        found.append(Finding(Level.OK, "connect", "plugin", f"{wanted} {plugins[wanted]}"))
    else:
        found.append(Finding(Level.ERROR, "connect", "plugin", f"the worker has no {wanted} plugin",
                             "install the Debezium connector for the source engine into the worker's plugin.path "
                             "and restart it"))
    name = config.connector_name
    if status is None:
        found.append(Finding(Level.OK, "connect", f"connector {name}", "not registered yet (connectors apply does)"))
    elif (failure := failed_part(status)) is not None:
        found.append(Finding(Level.ERROR, "connect", f"connector {name}", failure,
                             "fix the cause, then run connectors apply again"))
    else:
        state = str(status.get("connector", {}).get("state"))
        level = Level.OK if state == "RUNNING" else Level.WARNING
        found.append(Finding(level, "connect", f"connector {name}", f"registered, {state}",
                             None if level is Level.OK else "see connectors status"))
    if clash is not None:
        found.append(Finding(Level.ERROR, "connect", "connector.server_id", clash, CLASH_HINT))
    return found


CHECKS = (
    Check("source", check_source),
    Check("target", check_target),
    Check("kafka", check_kafka),
    Check("connect", check_connect),
    Check("types", lambda ctx: type_findings(ctx.config)),
)


def run_preflight(config: MigrationConfig, checks: Iterable[Check] = CHECKS) -> Report:
    """Run every check (in parallel, each on its own) and gather the findings in check order."""
    selected = list(checks)
    ctx = PreflightContext(config)
    with ThreadPoolExecutor(max_workers=max(1, len(selected)), thread_name_prefix="preflight") as pool:
        results = [pool.submit(_guarded, check, ctx) for check in selected]
        findings = [finding for result in results for finding in result.result()]
    return Report(tuple(findings)).scrubbed(_secrets(config))


def _guarded(check: Check, ctx: PreflightContext) -> list[Finding]:
    try:
        return list(check.run(ctx))
    except ReplicatorError as exc:
        return [Finding(Level.ERROR, check.name, "", exc.message, exc.hint)]
    except Exception as exc:
        log.debug("preflight check %s failed", check.name, exc_info=True)
        return [Finding(Level.ERROR, check.name, "", f"the check failed: {type(exc).__name__}: {exc}",
                        "a bug: please report it (REPLICATOR_LOG_LEVEL=DEBUG shows the traceback)")]


def _secrets(config: MigrationConfig) -> list[str]:
    found = []
    for endpoint in (config.source, config.target):
        with contextlib.suppress(ReplicatorError):  # an unreadable password_file: nothing to mask
            found.append(endpoint.secret())
    words = ("password", "secret", "key", "token", "jaas")
    found += [str(v) for k, v in config.kafka.options.items() if any(w in k.lower() for w in words)]
    return found
