import re

import pytest

from connectors.render import binlog_reader_clash, connection_settings, include_list, java_literal, redact, render
from connectors.rest import root_cause
from replicator.config import parse_config
from replicator.errors import ConfigError
from replicator.model import TableId

BASE = """
source: {engine: ENGINE, host: src, port: 5432, database: app, user: u, password: topsecret}
target: {engine: postgres, host: dst, port: 5432, database: app, user: u, password: x}
kafka: {bootstrap_servers: "k:9092", topic_prefix: shop, options: {security.protocol: SASL_SSL}}
connect: {url: "http://connect:8083"}
connector: {server_id: 777, heartbeat_interval_ms: 1500, keep_alive_interval_ms: 4000,
            overrides: {"snapshot.fetch.size": "1234"}}
"""


def config(engine: str, extra: str = ""):
    return parse_config(BASE.replace("ENGINE", engine) + extra, {})


TABLES = [TableId("public", "items"), TableId("public", "nopk")]

COMMON = {
    "snapshot.mode": "no_data",
    "skipped.operations": "none",
    "topic.creation.default.partitions": "1",
    "key.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "true",
    "key.converter.schemas.enable": "true",
    "topic.prefix": "shop",
    "heartbeat.interval.ms": "1500",
    "database.password": "topsecret",
}


def test_postgres_connector() -> None:
    rendered = render(config("postgres"), TABLES)
    for key, value in COMMON.items():
        assert rendered[key] == value, key
    assert rendered["connector.class"].endswith("PostgresConnector")
    assert rendered["plugin.name"] == "pgoutput"
    assert rendered["slot.name"] == "replicator_shop"
    assert rendered["publication.name"] == "replicator_shop"
    assert rendered["publication.autocreate.mode"] == "filtered"
    assert rendered["table.include.list"] == r"public\.items,public\.nopk"
    assert rendered["snapshot.fetch.size"] == "1234"  # overrides apply last
    assert not any("${" in v for v in rendered.values())


def test_mysql_connector_with_kafka_history() -> None:
    rendered = render(config("mysql"), [TableId("app", "orders")])
    for key, value in COMMON.items():
        assert rendered[key] == value, key
    assert rendered["connector.class"].endswith("MySqlConnector")
    assert rendered["database.server.id"] == "777"
    assert rendered["connect.keep.alive.interval.ms"] == "4000"  # MariaDB idle heartbeats follow it
    assert rendered["database.include.list"] == "app"
    assert rendered["schema.history.internal.skip.unparseable.ddl"] == "true"
    assert rendered["schema.history.internal.kafka.topic"] == "shop.schema-history"
    assert rendered["schema.history.internal.producer.security.protocol"] == "SASL_SSL"
    assert rendered["bigint.unsigned.handling.mode"] == "precise"


def test_mysql_connector_with_file_history() -> None:
    text = BASE.replace("ENGINE", "mysql").replace("server_id: 777,", "server_id: 777, history_file: /d/h.dat,")
    rendered = render(parse_config(text, {}), [TableId("app", "t")])
    assert rendered["schema.history.internal.file.filename"] == "/d/h.dat"
    assert rendered["schema.history.internal"].endswith("FileSchemaHistory")
    assert "schema.history.internal.kafka.topic" not in rendered


def test_hostile_names_cannot_split_or_widen_the_include_list() -> None:
    hostile = TableId("we,ird", 'a.b*c"d;`e` f✓')
    pattern = include_list([hostile, TableId("s", "t")])
    assert pattern.count(",") == 1  # only the separator
    first = pattern.split(",")[1]  # sorted: "s" < "we,ird"
    java_as_python = re.sub(r"\\x\{([0-9a-f]+)\}", lambda m: re.escape(chr(int(m.group(1), 16))), first)
    assert re.fullmatch(java_as_python, hostile.qualified)
    assert not re.fullmatch(java_as_python, "weXird.a.b*c\"d;`e` f✓")
    assert java_literal("plain_Name1") == "plain_Name1"


def test_no_table_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no table of the source"):
        render(config("postgres"), [])


def test_redact_hides_passwords() -> None:
    shown = redact(render(config("postgres"), TABLES))
    assert "topsecret" not in str(shown)
    assert shown["database.password"] == "**********"


def test_root_cause_of_a_java_trace() -> None:
    trace = (
        "org.apache.kafka.connect.errors.ConnectException: An exception occurred in the change event producer.\n"
        "\tat io.debezium.pipeline.ErrorHandler.setProducerThrowable(ErrorHandler.java:67)\n"
        "Caused by: io.debezium.DebeziumException: Couldn't obtain encoding\n\tat x.y(Z.java:1)\n"
        'Caused by: org.postgresql.util.PSQLException: FATAL: password authentication failed for user "bob"\n'
        "\tat org.postgresql.core.v3.ConnectionFactoryImpl.doAuthentication(ConnectionFactoryImpl.java:693)\n"
    )
    assert root_cause(trace) == 'PSQLException: FATAL: password authentication failed for user "bob"'
    assert root_cause("java.lang.IllegalStateException: boom\n\tat a.b(C.java:1)") == "IllegalStateException: boom"
    assert root_cause(None) == "no trace given"


def test_a_second_binlog_reader_with_the_same_server_id_is_named() -> None:
    ours = render(config("mysql"), [TableId("app", "orders")])
    other = {**ours, "topic.prefix": "other"}
    assert binlog_reader_clash("shop-source", ours, {"shop-source": ours}) is None  # ourselves
    line = binlog_reader_clash("shop-source", ours, {"shop-source": ours, "other-source": other})
    assert line is not None and "connector other-source" in line and "src:5432" in line and "server id 777" in line
    assert binlog_reader_clash("shop-source", ours, {"x": {**other, "database.server.id": "778"}}) is None
    assert binlog_reader_clash("shop-source", ours, {"x": {**other, "database.hostname": "elsewhere"}}) is None
    assert binlog_reader_clash("shop-source", ours, {"x": {**other, "database.port": "3307"}}) is None
    assert binlog_reader_clash("shop-source", ours, {"x": {**other, "database.hostname": "SRC"}}) is not None
    pg = render(config("postgres"), TABLES)
    assert binlog_reader_clash("shop-source", pg, {"x": pg}) is None  # PostgreSQL: no binlog reader
    keys = ("database.hostname", "database.port", "database.server.id")
    assert connection_settings(config("mysql")) == {k: ours[k] for k in keys}  # what render writes
    moved = config("mysql", 'connector: {server_id: 777, overrides: {"database.server.id": "900"}}\n')
    assert connection_settings(moved)["database.server.id"] == "900"
