"""The reconciler against real databases: type matrices copied by the real snapshot hash equal on all
four engine pairs (not one chunk differs: zero false positives), and differences injected into the
target are each found, or accepted, exactly as the canonical rules say."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replicator.stack.launcher import StackInfo
from tests.integration.apply_support import target_sql
from tests.integration.conftest import Scenario, pg_connect, run_cli

pytestmark = pytest.mark.integration


def scenario(stack: StackInfo, source: str, target: str, tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario(stack, source, target, tmp_path)
    s.create_namespace()
    yield s
    s.cleanup()


@pytest.fixture
def pg_to_pg(stack: StackInfo, tmp_path: Path) -> Iterator[Scenario]:
    yield from scenario(stack, "pg-source", "pg-target", tmp_path)


@pytest.fixture
def my_to_pg(stack: StackInfo, tmp_path: Path) -> Iterator[Scenario]:
    yield from scenario(stack, "my-source", "pg-target", tmp_path)


@pytest.fixture
def pg_to_my(stack: StackInfo, tmp_path: Path) -> Iterator[Scenario]:
    yield from scenario(stack, "pg-source", "my-target", tmp_path)


@pytest.fixture
def my_to_my(stack: StackInfo, tmp_path: Path) -> Iterator[Scenario]:
    yield from scenario(stack, "my-source", "my-target", tmp_path)


def copy(s: Scenario, **config: Any) -> Path:
    """The connector (the snapshot proves it streams first), then the real snapshot copy."""
    path = s.write_config(**config)
    run_cli("-c", str(path), "connectors", "apply", "--fix-replica-identity")
    result = run_cli("-c", str(path), "snapshot")
    assert "released to the change stream" in result.stderr, result.stderr
    return path


def reconcile(path: Path, tmp_path: Path, *args: str, expect_ok: bool) -> dict[str, Any]:
    report_file = tmp_path / "report.json"
    result = run_cli("-c", str(path), "reconcile", *args, "--json", str(report_file), check=False)
    assert result.returncode == (0 if expect_ok else 1), result.stdout + result.stderr
    report: dict[str, Any] = json.loads(report_file.read_text())
    assert report["ok"] is expect_ok
    return report


def assert_hash_equal(report: dict[str, Any]) -> None:
    """Every table equal, and no chunk's checksums differed: the two engines' SQL gave the same texts."""
    for table in report["tables"]:
        assert table["state"] == "equal", table
        assert table["mismatched_chunks"] == 0 and table["false_alarms"] == 0, table
        assert table["source_rows"] == table["target_rows"] > 0, table


def assert_repairs_every_type(s: Scenario, path: Path, tmp_path: Path) -> None:
    """Every row of the matrix deleted from the target (straight, bypassing the pipeline): `--repair`
    writes them all back from the source's values through the applier's writer, every type of the
    matrix converted as apply converts it, and the table then hashes equal."""
    table = f'"{s.namespace}".types' if s.target.engine == "postgres" else f"`{s.namespace}`.types"
    target_sql(s, f"DELETE FROM {table}")
    found = reconcile(path, tmp_path, expect_ok=False)["tables"][0]
    assert found["differences"] == found["source_rows"] > 0 and found["target_rows"] == 0, found
    (repaired,) = reconcile(path, tmp_path, "--repair", expect_ok=True)["tables"]
    assert repaired["state"] == "repaired" and repaired["repaired"] == found["source_rows"], repaired
    assert_hash_equal(reconcile(path, tmp_path, expect_ok=True))


# --- type matrices ----------------------------------------------------------------------------------

def test_type_matrix_pg_to_pg_hashes_equal(pg_to_pg: Scenario, tmp_path: Path) -> None:
    from tests.integration.test_apply_engines import PG_ALL_ROWS, PG_ALL_TYPES

    s, ns = pg_to_pg, pg_to_pg.namespace
    s.source_sql(f"CREATE TYPE {ns}.mood AS ENUM ('sad', 'ok', 'happy')",
                 f"CREATE TABLE {ns}.types ({PG_ALL_TYPES.format(ns=ns)})",
                 "SET TIME ZONE 'UTC'", f"INSERT INTO {ns}.types VALUES {', '.join(PG_ALL_ROWS)}")
    path = copy(s)
    assert_hash_equal(reconcile(path, tmp_path, expect_ok=True))
    assert_repairs_every_type(s, path, tmp_path)


def test_type_matrix_mariadb_to_pg_hashes_equal(my_to_pg: Scenario, tmp_path: Path) -> None:
    from tests.integration.test_apply_engines import MY_ROWS, MY_TYPES

    s = my_to_pg
    s.source_sql("SET time_zone = '+00:00'", f"CREATE TABLE types ({MY_TYPES})",
                 f"INSERT INTO types VALUES {', '.join(MY_ROWS)}")
    path = copy(s)
    assert_hash_equal(reconcile(path, tmp_path, expect_ok=True))
    assert_repairs_every_type(s, path, tmp_path)


def test_type_matrix_pg_to_mariadb_hashes_equal(pg_to_my: Scenario, tmp_path: Path) -> None:
    from tests.integration.test_apply_engines import PG_ROWS, PG_TYPES

    s, ns = pg_to_my, pg_to_my.namespace
    s.source_sql(f"CREATE TABLE {ns}.types ({PG_TYPES})", "SET TIME ZONE 'UTC'",
                 f"INSERT INTO {ns}.types VALUES {', '.join(PG_ROWS)}")
    overrides = {f"{ns}.types.{c}": t for c, t in (("iv", "varchar(64)"), ("ia", "json"), ("ta", "json"),
                                                   ("vb", "varchar(16)"))}
    path = copy(s, snapshot={"column_types": overrides})
    assert_hash_equal(reconcile(path, tmp_path, expect_ok=True))
    assert_repairs_every_type(s, path, tmp_path)


def test_type_matrix_mariadb_to_mariadb_hashes_equal(my_to_my: Scenario, tmp_path: Path) -> None:
    from tests.integration.test_apply_engines import MY_ROWS, MY_TYPES

    s = my_to_my
    s.source_sql("SET time_zone = '+00:00'", f"CREATE TABLE types ({MY_TYPES})",
                 f"INSERT INTO types VALUES {', '.join(MY_ROWS)}")
    path = copy(s)
    assert_hash_equal(reconcile(path, tmp_path, expect_ok=True))
    assert_repairs_every_type(s, path, tmp_path)


@pytest.mark.parametrize("pair", ["pg_to_pg", "my_to_pg"])
def test_type_matrix_without_a_key_repairs_extra_and_missing_rows(pair: str, request: pytest.FixtureRequest,
                                                                  tmp_path: Path) -> None:
    """A table without a primary key, every type of the matrix: a duplicated row on the target is
    deleted exactly once (matched on every column as the target reads it) and a missing one appended."""
    from tests.integration.test_apply_engines import MY_ROWS, MY_TYPES, PG_ALL_ROWS, PG_ALL_TYPES

    s: Scenario = request.getfixturevalue(pair)
    ns = s.namespace
    if s.source.engine == "postgres":
        s.source_sql(f"CREATE TYPE {ns}.mood AS ENUM ('sad', 'ok', 'happy')",
                     f"CREATE TABLE {ns}.types ({PG_ALL_TYPES.format(ns=ns).replace(' PRIMARY KEY', '')})",
                     "SET TIME ZONE 'UTC'", f"INSERT INTO {ns}.types VALUES {', '.join(PG_ALL_ROWS)}")
    else:
        s.source_sql("SET time_zone = '+00:00'", f"CREATE TABLE types ({MY_TYPES.replace(' PRIMARY KEY', '')})",
                     f"INSERT INTO types VALUES {', '.join(MY_ROWS)}")
    path = copy(s)
    assert_hash_equal(reconcile(path, tmp_path, expect_ok=True))
    table = f'"{ns}".types'
    target_sql(s, f"INSERT INTO {table} SELECT * FROM {table} WHERE id = 1", f"DELETE FROM {table} WHERE id = 2")
    found = reconcile(path, tmp_path, expect_ok=False)["tables"][0]
    assert sorted(r["kind"] for r in found["rows"]) == ["extra", "missing"], found["rows"]
    (repaired,) = reconcile(path, tmp_path, "--repair", expect_ok=True)["tables"]
    assert repaired["state"] == "repaired", repaired
    assert_hash_equal(reconcile(path, tmp_path, expect_ok=True))
    with pg_connect(s.target) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE id = 1").fetchone() == (1,)


# --- injected differences ---------------------------------------------------------------------------

PG_TABLE = ("CREATE TABLE {ns}.inj (id int PRIMARY KEY, n numeric(10,2), nn numeric(20,6), ts timestamptz,"
            " t timestamp, j json, c char(6), v varchar(10), s text, f double precision)")
MY_TABLE = ("CREATE TABLE inj (id INT PRIMARY KEY, n DECIMAL(10,2), nn DECIMAL(20,6), ts TIMESTAMP(6) NULL,"
            " t DATETIME(6), j JSON, c CHAR(6), v VARCHAR(10), s TEXT, f DOUBLE)")
ROWS = ", ".join(f"({i}, {i}.25, {i}.5, '2024-03-01 10:00:00', '2024-03-01 11:00:00',"
                 f" '{{\"a\": {i}, \"b\": [1, 2.5]}}', 'ab', 'ab', 'text {i}', {i}.1)" for i in range(1, 41))

# What each injected change on the target must give: None = accepted as equal by the rules.
EXPECTED = {1: "missing", 1000: "extra", 2: "different", 3: "different", 4: None, 5: "different", 6: None,
            7: None, 8: "different"}


def inject(s: Scenario) -> None:
    """Changes written straight into the target, bypassing the pipeline."""
    if s.target.engine == "postgres":
        table = f'"{s.namespace}".inj'
        target_sql(s, f"ALTER TABLE {table} ALTER nn TYPE numeric",  # no scale: 1.5 is stored as 1.5
                   f"DELETE FROM {table} WHERE id = 1",
                   f"INSERT INTO {table} (id, s) VALUES (1000, 'only here')",
                   f"UPDATE {table} SET v = 'changed' WHERE id = 2",
                   f"UPDATE {table} SET s = '' WHERE id = 3",  # NULL on the source, '' here
                   f"UPDATE {table} SET nn = 1.5 WHERE id = 4",  # 1.500000 on the source: equal
                   f"UPDATE {table} SET ts = ts + interval '1 hour' WHERE id = 5",
                   f"UPDATE {table} SET j = '{{\"b\":[1,2.5],   \"a\":6}}' WHERE id = 6",  # key order, spaces
                   f"UPDATE {table} SET c = 'ab    ' WHERE id = 7",  # CHAR(n) padding: equal
                   f"UPDATE {table} SET v = 'ab ' WHERE id = 8")  # a trailing space in VARCHAR: different
    else:
        table = f"`{s.namespace}`.inj"
        target_sql(s, f"ALTER TABLE {table} MODIFY nn DECIMAL(30,10)",
                   f"DELETE FROM {table} WHERE id = 1",
                   f"INSERT INTO {table} (id, s) VALUES (1000, 'only here')",
                   f"UPDATE {table} SET v = 'changed' WHERE id = 2",
                   f"UPDATE {table} SET s = '' WHERE id = 3",
                   f"UPDATE {table} SET nn = 1.5 WHERE id = 4",
                   f"UPDATE {table} SET ts = ts + INTERVAL 1 HOUR WHERE id = 5",
                   f"UPDATE {table} SET j = '{{\"b\":[1,2.5],   \"a\":6}}' WHERE id = 6",
                   f"UPDATE {table} SET c = 'ab    ' WHERE id = 7",
                   f"UPDATE {table} SET v = 'ab ' WHERE id = 8")


@pytest.mark.parametrize("pair", ["pg_to_pg", "my_to_pg", "pg_to_my"])
def test_injected_differences_are_found_or_accepted_by_the_rules(pair: str, request: pytest.FixtureRequest,
                                                                 tmp_path: Path) -> None:
    s: Scenario = request.getfixturevalue(pair)
    ns = s.namespace
    if s.source.engine == "postgres":
        s.source_sql(PG_TABLE.format(ns=ns), "SET TIME ZONE 'UTC'", f"INSERT INTO {ns}.inj VALUES {ROWS}",
                     f"UPDATE {ns}.inj SET s = NULL WHERE id = 3", f"UPDATE {ns}.inj SET nn = 1.5 WHERE id = 4")
    else:
        s.source_sql("SET time_zone = '+00:00'", MY_TABLE, f"INSERT INTO inj VALUES {ROWS}",
                     "UPDATE inj SET s = NULL WHERE id = 3", "UPDATE inj SET nn = 1.5 WHERE id = 4")
    path = copy(s, reconcile={"chunk_rows": 100, "leaf_rows": 4})
    inject(s)
    report = reconcile(path, tmp_path, expect_ok=False)
    (table,) = report["tables"]
    found = {int(r["key"]["id"]): r for r in table["rows"]}
    assert {k: r["kind"] for k, r in found.items()} == {k: v for k, v in EXPECTED.items() if v}, table["rows"]
    assert table["differences"] == 6
    assert [c["column"] for c in found[2]["columns"]] == ["v"]
    assert found[3]["columns"] == [{"column": "s", "source": None, "target": ""}]
    (shifted,) = found[5]["columns"]
    assert shifted["column"] == "ts" and shifted["source"] != shifted["target"]
    if s.source.engine != s.target.engine:  # microseconds since the epoch
        assert int(shifted["target"]) - int(shifted["source"]) == 3600 * 10**6
    assert found[8]["columns"] == [{"column": "v", "source": "ab", "target": "ab "}]
    assert found[1]["source"]["s"] == "text 1" and found[1000]["target"]["s"] == "only here"
    # --repair: the confirmed rows re-copied from the source through the applier's writer, verified
    (repaired,) = reconcile(path, tmp_path, "--repair", expect_ok=True)["tables"]
    assert repaired["state"] == "repaired" and repaired["repaired"] == 6, repaired
    assert_hash_equal(reconcile(path, tmp_path, expect_ok=True))


# --- under live writes, through the real pipeline ----------------------------------------------------

def test_under_live_writes_no_false_difference_and_injected_ones_confirmed(pg_to_pg: Scenario,
                                                                          tmp_path: Path) -> None:
    """The source takes writes on every table (but `settled`) the whole time and the applier runs: a
    pass finds ranges that differ only because the target lags; their anchored rechecks must find
    them equal. Differences written straight into the target are then confirmed, and nothing else."""
    import time

    from tests.integration.apply_support import ApplyProcess
    from tests.integration.test_snapshot import Load, seed, tables

    s, ns = pg_to_pg, pg_to_pg.namespace
    s.source_sql(*tables(ns), f"CREATE TABLE {ns}.settled (id int PRIMARY KEY, v text)",
                 f"INSERT INTO {ns}.settled SELECT g, 'v' || g FROM generate_series(1, 500) g")
    seed(s, 20_000)
    config = s.write_config(snapshot={"workers": 2, "chunk_rows": 2500}, apply={"batch_max_events": 500},
                            reconcile={"chunk_rows": 2000, "leaf_rows": 200})
    run_cli("-c", str(config), "connectors", "apply")
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    try:
        with Load(s, 20_001) as load:
            run_cli("-c", str(config), "snapshot")
            time.sleep(2)
            report = reconcile(config, tmp_path, expect_ok=True)
            states = {t["table"].split(".", 1)[1]: t["state"] for t in report["tables"]}
            assert set(states.values()) == {"equal"}, report
            target_sql(s, f"INSERT INTO {ns}.items (id, name, qty) VALUES (10000000, 'injected', 1)",
                       f"INSERT INTO {ns}.journal VALUES (999, 'injected')",
                       f"UPDATE {ns}.settled SET v = 'injected' WHERE id = 3")
            report = reconcile(config, tmp_path, expect_ok=False)
            assert load.error is None, load.error
            assert load.transactions > 50, load.transactions
        found = {t["table"].split(".", 1)[1]: t for t in report["tables"]}
        assert {n: t["differences"] for n, t in found.items()} == {
            "items": 1, "words": 0, "pairs": 0, "journal": 1, "nothing": 0, "settled": 1}, report
        assert found["items"]["rows"][0]["kind"] == "extra" and found["items"]["rows"][0]["key"] == {"id": "10000000"}
        assert found["journal"]["rows"][0]["kind"] == "extra"
        assert found["journal"]["rows"][0]["target"] == {"n": "999", "tag": "injected"}
        assert found["settled"]["rows"][0]["columns"] == [{"column": "v", "source": "v3", "target": "injected"}]
        assert all(t["state"] in ("equal", "different") for t in report["tables"]), report
        for name in ("items", "journal", "settled"):  # confirmed at a proven common stream position
            assert any("rechecked at a common stream position" in n for n in found[name]["notes"]), found[name]
        assert "reconcile:" not in str(target_sql_rows(s, "SELECT source_table FROM replicator.table_gates"))
        with Load(s, 40_001) as load:  # repaired under writes: never an older value over a newer one
            report = reconcile(config, tmp_path, "--repair", expect_ok=True)
            assert {t["state"] for t in report["tables"]} <= {"equal", "repaired"}, report
            assert sum(t["repaired"] for t in report["tables"]) == 3, report
            time.sleep(1)
            report = reconcile(config, tmp_path, expect_ok=True)
            assert {t["state"] for t in report["tables"]} == {"equal"}, report
    finally:
        code = proc.stop()
    assert code == 0, proc.output()


def target_sql_rows(s: Scenario, query: str) -> list[tuple[Any, ...]]:
    from tests.integration.apply_support import target_rows

    return target_rows(s, query)


def test_serve_reconciles_continuously_with_figures_on_metrics(pg_to_pg: Scenario, tmp_path: Path) -> None:
    """`serve --reconcile`: rolling passes beside the applier; the last clean pass and the differences
    per table are on /metrics, and a difference written into the target shows there."""
    import time

    from tests.integration.apply_support import ApplyProcess, wait_until

    s, ns = pg_to_pg, pg_to_pg.namespace
    s.source_sql(f"CREATE TABLE {ns}.kept (id int PRIMARY KEY, v text)",
                 f"INSERT INTO {ns}.kept SELECT g, 'v' || g FROM generate_series(1, 3000) g")
    config = copy(s, reconcile={"interval_s": 0.5, "chunk_rows": 1000})
    serve = ApplyProcess(config, tmp_path / "serve.log", command=("serve", "--reconcile")).start()
    try:
        table = f'table="{ns}.kept"'

        def metric(selector: str) -> float:
            try:
                return serve.metric(selector)
            except Exception:  # not serving yet (httpx.ConnectError)
                return -1.0

        wait_until(lambda: metric(f"replicator_reconcile_last_clean_pass_timestamp_seconds{{{table}}}") > 0,
                   60, "a clean pass", serve)
        assert serve.metric(f"replicator_reconcile_chunks_total{{{table}}}") >= 3
        assert serve.metric(f"replicator_reconcile_rows_total{{{table}}}") >= 3000
        s.source_sql(f"UPDATE {ns}.kept SET v = 'new' WHERE id = 10")  # through the stream: stays clean
        target_sql(s, f'UPDATE "{ns}".kept SET v = \'injected\' WHERE id = 20')
        wait_until(lambda: metric(f"replicator_reconcile_differences{{{table}}}") == 1, 60,
                   "the injected difference on /metrics", serve)
        time.sleep(0.5)
        assert "reconcile: pass done" in serve.output()
    finally:
        code = serve.stop()
    assert code == 0, serve.output()


# --- the shipped test vectors, on both real engines ----------------------------------------------------

VECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "canonical_vectors.json"


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_canonical_test_vectors_on_the_real_engines(engine: str, stack: StackInfo, tmp_path: Path) -> None:
    """Every vector of tests/fixtures/canonical_vectors.json: the engine's SQL gives exactly that text."""
    from replicator.canonical import ColumnRule, Family
    from replicator.config import load_config
    from replicator.dialects import hash_side_for
    from replicator.dialects.base import HashedTable
    from replicator.model import TableId

    vectors = json.loads(VECTORS.read_text())[engine]
    s = Scenario(stack, "pg-source" if engine == "postgres" else "my-source", "pg-target", tmp_path)
    s.create_namespace()
    columns = ", ".join(f"c{i} {v[0]}" for i, v in enumerate(vectors))
    values = ", ".join(v[1] for v in vectors)
    if engine == "postgres":
        s.source_sql(f"CREATE TABLE {s.namespace}.v (id int PRIMARY KEY, {columns})", "SET TIME ZONE 'UTC'",
                     f"INSERT INTO {s.namespace}.v VALUES (1, {values})")
    else:
        s.source_sql("SET time_zone = '+00:00'", f"CREATE TABLE v (id INT PRIMARY KEY, {columns})",
                     f"INSERT INTO v VALUES (1, {values})")
    config = load_config(s.write_config())
    side = hash_side_for(config.source, "source")
    try:
        # the other side's type unknown: the general form (equal fixed scales compare their plain text)
        rules = tuple(ColumnRule(f"c{i}", Family(v[2]), v[0], "") for i, v in enumerate(vectors))
        table = HashedTable(TableId(s.namespace, "v"), rules, {r.name: r.source_type for r in rules}, ("id",),
                            ("int",))
        ((_, texts),) = list(side.rows(table, [(None, None)]))
    finally:
        side.close()
    wrong = [f"{v[0]} {v[1]}: {text!r}, expected {v[3]!r}" for v, text in zip(vectors, texts, strict=True)
             if text != v[3]]
    assert not wrong, "\n".join(wrong)


# --- kill -9 at named points of a recheck and a repair ---------------------------------------------------

@pytest.mark.parametrize("fault", ["reconcile.after-hold:kill", "reconcile.after-cut:kill",
                                   "reconcile.repair-before-commit:kill"])
def test_kill9_during_a_recheck_then_run_again(pg_to_pg: Scenario, tmp_path: Path, fault: str) -> None:
    """Killed while it holds a table (its apply paused) or before its repair commits: the gate it left is
    removed by the next run, nothing half-written stays, the applier goes on, and the next run repairs."""
    import os
    import time

    from tests.integration.apply_support import ApplyProcess, source_rows, target_rows, wait_equal
    from tests.integration.test_snapshot import Load, seed, tables

    s, ns = pg_to_pg, pg_to_pg.namespace
    s.source_sql(*tables(ns))
    seed(s, 5_000)
    config = s.write_config(apply={"batch_max_events": 500}, reconcile={"chunk_rows": 1000, "leaf_rows": 100})
    run_cli("-c", str(config), "connectors", "apply")
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    try:
        with Load(s, 5_001) as load:
            run_cli("-c", str(config), "snapshot")
            target_sql(s, f"INSERT INTO {ns}.items (id, name, qty) VALUES (10000000, 'injected', 1)")
            killed = run_cli("-c", str(config), "reconcile", f"{ns}.items", "--repair", check=False,
                             env={**os.environ, "REPLICATOR_FAULT": fault})
            assert killed.returncode == -9, killed.stdout + killed.stderr
            gates = target_rows(s, "SELECT source_table FROM replicator.table_gates"
                                   f" WHERE source_table = 'reconcile:{ns}.items'")
            assert gates == [(f"reconcile:{ns}.items",)]  # left behind: the table's apply is paused
            assert target_rows(s, f"SELECT count(*) FROM {ns}.items WHERE id = 10000000") == [(1,)]
            time.sleep(1)
            again = run_cli("-c", str(config), "reconcile", "--repair", check=False)
            assert again.returncode == 0, again.stdout + again.stderr
            assert f"removed a reconcile gate left behind on {ns}.items" in again.stderr, again.stderr
            assert load.error is None and load.transactions > 20, (load.error, load.transactions)
        assert target_rows(s, f"SELECT count(*) FROM {ns}.items WHERE id = 10000000") == [(0,)]
        wait_equal(s, f"SELECT * FROM {ns}.items ORDER BY id", timeout_s=60, proc=proc)
        assert source_rows(s, f"SELECT count(*) FROM {ns}.items")[0][0] > 5_000
    finally:
        code = proc.stop()
    assert code == 0, proc.output()


# --- the reached proof does not trust the broker's high watermark ------------------------------------

def test_a_stale_high_watermark_does_not_prove_the_view_reached(pg_to_pg: Scenario, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker may report a high watermark below records it holds (the local stack's did). With no
    applier running and events of the table in Kafka after its stored offset, the target has not
    reached the view, whatever the high watermark says: `reach` must not answer EXACT."""
    from replicator.config import load_config
    from replicator.dialects import hash_side_for
    from replicator.model import TableId, topic_for
    from replicator.reconcile.anchor import Anchor, Reached

    s, ns = pg_to_pg, pg_to_pg.namespace
    s.source_sql(f"CREATE TABLE {ns}.t (id int PRIMARY KEY, v text)",
                 f"INSERT INTO {ns}.t SELECT g, 'v' FROM generate_series(1, 100) g")
    path = copy(s)  # released; no applier runs in this test
    s.source_sql(f"INSERT INTO {ns}.t SELECT g, 'later' FROM generate_series(101, 110) g")
    config = load_config(path, {})
    table = TableId(ns, "t")
    anchor = Anchor(config, watermark_timeout_s=30)
    # the 10 events are in Kafka (a watermark written after them arrived: the real proof), then the
    # broker's report is made stale
    assert anchor._high_after_watermark(topic_for(config.kafka.topic_prefix, table)) is not None
    monkeypatch.setattr(anchor, "_high_after_watermark", lambda topic: 0)
    source = hash_side_for(config.source, "source")
    try:
        anchor.hold(table)
        view = source.open_view()
        anchor.cut(table, view)
        assert anchor.reach(table, view, timeout_s=5) is Reached.TIMEOUT
    finally:
        source.close_view()
        anchor.release(table)
        source.close()
        anchor.close()


@pytest.mark.parametrize("pair", ["pg_to_pg", "my_to_pg"])
def test_a_table_wider_than_one_concat_ws_hashes_equal_and_names_a_changed_last_column(
        pair: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """PostgreSQL joins at most 99 column texts per concat_ws: 130 columns are joined in groups, and
    the text still matches the other side's, column by column."""
    s: Scenario = request.getfixturevalue(pair)
    columns = [f"c{i}" for i in range(1, 130)]
    types = ", ".join(f"{c} {'int' if i % 2 else 'varchar(20)'}" for i, c in enumerate(columns))
    values = ", ".join(
        "(" + ", ".join([str(n)] + [("NULL" if (n + i) % 7 == 0 else str(n * i)) if i % 2
                                    else f"'t{n},{i}'" for i in range(len(columns))]) + ")"
        for n in range(1, 41))
    table = f"{s.namespace}.wide" if s.source.engine == "postgres" else "wide"
    s.source_sql(f"CREATE TABLE {table} (id int PRIMARY KEY, {types})", f"INSERT INTO {table} VALUES {values}")
    path = copy(s)
    assert_hash_equal(reconcile(path, tmp_path, expect_ok=True))
    target_sql(s, f'UPDATE "{s.namespace}".wide SET c129 = \'changed\' WHERE id = 17')
    (found,) = reconcile(path, tmp_path, expect_ok=False)["tables"]
    assert [(int(r["key"]["id"]), [c["column"] for c in r["columns"]]) for r in found["rows"]] == [(17, ["c129"])]


def test_one_process_set_inside_a_view_outlives_it(stack: StackInfo, tmp_path: Path) -> None:
    """The balance may switch PostgreSQL's workers off or on while a recheck's read view is open: the
    view ends by COMMIT (it is read only), so the switch stays."""
    from replicator.config import load_config
    from replicator.dialects import hash_side_for

    s = Scenario(stack, "pg-source", "pg-target", tmp_path)
    side = hash_side_for(load_config(s.write_config()).target, "target")
    try:
        with pg_connect(s.target) as conn:
            default = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()
        assert default is not None and default[0] != "0"
        for on in (True, False):
            side.open_view()
            side.one_process(on)
            side.close_view()
            got = side._conn.execute("SHOW max_parallel_workers_per_gather").fetchone()  # type: ignore[attr-defined]
            assert got is not None and got[0] == ("0" if on else default[0])
    finally:
        side.close()
