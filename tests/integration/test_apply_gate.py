"""Snapshot gating through real Debezium: a held table's events wait in Kafka (nothing applied, no
offset moves); a copy is taken in a snapshot on the source; released with that snapshot's filter,
exactly the events the copy lacks are applied. The table has no primary key, so an event applied
on top of the copy would show as a duplicate row."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.integration.apply_support import ApplyProcess, target_rows, target_sql, wait_equal, wait_until
from tests.integration.conftest import Scenario, pg_connect, run_cli

pytestmark = pytest.mark.integration


def test_hold_then_release_with_a_snapshot_filter(pg_scenario: Scenario, tmp_path: Path) -> None:
    s = pg_scenario
    ns = s.namespace
    ddl = f"CREATE TABLE {ns}.log (n int, tag text)"
    s.source_sql(ddl, f"ALTER TABLE {ns}.log REPLICA IDENTITY FULL")
    target_sql(s, f"CREATE SCHEMA {ns}", ddl)
    config = s.write_config()
    run_cli("-c", str(config), "connectors", "apply")
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    topic = f"{s.prefix}.{ns}.log"
    try:
        wait_until(lambda: bool(target_rows(s, "SELECT to_regclass('replicator.table_gates')")[0][0]), 60,
                   "our state tables", proc)
        target_sql(s, f"INSERT INTO replicator.table_gates (source_table, state) VALUES ('{ns}.log', 'hold')")
        time.sleep(3)  # the applier re-reads gates every 2 s
        s.source_sql(f"INSERT INTO {ns}.log SELECT g, 'before' FROM generate_series(1, 5) g")
        with pg_connect(s.source) as racing, pg_connect(s.source) as copier:
            racing.autocommit = False
            racing.execute(f"INSERT INTO {ns}.log VALUES (50, 'in progress during the copy')")
            copier.autocommit = False
            copier.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            snapshot, lsn = copier.execute(
                "SELECT pg_current_snapshot()::text, (pg_current_wal_insert_lsn() - '0/0')::bigint").fetchone()
            copied = copier.execute(f"SELECT n, tag FROM {ns}.log").fetchall()
            copier.rollback()
            racing.commit()  # committed after the snapshot: not in the copy, its event must apply
        assert sorted(r[0] for r in copied) == [1, 2, 3, 4, 5]
        s.source_sql(f"INSERT INTO {ns}.log VALUES (200, 'after')", f"UPDATE {ns}.log SET tag = 'upd' WHERE n = 2")
        time.sleep(3)
        assert target_rows(s, f"SELECT count(*) FROM {ns}.log") == [(0,)]
        held = target_rows(s, f"SELECT next_offset FROM replicator.apply_offsets WHERE topic = '{topic}'")
        assert held in ([], [(None,)]), held

        with pg_connect(s.target) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY {ns}.log (n, tag) FROM STDIN") as copy:
                for row in copied:
                    copy.write_row(row)
            xmin, xmax, xip = snapshot.split(":")
            chunk = {"low": None, "high": None,
                     "postgres": {"xmin": int(xmin), "xmax": int(xmax), "lsn": int(lsn),
                                  "xip": [int(x) for x in xip.split(",") if x]}}
            conn.execute("UPDATE replicator.table_gates SET state = 'filter', filter = %s WHERE source_table = %s",
                         (orjson.dumps({"chunks": [chunk]}).decode(), f"{ns}.log"))
        wait_equal(s, f"SELECT n, tag, count(*) FROM {ns}.log GROUP BY n, tag ORDER BY n, tag", proc=proc)
        assert proc.metric('replicator_apply_skipped_events_total{reason="snapshot"}') == 5
    finally:
        code = proc.stop()
    assert code == 0, proc.output()
