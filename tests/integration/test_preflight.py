"""`replicator check` against the real stack: ready scenarios exit 0 with every finding ok; each
problem created in a private scenario gives its one line, and exit 1; other findings still come."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from replicator.stack.components import free_port
from tests.integration.conftest import Scenario, my_connect, pg_connect, run_cli

pytestmark = pytest.mark.integration


def check(scenario: Scenario, config: Any = None) -> tuple[int, dict[str, Any]]:
    path = config or scenario.config_path
    result = run_cli("-c", str(path), "check", "--json", check=False, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["exit_code"] == result.returncode
    return result.returncode, report


def problems(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(f["level"], f["check"], f["subject"], f["message"]) for f in report["findings"] if f["level"] != "ok"]


def oks(report: dict[str, Any], check_name: str) -> set[str]:
    return {f["subject"] for f in report["findings"] if f["check"] == check_name and f["level"] == "ok"}


def test_ready_pg_to_pg(pg_scenario: Scenario) -> None:
    pg_scenario.source_sql(f"CREATE TABLE {pg_scenario.namespace}.items (id int PRIMARY KEY, v text)")
    pg_scenario.write_config()
    code, report = check(pg_scenario)
    assert code == 0, problems(report)
    assert problems(report) == []
    assert {"wal_level", "privileges", "max_replication_slots", "max_wal_senders", "tables"} <= oks(report, "source")
    assert {"state schema replicator", "session_replication_role", "tables"} <= oks(report, "target")
    assert oks(report, "kafka") == {"brokers"}
    assert {"worker", "plugin"} <= oks(report, "connect")
    text = run_cli("-c", str(pg_scenario.config_path), "check")
    assert text.stdout.splitlines()[-1].startswith("ready ")
    assert "✓ source   wal_level: logical" in text.stdout


def test_ready_mariadb_to_pg(my_scenario: Scenario) -> None:
    my_scenario.source_sql("CREATE TABLE items (id int PRIMARY KEY, v text) ENGINE=InnoDB")
    my_scenario.write_config()
    code, report = check(my_scenario)
    assert code == 0, problems(report)
    assert problems(report) == []
    assert {"log_bin", "binlog_format", "binlog_row_image", "server_id", "replication privileges",
            "lock privileges", "tables",
            f"watermark table {my_scenario.namespace}.replicator_watermark"} <= oks(report, "source")
    plugin = next(f for f in report["findings"] if f["subject"] == "plugin")
    assert plugin["message"].startswith("io.debezium.connector.mysql.MySqlConnector")


def test_pg_table_without_key_and_default_replica_identity(pg_scenario: Scenario) -> None:
    ns = pg_scenario.namespace
    pg_scenario.source_sql(f"CREATE TABLE {ns}.keyed (id int PRIMARY KEY)", f"CREATE TABLE {ns}.bare (v int)")
    pg_scenario.write_config()
    result = run_cli("-c", str(pg_scenario.config_path), "check", check=False)
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    assert errors == [f"✗ source   table {ns}.bare: has no primary key and REPLICA IDENTITY is not FULL: once it is "
                      "published, PostgreSQL rejects every UPDATE and DELETE on it; fix: add a primary key, or "
                      f"ALTER TABLE {ns}.bare REPLICA IDENTITY FULL (connectors apply --fix-replica-identity does it)"]
    assert result.stdout.splitlines()[-1].startswith("not ready: 1 error(s)")
    pg_scenario.source_sql(f"ALTER TABLE {ns}.bare REPLICA IDENTITY FULL")
    code, report = check(pg_scenario)
    assert code == 0  # FULL: publishable; no key is only a warning
    assert [(level, subject) for level, _, subject, _ in problems(report)] == [("warning", f"table {ns}.bare")]


def test_mariadb_myisam_table(my_scenario: Scenario) -> None:
    my_scenario.source_sql("CREATE TABLE good (id int PRIMARY KEY) ENGINE=InnoDB",
                           "CREATE TABLE old (id int PRIMARY KEY) ENGINE=MyISAM")
    my_scenario.write_config()
    code, report = check(my_scenario)
    assert code == 1
    assert problems(report) == [("error", "source", f"table {my_scenario.namespace}.old",
                                 "uses the MyISAM engine: the consistent snapshot copy needs InnoDB")]


def test_pg_user_without_replication(pg_scenario: Scenario) -> None:
    role, password = f"r_{pg_scenario.id}", f"pw-{pg_scenario.id}-restricted"
    ns = pg_scenario.namespace
    pg_scenario.source_sql(f"CREATE TABLE {ns}.items (id int PRIMARY KEY)",
                           f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        config = pg_scenario.write_config()
        text = config.read_text().replace(f"user: {pg_scenario.source.user}", f"user: {role}", 1)
        config.write_text(text.replace(pg_scenario.source.password, password, 1))
        code, report = check(pg_scenario)
        assert code == 1
        found = {subject: message for _, check_name, subject, message in problems(report) if check_name == "source"}
        assert found["privileges"] == (f"user {role!r} lacks the REPLICATION attribute: the connector cannot "
                                       "open a replication slot")
        assert "may not SELECT it" in found[f"table {ns}.items"]
        assert "may not create or write our watermark table" in found["watermark table replicator.watermark"]
        assert [f for f in report["findings"] if f["check"] != "source" and f["level"] != "ok"] == []
    finally:
        pg_scenario.source_sql(f"DROP ROLE {role}")


def test_mariadb_user_without_replication(my_scenario: Scenario) -> None:
    user, password = f"r_{my_scenario.id}", f"pw-{my_scenario.id}-restricted"
    ns = my_scenario.namespace
    my_scenario.source_sql("CREATE TABLE items (id int PRIMARY KEY) ENGINE=InnoDB",
                           f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
                           f"GRANT SELECT ON `{ns}`.* TO '{user}'@'%'")
    try:
        config = my_scenario.write_config()
        text = config.read_text().replace(f"user: {my_scenario.source.user}", f"user: {user}", 1)
        config.write_text(text.replace(my_scenario.source.password, password, 1))
        code, report = check(my_scenario)
        assert code == 1
        found = {subject: (message, fix) for f in report["findings"] if f["level"] == "error"
                 for subject, message, fix in [(f["subject"], f["message"], f["fix"])]}
        assert found["replication privileges"] == (
            f"user {user!r} lacks REPLICATION SLAVE, REPLICATION CLIENT: the connector reads the binlog as a replica",
            f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {user}")
        assert found["lock privileges"][1] == f"GRANT LOCK TABLES ON {ns}.* TO {user} (or RELOAD ON *.*)"
        assert f"watermark table {ns}.replicator_watermark" in found
        assert len(found) == 3  # SELECT is granted
    finally:
        my_scenario.source_sql(f"DROP USER '{user}'@'%'")


def test_unreachable_kafka_and_connect_do_not_hide_database_findings(pg_scenario: Scenario) -> None:
    ns = pg_scenario.namespace
    pg_scenario.source_sql(f"CREATE TABLE {ns}.bare (v int)")
    kafka_port, connect_port = free_port(), free_port()
    pg_scenario.write_config(kafka={"bootstrap_servers": f"127.0.0.1:{kafka_port}", "topic_prefix": pg_scenario.prefix},
                             connect={"url": f"http://127.0.0.1:{connect_port}"})
    code, report = check(pg_scenario)
    assert code == 1
    errors = [(check_name, subject, message) for level, check_name, subject, message in problems(report)
              if level == "error"]
    assert errors[0][:2] == ("source", f"table {ns}.bare")
    assert errors[1][0] == "kafka" and errors[1][2].startswith(f"cannot reach Kafka at 127.0.0.1:{kafka_port}")
    assert errors[2][0] == "connect"
    assert errors[2][2].startswith(f"cannot reach Kafka Connect at http://127.0.0.1:{connect_port}")
    assert len(errors) == 3
    assert {"wal_level", "privileges"} <= oks(report, "source")
    assert {"session_replication_role", "tables"} <= oks(report, "target")


def test_wrong_target_password_is_one_line_without_the_secret(pg_scenario: Scenario) -> None:
    pg_scenario.source_sql(f"CREATE TABLE {pg_scenario.namespace}.items (id int PRIMARY KEY)")
    config = pg_scenario.write_config()
    text = config.read_text()
    wrong = "wrong-target-password-42"
    config.write_text(text.replace(f"password: {pg_scenario.target.password}", f"password: {wrong}", 1))
    for args in (("check",), ("check", "--json")):
        result = run_cli("-c", str(config), *args, check=False)
        assert result.returncode == 1
        for secret in (wrong, pg_scenario.source.password, pg_scenario.target.password):
            assert secret not in result.stdout + result.stderr
    text = run_cli("-c", str(config), "check", check=False).stdout
    assert [line for line in text.splitlines() if line.startswith("✗")] == [
        f"✗ target   target {pg_scenario.target.engine}://{pg_scenario.target.user}@{pg_scenario.target.host}:"
        f"{pg_scenario.target.port}/{pg_scenario.target.database}: password authentication failed; fix: check "
        "target.user and target.password (or target.password_file)"]
    code, report = check(pg_scenario)
    assert code == 1
    target = [f for f in report["findings"] if f["check"] == "target"]
    assert len(target) == 1 and target[0]["level"] == "error"
    assert target[0]["message"].endswith("password authentication failed")
    assert "target.password" in target[0]["fix"]
    assert {"wal_level", "tables"} <= oks(report, "source")


def test_present_target_table_missing_a_column_and_not_empty(pg_scenario: Scenario) -> None:
    ns = pg_scenario.namespace
    pg_scenario.source_sql(f"CREATE TABLE {ns}.items (id int PRIMARY KEY, name text, price numeric)")
    with pg_connect(pg_scenario.target) as conn:
        conn.execute(f'CREATE SCHEMA "{ns}"')
        conn.execute(f'CREATE TABLE "{ns}".items (id int PRIMARY KEY, name text, note text)')
        conn.execute(f'INSERT INTO "{ns}".items VALUES (1, \'a\', NULL)')
    try:
        pg_scenario.write_config()
        code, report = check(pg_scenario)
        assert code == 1
        assert problems(report) == [
            ("error", "target", f"table {ns}.items", f"lacks column(s) price of the source table {ns}.items"),
            ("warning", "target", f"table {ns}.items", f"has column(s) note that the source table {ns}.items "
             "lacks: replicator leaves them NULL or at their default"),
            ("warning", "target", f"table {ns}.items", "is not empty: the snapshot empties it before it copies "
             "the source's rows into it"),
        ]
    finally:
        with pg_connect(pg_scenario.target) as conn:
            conn.execute(f'DROP SCHEMA "{ns}" CASCADE')


def test_mariadb_server_id_equal_to_the_connectors(my_scenario: Scenario) -> None:
    my_scenario.source_sql("CREATE TABLE items (id int PRIMARY KEY) ENGINE=InnoDB")
    conn = my_connect(my_scenario.source)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@server_id")
            server_id = int(cur.fetchone()[0])
    finally:
        conn.close()
    config = my_scenario.write_config()
    text = config.read_text()
    config.write_text(text.replace(f"server_id: {my_scenario.server_id}", f"server_id: {server_id}"))
    code, report = check(my_scenario)
    assert code == 1
    assert [(s, m) for _, _, s, m in problems(report)] == [
        ("server_id", f"the server's server_id and connector.server_id are both {server_id}: the connector joins "
                      "as a replica and needs an id of its own")]


def test_least_privileged_mariadb_user_is_ready_and_its_connector_runs(my_scenario: Scenario) -> None:
    # Ready means ready: the privileges check asks for are enough for Debezium (without LOCK TABLES its
    # task fails after a first RUNNING: the second check sees that).
    user, password = f"r_{my_scenario.id}", f"pw-{my_scenario.id}-minimal"
    ns = my_scenario.namespace
    my_scenario.source_sql("CREATE TABLE items (id int PRIMARY KEY) ENGINE=InnoDB",
                           f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
                           f"GRANT SELECT, CREATE, INSERT, UPDATE ON `{ns}`.* TO '{user}'@'%'",
                           f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'%'")
    try:
        config = my_scenario.write_config()
        text = config.read_text().replace(f"user: {my_scenario.source.user}", f"user: {user}", 1)
        config.write_text(text.replace(my_scenario.source.password, password, 1))
        code, report = check(my_scenario)
        assert code == 1
        assert [s for _, _, s, _ in problems(report)] == ["lock privileges"]
        my_scenario.source_sql(f"GRANT LOCK TABLES ON `{ns}`.* TO '{user}'@'%'")
        code, report = check(my_scenario)
        assert code == 0, problems(report)
        run_cli("-c", str(config), "connectors", "apply")
        code, report = check(my_scenario)
        assert code == 0, problems(report)
        assert f"connector {my_scenario.connector}" in oks(report, "connect")
        time.sleep(3)  # the failure seen without LOCK TABLES came a moment after RUNNING
        code, report = check(my_scenario)
        assert code == 0, problems(report)
    finally:
        run_cli("-c", str(my_scenario.config_path), "connectors", "delete", check=False)
        my_scenario.source_sql(f"DROP USER '{user}'@'%'")


def test_a_column_type_without_a_safe_mapping_is_an_error_with_a_suggestion(pg_scenario: Scenario,
                                                                            tmp_path: Any) -> None:
    from tests.integration.conftest import Scenario as Pair

    s = Pair(pg_scenario.stack, "pg-source", "my-target", tmp_path)
    s.namespace = pg_scenario.namespace  # the schema pg_scenario made (and cleans up)
    s.source_sql(f"CREATE TABLE {s.namespace}.tagged (id int PRIMARY KEY, tags int[], span interval)")
    s.write_config()
    code, report = check(s)
    assert code == 1
    found = {(f["level"], f["subject"]) for f in report["findings"] if f["check"] == "types"}
    assert ("error", f"{s.namespace}.tagged.tags") in found and ("error", f"{s.namespace}.tagged.span") in found
    fixes = [f["fix"] for f in report["findings"] if f["subject"] == f"{s.namespace}.tagged.tags"]
    assert fixes and "snapshot.column_types" in fixes[0], fixes
    s.write_config(snapshot={"column_types": {f"{s.namespace}.tagged.tags": "json",
                                              f"{s.namespace}.tagged.span": "varchar(64)"}})
    code, report = check(s)
    assert not [f for f in report["findings"] if f["check"] == "types" and f["level"] == "error"], report
    assert oks(report, "types") == {"1 table(s)"}


def test_mariadb_only_column_types_are_refused_where_the_connector_would_fail(my_scenario: Scenario) -> None:
    # Debezium 3.0's MySQL connector fails (a NullPointerException in its DDL parser) on UUID/INET4/INET6
    # columns: in a migrated table always, anywhere on the server at start unless it reads only the
    # captured tables' schemas (then it starts: shown by registering it).
    ns, other = my_scenario.namespace, f"{my_scenario.namespace}_other"
    my_scenario.source_sql("CREATE TABLE good (id int PRIMARY KEY)", "CREATE TABLE tagged (id int PRIMARY KEY, u uuid)")
    my_scenario.write_config()
    code, report = check(my_scenario)
    assert code == 1
    assert problems(report) == [("error", "source", f"table {ns}.tagged", "column u is of MariaDB's type UUID, "
                                 "which Debezium's MySQL connector cannot read")]
    my_scenario.source_sql("DROP TABLE tagged", f"CREATE DATABASE `{other}`",
                           f"CREATE TABLE `{other}`.addr (id int PRIMARY KEY, ip inet6)")
    try:
        code, report = check(my_scenario)
        assert code == 1
        ((level, _, subject, message),) = problems(report)
        assert (level, subject) == ("error", "MariaDB-only types")
        assert message.startswith(f"{other}.addr.ip (not migrated) use UUID/INET4/INET6")
        key = "schema.history.internal.store.only.captured.tables.ddl"
        assert key in next(f["fix"] for f in report["findings"] if f["subject"] == "MariaDB-only types")
        config = my_scenario.write_config(connector__overrides={key: "true"})
        code, report = check(my_scenario)
        assert code == 0, problems(report)
        assert [(level, subject) for level, _, subject, _ in problems(report)] == [("warning", "MariaDB-only types")]
        run_cli("-c", str(config), "connectors", "apply")
        time.sleep(3)  # the failure, when it comes, comes a moment after RUNNING
        code, report = check(my_scenario)
        assert f"connector {my_scenario.connector}" in oks(report, "connect")
    finally:
        run_cli("-c", str(my_scenario.config_path), "connectors", "delete", check=False)
        my_scenario.source_sql(f"DROP DATABASE `{other}`")
