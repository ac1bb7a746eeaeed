"""`replicator apply` end to end through real Debezium: source → Kafka → target, asserted by query
on both sides."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.apply_support import ApplyProcess, target_rows, target_sql, wait_equal, wait_until
from tests.integration.conftest import Scenario, run_cli

pytestmark = pytest.mark.integration


def start(s: Scenario, tmp_path: Path, **overrides: object) -> ApplyProcess:
    config = s.write_config(**overrides)
    run_cli("-c", str(config), "connectors", "apply", "--fix-replica-identity")
    return ApplyProcess(config, tmp_path / "apply.log").start()


def test_pg_to_pg_inserts_updates_deletes_and_sigterm(pg_scenario: Scenario, tmp_path: Path) -> None:
    s = pg_scenario
    ns = s.namespace
    ddl = f"CREATE TABLE {ns}.items (id int PRIMARY KEY, name text, qty int NOT NULL DEFAULT 0, price numeric(12,3))"
    s.source_sql(ddl)
    target_sql(s, f"CREATE SCHEMA {ns}", ddl)
    proc = start(s, tmp_path)
    try:
        s.source_sql(
            f"INSERT INTO {ns}.items SELECT g, 'item ' || g, g, g * 1.5 FROM generate_series(1, 500) g",
            f"UPDATE {ns}.items SET qty = qty + 100 WHERE id % 3 = 0",
            f"UPDATE {ns}.items SET name = 'renamed' WHERE id % 5 = 0",
            f"DELETE FROM {ns}.items WHERE id % 7 = 0",
        )
        rows = wait_equal(s, f"SELECT * FROM {ns}.items ORDER BY id", proc=proc)
        assert len(rows) == 500 - 500 // 7
        offsets = target_rows(s, "SELECT topic, next_offset FROM replicator.apply_offsets "
                                 f"WHERE topic = '{s.prefix}.{ns}.items'")
        assert offsets and offsets[0][1] > 0
        table = f'table="{ns}.items"'
        assert proc.metric(f'replicator_apply_events_total{{{table},op="c"}}') == 500
        assert proc.metric(f'replicator_apply_events_total{{{table},op="d"}}') == 500 // 7
        assert proc.metric("replicator_apply_batch_seconds_count") >= 1
        # caught up and idle: the lag reads 0 and no partition is behind
        wait_until(lambda: proc.metric("replicator_replication_lag_seconds") == 0
                   and proc.metric("replicator_consumer_lag_messages") == 0, 30, "lag 0 when idle", proc)
    finally:
        proc.signal(signal.SIGTERM)
    assert proc.stop() == 0, proc.output()
    assert "Traceback" not in proc.output()


def test_lost_broker_data_and_multi_partition_topics_halt_with_one_line(pg_scenario: Scenario,
                                                                         tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    s = pg_scenario
    ns = s.namespace
    ddl = f"CREATE TABLE {ns}.items (id int PRIMARY KEY)"
    s.source_sql(ddl)
    target_sql(s, f"CREATE SCHEMA {ns}", ddl)
    proc = start(s, tmp_path)
    topic = f"{s.prefix}.{ns}.items"
    try:
        s.source_sql(f"INSERT INTO {ns}.items VALUES (1), (2)")
        wait_equal(s, f"SELECT * FROM {ns}.items ORDER BY id", proc=proc)
    finally:
        assert proc.stop() == 0
    # our state says more was applied than the broker holds: the broker lost acknowledged events
    target_sql(s, f"UPDATE replicator.apply_offsets SET next_offset = 1000000 WHERE topic = '{topic}'")
    lost = ApplyProcess(s.config_path, tmp_path / "lost.log").start()
    try:
        wait_until(lambda: not lost.alive(), 60, "the applier to halt")
    finally:
        lost.kill()
    errors = [line for line in lost.output().splitlines() if line.startswith("replicator: error")]
    assert len(errors) == 1 and topic in errors[0] and "lost" in errors[0], lost.output()
    target_sql(s, f"UPDATE replicator.apply_offsets SET next_offset = NULL WHERE topic = '{topic}'")

    # a table topic with two partitions would lose the table's order
    admin = AdminClient({"bootstrap.servers": s.stack.bootstrap_servers})
    split = f"{s.prefix}.{ns}.split"
    admin.create_topics([NewTopic(split, 2, 1)])[split].result(30)
    refused = ApplyProcess(s.config_path, tmp_path / "split.log").start()
    try:
        wait_until(lambda: not refused.alive(), 60, "the applier to refuse the topic")
    finally:
        refused.kill()
    errors = [line for line in refused.output().splitlines() if line.startswith("replicator: error")]
    assert len(errors) == 1 and split in errors[0] and "2 partitions" in errors[0], refused.output()
    assert "Traceback" not in refused.output() + lost.output()


def test_recreated_connector_first_transaction_is_applied(pg_scenario: Scenario, tmp_path: Path) -> None:
    """A new connector's first transaction has no lastCommitLsn; it must not pass for a duplicate of
    what the old connector's events left as our stored position."""
    s = pg_scenario
    ns = s.namespace
    ddl = f"CREATE TABLE {ns}.items (id int PRIMARY KEY, v text)"
    s.source_sql(ddl)
    target_sql(s, f"CREATE SCHEMA {ns}", ddl)
    proc = start(s, tmp_path)
    try:
        s.source_sql(f"INSERT INTO {ns}.items VALUES (1, 'a')", f"INSERT INTO {ns}.items VALUES (2, 'b')")
        wait_equal(s, f"SELECT * FROM {ns}.items ORDER BY id", proc=proc)
        run_cli("-c", str(s.config_path), "connectors", "delete", "--drop-slot")
        run_cli("-c", str(s.config_path), "connectors", "apply")
        s.source_sql(f"UPDATE {ns}.items SET v = 'first after' WHERE id = 1",
                     f"INSERT INTO {ns}.items VALUES (3, 'c')")
        wait_equal(s, f"SELECT * FROM {ns}.items ORDER BY id", proc=proc)
    finally:
        code = proc.stop()
    assert code == 0, proc.output()
