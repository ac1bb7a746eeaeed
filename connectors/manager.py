"""`replicator connectors apply | status | delete`: one Debezium source connector per migration.

apply, in this order (each step is idempotent, so a failed or repeated apply is safe to re-run):
 1. resolve the table list against the source catalog (explicit names, not patterns);
 2. refuse PostgreSQL tables whose UPDATE/DELETE the source would reject once published (no primary
    key and REPLICA IDENTITY not FULL), or set FULL when asked (--fix-replica-identity);
 3. refuse a MySQL/MariaDB connector whose replica server id another registered connector already
    uses on the same server (the two would disconnect each other over and over);
 4. create our watermark table on the source (replicator.snapshot proves with it that the
    connector streams) — it is in the connector's table list, never in the migrated tables;
 5. create every table topic (and the heartbeat, transaction and schema-change topics) with exactly
    one partition, refusing an existing table topic with more: per-table Kafka order must be the
    source commit order;
 6. PUT /connectors/NAME/config (create or update) and wait until the connector and its task are
    RUNNING; a FAILED task is reported with its root cause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.render import CLASH_HINT, binlog_reader_clash, redact, render
from connectors.rest import KafkaConnect, failed_part
from replicator.config import Engine, MigrationConfig
from replicator.dialects import catalog_for
from replicator.errors import ConfigError, SourceError
from replicator.kafka.admin import TopicAdmin
from replicator.model import SourceTable, TableId, heartbeat_topic, topic_for

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ConnectorPlan:
    name: str
    tables: list[SourceTable]
    topics: dict[TableId, str]
    support_topics: list[str]
    config: dict[str, str] = field(repr=False)

    @property
    def unpublishable(self) -> list[SourceTable]:
        return [t for t in self.tables if not t.publishable]


def plan(config: MigrationConfig) -> ConnectorPlan:
    catalog = catalog_for(config.source)
    try:
        tables = [t for t in catalog.list_tables() if config.selects(t.table)]
    finally:
        catalog.close()
    prefix = config.kafka.topic_prefix
    topics = {t.table: topic_for(prefix, t.table) for t in tables}
    _refuse_topic_collisions(topics)
    watermark = config.watermark_table
    support = [heartbeat_topic(prefix), topic_for(prefix, watermark)]
    support.append(f"{prefix}.transaction" if config.source.engine is Engine.POSTGRES else prefix)
    return ConnectorPlan(
        name=config.connector_name,
        tables=tables,
        topics=topics,
        support_topics=support,
        config=render(config, [t.table for t in tables], watermark),
    )


def _refuse_topic_collisions(topics: dict[TableId, str]) -> None:
    seen: dict[str, TableId] = {}
    for table, topic in sorted(topics.items()):
        if topic in seen:
            raise ConfigError(
                f"tables {seen[topic]} and {table} both map to the Kafka topic {topic!r} "
                "(Debezium replaces characters Kafka does not allow with '_')",
                hint="exclude one of them in tables.exclude, or rename it on the source",
            )
        seen[topic] = table


def apply(config: MigrationConfig, *, fix_replica_identity: bool = False,
          progress: Progress = lambda _: None) -> ConnectorPlan:
    current = plan(config)
    progress(f"{len(current.tables)} table(s) selected on {config.source.describe()}")
    if current.unpublishable:
        names = ", ".join(str(t.table) for t in current.unpublishable)
        if not fix_replica_identity:
            raise SourceError(
                f"PostgreSQL would reject UPDATE and DELETE on {names} once published: no primary key "
                "and REPLICA IDENTITY is not FULL",
                hint="add a primary key, or rerun with --fix-replica-identity to set REPLICA IDENTITY FULL",
            )
        catalog = catalog_for(config.source)
        try:
            for table in current.unpublishable:
                catalog.set_replica_identity_full(table.table)
                progress(f"set REPLICA IDENTITY FULL on {table.table}")
        finally:
            catalog.close()
        current = plan(config)
    connect = KafkaConnect(config.connect.url, config.connect.request_timeout_s)
    try:
        clash = binlog_reader_clash(current.name, current.config, connect.configs())
        if clash is not None:
            raise ConfigError(clash, hint=CLASH_HINT)
        catalog = catalog_for(config.source)
        try:
            catalog.ensure_watermark(config.watermark_table)
        finally:
            catalog.close()
        admin = TopicAdmin(config.kafka)
        created = admin.ensure_single_partition(
            [*current.topics.values(), *current.support_topics], config.kafka.replication_factor
        )
        progress(f"topics: {len(created)} created, all with one partition")
        connect.put_config(current.name, current.config)
        progress(f"connector {current.name} submitted; waiting for RUNNING")
        connect.wait_running(current.name, config.connect.ready_timeout_s)
    finally:
        connect.close()
    progress(f"connector {current.name} is RUNNING")
    return current


@dataclass(frozen=True)
class ConnectorStatus:
    name: str
    state: str
    tasks: list[tuple[int, str]]
    failure: str | None
    config: dict[str, str] | None

    @property
    def healthy(self) -> bool:
        return self.state == "RUNNING" and bool(self.tasks) and all(s == "RUNNING" for _, s in self.tasks)


def status(config: MigrationConfig) -> ConnectorStatus:
    connect = KafkaConnect(config.connect.url, config.connect.request_timeout_s)
    try:
        name = config.connector_name
        raw: dict[str, Any] | None = connect.status(name)
        if raw is None:
            return ConnectorStatus(name, "ABSENT", [], None, None)
        current = connect.config(name)
    finally:
        connect.close()
    tasks = [(int(t.get("id", 0)), str(t.get("state"))) for t in raw.get("tasks", [])]
    return ConnectorStatus(
        name=name,
        state=str(raw.get("connector", {}).get("state")),
        tasks=tasks,
        failure=failed_part(raw),
        config=redact(current) if current is not None else None,
    )


def delete(config: MigrationConfig, *, drop_slot: bool, progress: Progress = lambda _: None) -> bool:
    connect = KafkaConnect(config.connect.url, config.connect.request_timeout_s)
    try:
        existed = connect.delete(config.connector_name)
    finally:
        connect.close()
    progress(f"connector {config.connector_name} {'deleted' if existed else 'was not registered'}")
    if drop_slot:
        catalog = catalog_for(config.source)
        try:
            dropped = catalog.drop_capture_objects(config.slot_name, config.publication_name, wait_s=30)
        finally:
            catalog.close()
        progress(f"dropped {', '.join(dropped)}" if dropped else "no replication slot or publication to drop")
    return existed
