"""Render a Debezium connector config from the templates and the migration config.

Templates are JSON files whose string values may hold `${name}` placeholders; substitution happens
per value after JSON parsing, so no value can break the JSON. `connector.overrides` apply last.
The table list is explicit (resolved against the source catalog), each name an exact, anchored
Java regex with every character outside [A-Za-z0-9_] written as \\x{HH}: no comma or regex
metacharacter of a hostile name can widen or split the comma-separated list.
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

from replicator.config import Engine, MigrationConfig
from replicator.errors import ConfigError
from replicator.model import TableId

TEMPLATES = Path(__file__).parent / "templates"
SECRET_KEYS = ("password", "secret", "sasl.jaas", "token")


def java_literal(text: str) -> str:
    """A Java regex matching exactly `text`: safe characters as is, all others as \\x{HEX}."""
    return "".join(ch if (ch.isascii() and (ch.isalnum() or ch == "_")) else f"\\x{{{ord(ch):x}}}" for ch in text)


def include_list(tables: list[TableId]) -> str:
    return ",".join(f"{java_literal(t.schema)}\\.{java_literal(t.name)}" for t in sorted(tables))


def template(engine: Engine) -> dict[str, str]:
    name = "postgres.json" if engine is Engine.POSTGRES else "mysql.json"
    text = (TEMPLATES / name).read_text(encoding="utf-8")
    data = json.loads(text)
    return {str(k): str(v) for k, v in data.items()}


def render(config: MigrationConfig, tables: list[TableId], watermark: TableId | None = None) -> dict[str, str]:
    if not tables:
        raise ConfigError(
            f"no table of the source {config.source.describe()} matches tables.include",
            hint="check tables.include / tables.exclude (patterns over schema.table)",
        )
    source = config.source
    values = {
        "source_host": source.host,
        "source_port": str(source.port),
        "source_user": source.user,
        "source_password": source.secret(),
        "source_database": source.database,
        "topic_prefix": config.kafka.topic_prefix,
        "slot_name": config.slot_name,
        "publication_name": config.publication_name,
        "table_include_list": include_list([*tables, *([watermark] if watermark else [])]),
        "database_include_list": java_literal(source.database),
        "heartbeat_interval_ms": str(config.connector.heartbeat_interval_ms),
        "keep_alive_interval_ms": str(config.connector.keep_alive_interval_ms),
        "server_id": str(config.connector.server_id),
        "replication_factor": str(config.kafka.replication_factor),
    }
    rendered = {key: Template(value).substitute(values) for key, value in template(source.engine).items()}
    if source.engine is Engine.MYSQL:
        rendered.update(_schema_history(config))
    rendered.update(config.connector.overrides)
    return rendered


def _schema_history(config: MigrationConfig) -> dict[str, str]:
    if config.connector.history_file:
        return {
            "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
            "schema.history.internal.file.filename": config.connector.history_file,
        }
    settings = {
        "schema.history.internal": "io.debezium.storage.kafka.history.KafkaSchemaHistory",
        "schema.history.internal.kafka.topic": f"{config.kafka.topic_prefix}.schema-history",
        "schema.history.internal.kafka.bootstrap.servers": config.kafka.bootstrap_servers,
    }
    # The history producer and consumer talk to the same brokers with the same TLS/SASL options.
    for key, value in config.kafka.options.items():
        settings[f"schema.history.internal.producer.{key}"] = str(value)
        settings[f"schema.history.internal.consumer.{key}"] = str(value)
    return settings


def redact(connector_config: dict[str, str]) -> dict[str, str]:
    return {
        k: ("**********" if any(word in k.lower() for word in SECRET_KEYS) else v)
        for k, v in connector_config.items()
    }


CLASH_HINT = "give connector.server_id a number no other replica or connector of that server uses"


def connection_settings(config: MigrationConfig) -> dict[str, str]:
    """The part of the connector config that says which binlog it reads, as `render` writes it (no
    table list: this needs no catalog)."""
    rendered = {"database.hostname": config.source.host, "database.port": str(config.source.port),
                "database.server.id": str(config.connector.server_id) if config.source.engine is Engine.MYSQL else ""}
    rendered.update({k: v for k, v in config.connector.overrides.items() if k in rendered})
    return rendered


def binlog_reader_clash(name: str, ours: dict[str, str], others: dict[str, dict[str, str]]) -> str | None:
    """A problem line when another connector (by name) reads the same MySQL/MariaDB server's binlog as
    replica server id `database.server.id` too, else None. The server allows one reader per id: two
    disconnect each other every few seconds (each retry takes over), and both streams stall."""
    server_id = ours.get("database.server.id")
    if not server_id:
        return None  # not a binlog reader (PostgreSQL)
    host, port = ours.get("database.hostname", ""), ours.get("database.port", "3306")
    for other, config in sorted(others.items()):
        if other != name and config.get("database.server.id") == server_id \
                and config.get("database.hostname", "").lower() == host.lower() \
                and config.get("database.port", "3306") == port:
            return (f"connector {other} on Kafka Connect already reads the binlog of {host}:{port} as replica "
                    f"server id {server_id}: two readers with one id disconnect each other over and over")
    return None
