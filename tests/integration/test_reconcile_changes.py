"""The final check: `reconcile --changed` rechecks only the key ranges the applier changed since each
table's last clean pass (replicator.apply.marks, replicator.reconcile.changes), through the real
pipeline: a change anywhere in a bucket brings that bucket back, a truncate or a table without a key
the whole table, an untouched bucket is not read again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replicator.stack.launcher import StackInfo
from tests.integration.apply_support import ApplyProcess, target_rows, target_sql, wait_equal
from tests.integration.conftest import Scenario, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(params=[("pg-source", "pg-target"), ("my-source", "pg-target")], ids=["pg-to-pg", "mariadb-to-pg"])
def pair(request: pytest.FixtureRequest, stack: StackInfo, tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario(stack, request.param[0], request.param[1], tmp_path)
    s.create_namespace()
    yield s
    s.cleanup()


def reconcile(config: Path, tmp_path: Path, *args: str, expect_ok: bool) -> dict[str, dict[str, Any]]:
    out = tmp_path / "report.json"
    result = run_cli("-c", str(config), "reconcile", *args, "--json", str(out), check=False)
    assert result.returncode == (0 if expect_ok else 1), result.stdout + result.stderr
    return {t["table"].split(".", 1)[1]: t for t in json.loads(out.read_text())["tables"]}


def test_changed_rechecks_only_the_buckets_the_stream_touched(pair: Scenario, tmp_path: Path) -> None:
    s, ns = pair, pair.namespace
    mysql = s.source.engine == "mysql"
    numbers = "SELECT seq FROM seq_1_to_20000" if mysql else "SELECT g FROM generate_series(1, 20000) g"
    s.source_sql(f"CREATE TABLE {ns}.big (id int PRIMARY KEY, v varchar(20))",
                 f"INSERT INTO {ns}.big (id, v) SELECT n, 'v' FROM ({numbers}) AS t(n)" if not mysql else
                 f"INSERT INTO {ns}.big (id, v) SELECT seq, 'v' FROM seq_1_to_20000",
                 f"CREATE TABLE {ns}.bag (a int, b varchar(20))",
                 f"INSERT INTO {ns}.bag VALUES (1, 'x'), (2, 'y')")
    # buckets of max(4 * leaf_rows, chunk_rows / 16) = 400 rows: [4801, 5201) and [14801, 15201) below
    config = s.write_config(apply={"batch_max_events": 500}, reconcile={"chunk_rows": 2000, "leaf_rows": 100})
    run_cli("-c", str(config), "connectors", "apply", "--fix-replica-identity")
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    try:
        run_cli("-c", str(config), "snapshot")
        # the applier has applied something of each table: its passes are tracked from then on
        s.source_sql(f"UPDATE {ns}.big SET v = 'first' WHERE id = 1", f"INSERT INTO {ns}.bag VALUES (3, 'z')")
        wait_equal(s, f"SELECT count(*) FROM {ns}.big WHERE v = 'first'", proc=proc)
        wait_equal(s, f"SELECT count(*) FROM {ns}.bag", proc=proc)

        found = reconcile(config, tmp_path, "--changed", expect_ok=True)  # nothing recorded yet: whole tables
        assert "no clean pass is recorded" in str(found["big"]["notes"]), found["big"]
        assert found["big"]["source_rows"] == 20_000
        found = reconcile(config, tmp_path, expect_ok=True)  # the clean pass, tracked
        assert {t["state"] for t in found.values()} == {"equal"}, found
        found = reconcile(config, tmp_path, "--changed", expect_ok=True)
        assert "0 of " in str(found["big"]["notes"]) and found["big"]["chunks"] == 0, found["big"]
        assert "0 of 1 bucket(s)" in str(found["bag"]["notes"]), found["bag"]

        # a row corrupted in a bucket the stream does not touch is not read again (by design) ...
        target_sql(s, f"UPDATE {ns}.big SET v = 'untouched' WHERE id = 10000")
        # ... one in a bucket it touches is
        s.source_sql(f"UPDATE {ns}.big SET v = 'new' WHERE id IN (5000, 5001)",
                     f"UPDATE {ns}.big SET v = 'new' WHERE id = 15000")
        wait_equal(s, f"SELECT count(*) FROM {ns}.big WHERE v = 'new'", proc=proc)
        target_sql(s, f"UPDATE {ns}.big SET v = 'wrong' WHERE id = 15001")
        found = reconcile(config, tmp_path, "--changed", expect_ok=False)
        big = found["big"]
        assert "2 of " in str(big["notes"]), big
        assert big["source_rows"] <= 800 and big["differences"] == 1, big
        assert big["rows"][0]["key"] == {"id": "15001"}, big
        assert found["bag"]["chunks"] == 0, found["bag"]

        # the full pass finds both; repaired, and then a clean pass again
        found = reconcile(config, tmp_path, "--repair", expect_ok=True)
        assert found["big"]["repaired"] == 2, found["big"]
        found = reconcile(config, tmp_path, expect_ok=True)
        assert {t["state"] for t in found.values()} == {"equal"}, found

        # a change in a table without a key brings the table back whole; a truncate too
        s.source_sql(f"INSERT INTO {ns}.bag VALUES (4, 'w')", f"TRUNCATE TABLE {ns}.big")
        wait_equal(s, f"SELECT count(*) FROM {ns}.bag", proc=proc)
        wait_equal(s, f"SELECT count(*) FROM {ns}.big", proc=proc)
        found = reconcile(config, tmp_path, "--changed", expect_ok=True)
        assert "1 of 1 bucket(s)" in str(found["bag"]["notes"]) and found["bag"]["source_rows"] == 4, found["bag"]
        assert "compared whole" in str(found["big"]["notes"]), found["big"]
        assert target_rows(s, f"SELECT count(*) FROM {ns}.big") == [(0,)]
    finally:
        code = proc.stop()
    assert code == 0, proc.output()


def test_kill9_before_the_batch_commits_loses_no_mark(stack: StackInfo, tmp_path: Path) -> None:
    """The marks commit with the rows: an applier killed before its commit leaves neither, the next one
    writes both, and `--changed` then rechecks that bucket."""
    from tests.integration.apply_support import wait_until

    s = Scenario(stack, "pg-source", "pg-target", tmp_path)
    s.create_namespace()
    ns = s.namespace
    marks = f"SELECT count(*) FROM replicator.reconcile_marks WHERE source_table = '{ns}.big'"
    try:
        s.source_sql(f"CREATE TABLE {ns}.big (id int PRIMARY KEY, v text)",
                     f"INSERT INTO {ns}.big SELECT g, 'v' FROM generate_series(1, 20000) g")
        config = s.write_config(apply={"batch_max_events": 500}, reconcile={"chunk_rows": 2000, "leaf_rows": 100})
        run_cli("-c", str(config), "connectors", "apply")
        proc = ApplyProcess(config, tmp_path / "apply.log").start()
        run_cli("-c", str(config), "snapshot")
        s.source_sql(f"UPDATE {ns}.big SET v = 'first' WHERE id = 1")
        wait_equal(s, f"SELECT count(*) FROM {ns}.big WHERE v = 'first'", proc=proc)
        reconcile(config, tmp_path, expect_ok=True)  # the clean pass, tracked
        assert proc.stop() == 0
        assert target_rows(s, marks) == [(0,)]

        s.source_sql(f"UPDATE {ns}.big SET v = 'new' WHERE id = 7000")
        proc = ApplyProcess(config, tmp_path / "apply.log", fault="apply.before-commit:kill").start()
        wait_until(lambda: not proc.alive(), 60, "the applier to kill itself before its commit")
        assert target_rows(s, f"SELECT v FROM {ns}.big WHERE id = 7000") == [("v",)]
        assert target_rows(s, marks) == [(0,)]  # neither the row nor its mark

        proc = ApplyProcess(config, tmp_path / "apply.log").start()
        wait_equal(s, f"SELECT v FROM {ns}.big WHERE id = 7000", proc=proc)
        assert target_rows(s, marks) == [(1,)]
        target_sql(s, f"UPDATE {ns}.big SET v = 'wrong' WHERE id = 7001")  # the same bucket
        found = reconcile(config, tmp_path, "--changed", expect_ok=False)
        assert "1 of " in str(found["big"]["notes"]) and found["big"]["differences"] == 1, found["big"]
        assert proc.stop() == 0, proc.output()
    finally:
        s.cleanup()
