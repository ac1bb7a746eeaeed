"""Apply semantics through real Debezium (PostgreSQL → PostgreSQL): TOAST placeholders, primary-key
changes, truncate, a column added mid-stream, hostile names, and a poison event under both error
policies. Every test ends with a comparison by query of source and target."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.apply_support import (
    ApplyProcess,
    target_rows,
    target_sql,
    wait_equal,
    wait_until,
)
from tests.integration.conftest import Scenario, run_cli

pytestmark = pytest.mark.integration

# About 10 kB of incompressible text: stored out of line (TOAST), so updates that do not touch it
# send Debezium's unavailable-value placeholder instead.
BIG_TEXT = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 320))"


def test_toast_pk_change_truncate_new_column(pg_scenario: Scenario, tmp_path: Path) -> None:
    s = pg_scenario
    ns = s.namespace
    big = f"CREATE TABLE {ns}.big (id int PRIMARY KEY, counter int NOT NULL, doc text, blob bytea, tags text[])"
    scratch = f"CREATE TABLE {ns}.scratch (id int PRIMARY KEY, v text)"
    s.source_sql(big, scratch)
    target_sql(s, f"CREATE SCHEMA {ns}", big, scratch)
    config = s.write_config()
    run_cli("-c", str(config), "connectors", "apply")
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    try:
        s.source_sql(
            f"INSERT INTO {ns}.big SELECT g, 0, {BIG_TEXT}, convert_to({BIG_TEXT}, 'UTF8'), "
            f"ARRAY(SELECT md5(random()::text) FROM generate_series(1, 400)) FROM generate_series(1, 5) g",
            f"INSERT INTO {ns}.scratch SELECT g, 'v' || g FROM generate_series(1, 50) g",
        )
        wait_equal(s, f"SELECT id, counter, md5(doc), md5(blob), md5(tags::text) FROM {ns}.big ORDER BY id",
                   proc=proc)
        s.source_sql(
            # only the counter changes: doc, blob and tags arrive as placeholders and must be kept
            f"UPDATE {ns}.big SET counter = counter + 1",
            f"UPDATE {ns}.big SET counter = counter + 1 WHERE id <= 2",
            # a primary-key change whose create event carries placeholders for the TOASTed columns
            f"UPDATE {ns}.big SET id = id + 100 WHERE id = 3",
            f"TRUNCATE {ns}.scratch",
            f"INSERT INTO {ns}.scratch VALUES (7, 'after the truncate')",
            f"ALTER TABLE {ns}.big ADD COLUMN extra int DEFAULT 7",
            f"UPDATE {ns}.big SET extra = 42, counter = counter + 10 WHERE id = 4",
            f"INSERT INTO {ns}.big (id, counter, doc) VALUES (6, 1, 'small')",
        )
        rows = wait_equal(
            s, f"SELECT id, counter, md5(doc), md5(blob), md5(tags::text), extra FROM {ns}.big ORDER BY id",
            proc=proc,
        )
        assert [r[0] for r in rows] == [1, 2, 4, 5, 6, 103]
        assert all(r[2] is not None and r[3] is not None for r in rows if r[0] != 6), rows
        wait_equal(s, f"SELECT * FROM {ns}.scratch ORDER BY id", proc=proc)
        assert target_rows(s, f"SELECT * FROM {ns}.scratch") == [(7, "after the truncate")]
    finally:
        code = proc.stop()
    assert code == 0, proc.output()
    assert "added column extra" in proc.output()


def test_hostile_table_and_column_names(pg_scenario: Scenario, tmp_path: Path) -> None:
    """Quotes, backticks, semicolons and spaces in table and column names, unicode in column names.
    (Debezium 3.0.7's pgoutput reader drops the events of a table whose *name* is not ASCII, so
    no event of such a table ever reaches Kafka: `replicator check` is to refuse such tables.)"""
    s = pg_scenario
    ns = s.namespace
    ddl = (f'CREATE TABLE {ns}."we""ird;tab`x" ("i""d" int PRIMARY KEY, "back`tick" text, '
           f'"semi;colon" int, "ünï ✓" text)')
    s.source_sql(ddl)
    target_sql(s, f"CREATE SCHEMA {ns}", ddl)
    config = s.write_config()
    run_cli("-c", str(config), "connectors", "apply")
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    table = f'{ns}."we""ird;tab`x"'
    try:
        s.source_sql(
            f"INSERT INTO {table} VALUES (1, 'a''); DROP TABLE x; --', 1, 'ü'), (2, '`', 2, NULL)",
            f'UPDATE {table} SET "semi;colon" = 5 WHERE "i""d" = 2',
            f'DELETE FROM {table} WHERE "i""d" = 1',
            f"INSERT INTO {table} VALUES (3, 'x', 3, '✓')",
        )
        wait_equal(s, f'SELECT * FROM {table} ORDER BY "i""d"', proc=proc)
    finally:
        code = proc.stop()
    assert code == 0, proc.output()


def test_poison_event_halts_then_goes_to_dead_letters(pg_scenario: Scenario, tmp_path: Path) -> None:
    s = pg_scenario
    ns = s.namespace
    s.source_sql(f"CREATE TABLE {ns}.acct (id int PRIMARY KEY, balance int NOT NULL)")
    # The target refuses negative balances: a permanent failure for exactly one event.
    target_sql(s, f"CREATE SCHEMA {ns}",
               f"CREATE TABLE {ns}.acct (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))")
    config = s.write_config()
    run_cli("-c", str(config), "connectors", "apply")
    s.source_sql(f"INSERT INTO {ns}.acct VALUES (1, 10), (2, 20)",
                 f"INSERT INTO {ns}.acct VALUES (3, -5)",
                 f"INSERT INTO {ns}.acct VALUES (4, 40)")

    halted = ApplyProcess(config, tmp_path / "halt.log").start()
    try:
        wait_until(lambda: not halted.alive(), 90, "the applier to halt on the poison event")
    finally:
        halted.kill()
    assert halted.proc is not None and halted.proc.returncode != 0
    lines = [line for line in halted.output().splitlines() if line.startswith("replicator: error")]
    assert len(lines) == 1, halted.output()
    assert f"{ns}.acct" in lines[0] and '{"id":3}' in lines[0] and f"{s.prefix}.{ns}.acct[0]@" in lines[0]
    assert "check constraint" in lines[0] and "Traceback" not in halted.output()
    assert target_rows(s, f"SELECT count(*) FROM {ns}.acct") == [(0,)]  # the batch rolled back whole

    config = s.write_config(apply={"error_policy": "dead-letter"})
    proc = ApplyProcess(config, tmp_path / "dlq.log").start()
    try:
        wait_equal(s, f"SELECT * FROM {ns}.acct WHERE id <> 3 ORDER BY id", f"SELECT * FROM {ns}.acct ORDER BY id",
                   proc=proc)
        letters = target_rows(s, "SELECT source_table, event_key, reason FROM replicator.dead_letters "
                                 f"WHERE topic = '{s.prefix}.{ns}.acct'")
        assert len(letters) == 1 and letters[0][0] == f"{ns}.acct" and letters[0][1] == '{"id":3}'
        assert "check constraint" in letters[0][2]
        assert proc.metric("replicator_apply_dead_letters_total") == 1
    finally:
        code = proc.stop()
    assert code == 0, proc.output()
