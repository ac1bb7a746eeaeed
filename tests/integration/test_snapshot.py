"""The snapshot copy and its hand-off to the change stream, through real Debezium, under live writes.

A write load runs on the source during the whole snapshot: inserts, updates and deletes on tables
with integer, text and composite primary keys, and appends plus one-row updates on a table without
a primary key (the witness of double application: an event applied on top of a copy that already
holds it leaves a duplicate row). The applier runs from the start, so it has applied events of the
tables before the snapshot holds them. At the end every table is compared row by row (the no-PK
table with its duplicates counted).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.apply_support import ApplyProcess, source_rows, target_rows, target_sql, wait_equal
from tests.integration.conftest import Scenario, my_connect, pg_connect, run_cli

pytestmark = pytest.mark.integration

TEXT_KEYS = ["a", "B", "b", "ä", "Z", "z ", "z", "zz", "ő", "日本", "a b", "A", "é", "e"]


def tables(ns: str) -> list[str]:
    return [
        f"CREATE TABLE {ns}.items (id bigint PRIMARY KEY, name text, qty int NOT NULL, payload bytea)",
        f"CREATE TABLE {ns}.words (w text PRIMARY KEY, n int)",
        f"CREATE TABLE {ns}.pairs (a int, b varchar(20), v numeric(10,2), PRIMARY KEY (a, b))",
        f"CREATE TABLE {ns}.journal (n int, tag text)",
        f"CREATE TABLE {ns}.nothing (id int PRIMARY KEY)",
    ]


def seed(s: Scenario, rows: int) -> None:
    ns = s.namespace
    s.source_sql(
        f"INSERT INTO {ns}.items SELECT g, 'item ' || g, g % 100, decode(md5(g::text), 'hex')"
        f" FROM generate_series(1, {rows}) g",
        f"INSERT INTO {ns}.words SELECT k || g, g FROM generate_series(1, 300) g,"
        f" unnest(ARRAY[{', '.join(repr(k) for k in TEXT_KEYS)}]) k",
        f"INSERT INTO {ns}.pairs SELECT g % 50, 'k' || (g / 50), g / 7.0 FROM generate_series(1, 3000) g",
        f"INSERT INTO {ns}.journal SELECT g % 9, 'same' FROM generate_series(1, 2000) g",
        f"ALTER TABLE {ns}.journal REPLICA IDENTITY FULL",
    )


class Load(threading.Thread):
    """Live writes on every table until stopped."""

    def __init__(self, s: Scenario, first_id: int) -> None:
        super().__init__(daemon=True)
        self.s = s
        self.next_id = first_id
        self.stop = threading.Event()
        self.random = random.Random(11)
        self.transactions = 0
        self.error: BaseException | None = None

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.join(30)

    def run(self) -> None:
        ns, r = self.s.namespace, self.random
        try:
            with pg_connect(self.s.source) as conn:
                while not self.stop.is_set():
                    with conn.transaction():
                        conn.execute(f"INSERT INTO {ns}.items VALUES (%s, 'new', 0, '\\x00ff')", (self.next_id,))
                        self.next_id += 1
                        conn.execute(f"UPDATE {ns}.items SET qty = qty + 1, name = name || '+' WHERE id = %s",
                                     (r.randint(1, self.next_id),))
                        if r.random() < 0.4:
                            conn.execute(f"DELETE FROM {ns}.items WHERE id = %s", (r.randint(1, self.next_id),))
                        word = r.choice(TEXT_KEYS) + str(r.randint(1, 330))
                        conn.execute(f"INSERT INTO {ns}.words VALUES (%s, 1) ON CONFLICT (w) DO UPDATE"
                                     " SET n = words.n + 1", (word,))
                        if r.random() < 0.3:
                            conn.execute(f"DELETE FROM {ns}.words WHERE w = %s", (r.choice(TEXT_KEYS) + "7",))
                        conn.execute(f"UPDATE {ns}.pairs SET v = v + 1 WHERE a = %s AND b = %s",
                                     (r.randint(0, 49), f"k{r.randint(0, 60)}"))
                        conn.execute(f"INSERT INTO {ns}.journal VALUES (%s, 'same')", (r.randint(0, 8),))
                        if r.random() < 0.3:
                            conn.execute(f"UPDATE {ns}.journal SET n = n + 100 WHERE ctid ="
                                         f" (SELECT ctid FROM {ns}.journal WHERE n = %s LIMIT 1)", (r.randint(0, 8),))
                    self.transactions += 1
                    time.sleep(0.005)
        except BaseException as exc:
            self.error = exc


def prepare(s: Scenario, rows: int, **snapshot: Any) -> Path:
    ns = s.namespace
    s.source_sql(*tables(ns))
    seed(s, rows)
    config = s.write_config(snapshot={"workers": 2, "chunk_rows": 2500, **snapshot},
                            apply={"batch_max_events": 500})
    run_cli("-c", str(config), "connectors", "apply")
    return config


def snapshot_under_load(s: Scenario, tmp_path: Path, load: Load, **snapshot: Any) -> ApplyProcess:
    """Connector, applier, then the snapshot while `load` writes on the source (from 3 s before it to 3 s
    after it); the load is stopped and checked. The applier keeps running for the comparison."""
    config = s.write_config(snapshot={"workers": 2, **snapshot}, apply={"batch_max_events": 500})
    run_cli("-c", str(config), "connectors", "apply")
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    with load:
        time.sleep(3)  # the applier applies events of not-yet-held tables into the empty targets
        result = run_cli("-c", str(config), "snapshot")
        assert "the connector streams: a watermark reached Kafka" in result.stderr, result.stderr
        assert "released to the change stream" in result.stderr, result.stderr
        time.sleep(3)  # writes after the release
    assert load.error is None, load.error
    assert load.transactions > 50, load.transactions
    return proc


def assert_same(s: Scenario, proc: ApplyProcess) -> None:
    ns = s.namespace
    wait_equal(s, f"SELECT * FROM {ns}.items ORDER BY id", timeout_s=120, proc=proc)
    wait_equal(s, f'SELECT * FROM {ns}.words ORDER BY w COLLATE "C"', timeout_s=60, proc=proc)
    wait_equal(s, f"SELECT * FROM {ns}.pairs ORDER BY a, b", timeout_s=60, proc=proc)
    wait_equal(s, f"SELECT n, tag, count(*) FROM {ns}.journal GROUP BY n, tag ORDER BY n, tag", timeout_s=60,
               proc=proc)
    assert target_rows(s, f"SELECT count(*) FROM {ns}.nothing") == [(0,)]
    # the primary keys the load went without are back (a resumed copy adds them back too)
    assert_keys_back(s)


def assert_keys_back(s: Scenario) -> None:
    """The primary keys the load went without are back, as they were (name and definition)."""
    keys = target_rows(s, "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k"
                          " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
                          f" WHERE n.nspname = '{s.namespace}' AND k.contype = 'p' ORDER BY 1")
    assert keys == [("items", "items_pkey", "PRIMARY KEY (id)"), ("nothing", "nothing_pkey", "PRIMARY KEY (id)"),
                    ("pairs", "pairs_pkey", "PRIMARY KEY (a, b)"), ("words", "words_pkey", "PRIMARY KEY (w)")], keys


def ledger(s: Scenario) -> dict[str, tuple[str, int]]:
    rows = target_rows(s, "SELECT t.source_table, t.state, (SELECT count(*) FROM replicator.snapshot_chunks c"
                          " WHERE c.source_table = t.source_table) FROM replicator.snapshot_tables t"
                          f" WHERE t.source_table LIKE '{s.namespace}.%'")
    return {str(t).split(".", 1)[1]: (str(state), int(n)) for t, state, n in rows}


def test_pg_to_pg_snapshot_under_live_writes_hands_off_exactly(pg_scenario: Scenario, tmp_path: Path) -> None:
    s = pg_scenario
    s.source_sql(*tables(s.namespace))
    seed(s, 20_000)
    proc = snapshot_under_load(s, tmp_path, Load(s, 20_001), chunk_rows=2500)
    assert_same(s, proc)
    state = ledger(s)
    assert state["items"][0] == "released" and state["items"][1] >= 8, state
    assert state["words"][1] >= 2 and state["pairs"][1] >= 2 and state["journal"][1] == 1, state
    assert state["nothing"] == ("released", 1), state
    again = run_cli("-c", str(s.config_path), "snapshot")  # idempotent: nothing copied twice
    assert "already released" in again.stdout, again.stdout
    assert proc.metric('replicator_apply_skipped_events_total{reason="snapshot"}') > 0
    assert proc.stop() == 0


@pytest.mark.parametrize("fault", ["snapshot.chunk-loaded:kill:3", "snapshot.after-chunk-commit:kill:4",
                                   "snapshot.before-release:kill:2"])
def test_kill9_during_the_copy_then_resume(pg_scenario: Scenario, tmp_path: Path, fault: str) -> None:
    s = pg_scenario
    config = prepare(s, 30_000)
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    load = Load(s, 30_001)
    with load:
        killed = run_cli("-c", str(config), "snapshot", check=False, env={**_env(), "REPLICATOR_FAULT": fault})
        assert killed.returncode == -9, (killed.returncode, killed.stderr)
        before = ledger(s)
        copied_before = sum(n for _, n in before.values())
        assert copied_before >= 1, before
        assert sum(1 for state, _ in before.values() if state == "released") <= 1, before
        resumed = run_cli("-c", str(config), "snapshot")
        assert "released to the change stream" in resumed.stderr, resumed.stderr
        time.sleep(2)
    assert load.error is None, load.error
    assert_same(s, proc)
    after = ledger(s)
    assert all(state == "released" for state, _ in after.values()), after
    assert proc.stop() == 0


def test_a_target_table_dropped_after_a_killed_copy_is_copied_from_the_start(pg_scenario: Scenario) -> None:
    """The ledger of a table whose target table was dropped since describes rows that are gone: the
    next run copies it from its first chunk (its dropped primary key is not restored on nothing)."""
    s = pg_scenario
    ns = s.namespace
    config = prepare(s, 10_000)
    killed = run_cli("-c", str(config), "snapshot", check=False,
                     env={**_env(), "REPLICATOR_FAULT": "snapshot.after-chunk-commit:kill:3"})
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    assert sum(n for _, n in ledger(s).values()) >= 1, ledger(s)
    target_sql(s, f"DROP TABLE {ns}.items", f"DROP TABLE {ns}.words")
    resumed = run_cli("-c", str(config), "snapshot")
    assert f"the target table {ns}.items is gone since its last copy" in resumed.stderr, resumed.stderr
    for query in (f"SELECT * FROM {ns}.items ORDER BY id", f'SELECT * FROM {ns}.words ORDER BY w COLLATE "C"',
                  f"SELECT * FROM {ns}.pairs ORDER BY a, b", f"SELECT n, tag FROM {ns}.journal ORDER BY n, tag"):
        assert target_rows(s, query) == source_rows(s, query), query
    assert_keys_back(s)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


# --- MariaDB → PostgreSQL ---------------------------------------------------------------------------

MY_KEYS = ["apple", "Banana", "cherry", "Ünïcode", "日本", "z z", "Zeta", "émile", "_under", "0zero"]
MY_SOURCE = [
    "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(100), qty INT NOT NULL, payload VARBINARY(32),"
    " flag TINYINT(1), ts TIMESTAMP(6) NULL, dt DATETIME(6), note TEXT)",
    "CREATE TABLE words (w VARCHAR(50) PRIMARY KEY, n INT)",
    "CREATE TABLE journal (n INT, tag VARCHAR(20))",
]


class MyLoad(Load):
    def run(self) -> None:
        r = self.random
        conn = my_connect(self.s.source, self.s.namespace)
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute("BEGIN")
                    cur.execute("INSERT INTO items VALUES (%s, 'new\\ttab', 0, X'00FF5C', 1, NOW(6), NOW(6),"
                                " 'line\\nbreak \\\\ backslash')", (self.next_id,))
                    self.next_id += 1
                    cur.execute("UPDATE items SET qty = qty + 1, name = CONCAT(name, '+') WHERE id = %s",
                                (r.randint(1, self.next_id),))
                    if r.random() < 0.4:
                        cur.execute("DELETE FROM items WHERE id = %s", (r.randint(1, self.next_id),))
                    word = r.choice(MY_KEYS) + str(r.randint(1, 330))
                    cur.execute("INSERT INTO words VALUES (%s, 1) ON DUPLICATE KEY UPDATE n = n + 1", (word,))
                    cur.execute("INSERT INTO journal VALUES (%s, 'same')", (r.randint(0, 8),))
                    if r.random() < 0.3:
                        cur.execute("UPDATE journal SET n = n + 100 WHERE n = %s LIMIT 1", (r.randint(0, 8),))
                    cur.execute("COMMIT")
                    self.transactions += 1
                    time.sleep(0.005)
        except BaseException as exc:
            self.error = exc
        finally:
            conn.close()


def test_mariadb_to_pg_snapshot_under_live_writes(my_scenario: Scenario, tmp_path: Path) -> None:
    s = my_scenario
    ns = s.namespace
    s.source_sql(
        *MY_SOURCE,
        "INSERT INTO items SELECT seq, CONCAT('item ', seq), seq % 100, UNHEX(MD5(seq)), seq % 2,"
        " TIMESTAMP'2024-01-02 03:04:05.123456' + INTERVAL seq SECOND,"
        " TIMESTAMP'1999-12-31 23:59:59.5' + INTERVAL seq MINUTE, IF(seq % 3 = 0, NULL, 'tab\\there')"
        " FROM seq_1_to_12000",
        "INSERT INTO words SELECT CONCAT(k.k, s.seq), s.seq FROM seq_1_to_300 s JOIN ("
        + " UNION ALL ".join(f"SELECT '{k}' AS k" for k in MY_KEYS) + ") k",
        "INSERT INTO journal SELECT seq % 9, 'same' FROM seq_1_to_2000",
    )
    proc = snapshot_under_load(s, tmp_path, MyLoad(s, 12_001), chunk_rows=1500)
    wait_equal(s, "SELECT id, name, qty, LOWER(HEX(payload)), flag,"
                  " DATE_FORMAT(CONVERT_TZ(ts, @@session.time_zone, '+00:00'), '%Y-%m-%d %H:%i:%s.%f'),"
                  " DATE_FORMAT(dt, '%Y-%m-%d %H:%i:%s.%f'), note FROM items ORDER BY id",
               f"SELECT id, name, qty, encode(payload, 'hex'), flag::int,"
               f" to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),"
               f" to_char(dt, 'YYYY-MM-DD HH24:MI:SS.US'), note FROM \"{ns}\".items ORDER BY id",
               timeout_s=120, proc=proc)
    wait_equal(s, "SELECT w, n FROM words ORDER BY CAST(w AS BINARY)",
               f'SELECT w, n FROM "{ns}".words ORDER BY w COLLATE "C"', timeout_s=60, proc=proc)
    wait_equal(s, "SELECT n, tag, COUNT(*) FROM journal GROUP BY n, tag ORDER BY n, tag",
               f'SELECT n, tag, count(*) FROM "{ns}".journal GROUP BY n, tag ORDER BY n, tag', timeout_s=60,
               proc=proc)
    state = ledger(s)
    assert state["items"][0] == "released" and state["items"][1] >= 6, state
    assert state["words"][1] >= 2 and state["journal"][1] == 1, state
    assert proc.metric('replicator_apply_skipped_events_total{reason="snapshot"}') > 0
    assert proc.stop() == 0


def test_restart_copies_a_released_table_again_under_live_writes(pg_scenario: Scenario, tmp_path: Path) -> None:
    s = pg_scenario
    ns = s.namespace
    config = prepare(s, 8_000)
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    load = Load(s, 8_001)
    with load:
        run_cli("-c", str(config), "snapshot")
        time.sleep(2)
        target_sql(s, f"UPDATE {ns}.items SET name = 'damaged' WHERE id % 10 = 0",
                   f"INSERT INTO {ns}.journal VALUES (999, 'stray')")
        restarted = run_cli("-c", str(config), "snapshot", "--restart", f"{ns}.items", f"{ns}.journal")
        assert restarted.stdout.count("released") == 2, restarted.stdout
        time.sleep(2)
    assert load.error is None, load.error
    assert_same(s, proc)
    unknown = run_cli("-c", str(config), "snapshot", f"{ns}.nope", check=False)
    assert unknown.returncode == 2 and f"not a selected source table: {ns}.nope" in unknown.stderr, unknown.stderr
    assert proc.stop() == 0


# --- PostgreSQL → MariaDB ---------------------------------------------------------------------------

@pytest.fixture
def pg_to_my(stack: Any, tmp_path: Path) -> Any:
    scenario = Scenario(stack, "pg-source", "my-target", tmp_path)
    scenario.create_namespace()
    yield scenario
    scenario.cleanup()


def test_pg_to_mariadb_snapshot_under_live_writes(pg_to_my: Scenario, tmp_path: Path) -> None:
    s = pg_to_my
    ns = s.namespace
    s.source_sql(*tables(ns))
    seed(s, 10_000)
    s.source_sql(f"UPDATE {ns}.items SET name = E'tab\\there \\\\ back\\nline \\f feed' WHERE id % 97 = 0",
                 f"UPDATE {ns}.items SET name = 'NULL', payload = NULL WHERE id % 89 = 0",
                 f"UPDATE {ns}.items SET name = '\"quoted\", comma' WHERE id % 83 = 0",
                 # keys that differ only by trailing spaces stay distinct on the target (NO PAD)
                 f"INSERT INTO {ns}.words VALUES ('pad', 1), ('pad ', 2), ('pad  ', 3)")
    proc = snapshot_under_load(s, tmp_path, Load(s, 10_001), chunk_rows=2500)
    wait_equal(s, f"SELECT id, name, qty, encode(payload, 'hex') FROM {ns}.items ORDER BY id",
               f"SELECT id, name, qty, LOWER(HEX(payload)) FROM `{ns}`.items ORDER BY id", timeout_s=120, proc=proc)
    wait_equal(s, f'SELECT w, n FROM {ns}.words ORDER BY w COLLATE "C"',
               f"SELECT w, n FROM `{ns}`.words ORDER BY CAST(w AS BINARY)", timeout_s=60, proc=proc)
    wait_equal(s, f"SELECT a, b, v FROM {ns}.pairs ORDER BY a, b",
               f"SELECT a, b, v FROM `{ns}`.pairs ORDER BY a, CAST(b AS BINARY)", timeout_s=60, proc=proc)
    wait_equal(s, f"SELECT n, tag, count(*) FROM {ns}.journal GROUP BY n, tag ORDER BY n, tag",
               f"SELECT n, tag, COUNT(*) FROM `{ns}`.journal GROUP BY n, tag ORDER BY n, tag", timeout_s=60, proc=proc)
    assert target_rows(s, "SELECT COUNT(*) FROM replicator.snapshot_tables"
                          f" WHERE source_table LIKE '{ns}.%' AND state = 'released'") == [(5,)]
    assert proc.stop() == 0


# --- type matrices: every type of the reference through schema translation and the copy -------------


def snapshot_only(s: Scenario, **config: Any) -> Path:
    """Register the connector (the copy proves it streams first) and run the snapshot; no applier."""
    path = s.write_config(**config)
    run_cli("-c", str(path), "connectors", "apply", "--fix-replica-identity")
    result = run_cli("-c", str(path), "snapshot")
    assert "released to the change stream" in result.stderr, result.stderr
    return path


def test_type_matrix_pg_to_pg_through_translation_and_copy(pg_scenario: Scenario) -> None:
    from tests.integration.test_apply_engines import PG_ALL_ROWS, PG_ALL_TYPES

    s = pg_scenario
    ns = s.namespace
    s.source_sql(f"CREATE TYPE {ns}.mood AS ENUM ('sad', 'ok', 'happy')",
                 f"CREATE TABLE {ns}.types ({PG_ALL_TYPES.format(ns=ns)})",
                 "SET TIME ZONE 'UTC'", f"INSERT INTO {ns}.types VALUES {', '.join(PG_ALL_ROWS)}")
    snapshot_only(s)
    query = f"SELECT whole::text FROM {ns}.types AS whole ORDER BY id"
    assert target_rows(s, query) == source_rows(s, query)


def test_type_matrix_mariadb_to_pg_through_translation_and_copy(my_scenario: Scenario) -> None:
    from tests.integration.test_apply_engines import MY_COMPARE, MY_ROWS, MY_TYPES, PG_COMPARE, normal

    s = my_scenario
    ns = s.namespace
    s.source_sql("SET time_zone = '+00:00'", f"CREATE TABLE types ({MY_TYPES})",
                 f"INSERT INTO types VALUES {', '.join(MY_ROWS)}")
    snapshot_only(s)
    source = [tuple(normal(v) for v in r) for r in source_rows(s, MY_COMPARE.format(table="types"))]
    target = [tuple(normal(v) for v in r) for r in target_rows(s, PG_COMPARE.format(table=f'"{ns}".types'))]
    assert len(source) == 3
    for a, b in zip(source, target, strict=True):
        assert a == b, f"\nsource {a}\ntarget {b}"


def test_type_matrix_pg_to_mariadb_through_translation_and_copy(pg_to_my: Scenario) -> None:
    from tests.integration.test_apply_engines import MY_SIDE, PG_ROWS, PG_SIDE, PG_TYPES, same_value

    s = pg_to_my
    ns = s.namespace
    s.source_sql(f"CREATE TABLE {ns}.types ({PG_TYPES})", "SET TIME ZONE 'UTC'",
                 f"INSERT INTO {ns}.types VALUES {', '.join(PG_ROWS)}")
    # no safe MySQL type for these: mapped explicitly, as an operator would
    overrides = {f"{ns}.types.{c}": t for c, t in (("iv", "varchar(64)"), ("ia", "json"), ("ta", "json"),
                                                   ("vb", "varchar(16)"))}
    snapshot_only(s, snapshot={"column_types": overrides})
    source = [list(r) for r in source_rows(s, PG_SIDE.format(table=f"{ns}.types"))]
    target = [list(r) for r in target_rows(s, MY_SIDE.format(table=f"`{ns}`.types"))]
    assert len(source) == len(target) == 3
    for srow, trow in zip(source, target, strict=True):
        for index, (a, b) in enumerate(zip(srow, trow, strict=True)):
            assert same_value(a, b), f"row {srow[0]} column {index}: source {a!r} target {b!r}"


def test_dry_run_prints_the_ddl_and_creates_nothing(pg_scenario: Scenario) -> None:
    s = pg_scenario
    ns = s.namespace
    s.source_sql(*tables(ns), f"CREATE INDEX items_qty ON {ns}.items (qty)")
    config = s.write_config()
    result = run_cli("-c", str(config), "snapshot", "--dry-run")
    assert f'CREATE TABLE "{ns}"."items"' in result.stdout, result.stdout
    assert "-- phase post-load (after the copy)" in result.stdout and "items_qty" in result.stdout, result.stdout
    assert "-- would copy 5 table(s)" in result.stdout, result.stdout
    assert target_rows(s, f"SELECT count(*) FROM pg_namespace WHERE nspname = '{ns}'") == [(0,)]


@pytest.fixture
def my_to_my(stack: Any, tmp_path: Path) -> Any:
    scenario = Scenario(stack, "my-source", "my-target", tmp_path)
    scenario.create_namespace()
    yield scenario
    scenario.cleanup()


def test_type_matrix_mariadb_to_mariadb_through_translation_and_copy(my_to_my: Scenario) -> None:
    from tests.integration.test_apply_engines import MY_COMPARE, MY_ROWS, MY_TYPES

    s = my_to_my
    ns = s.namespace
    rows = [*MY_ROWS, "(4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1.5, 2.5, 3.5, 4.5, b'1', b'11', 'a\\tb', 'tab\\there',"
            " 'line\\nbreak \\\\ back\\rslash', x'5C0A09', x'00000000', 'ok', 'b', '{\"k\": \"\\\\t\"}', '2000-01-01',"
            " '00:00:01', '2000-01-01 00:00:00', '2000-01-01 00:00:00', '2000-01-01 00:00:00', 2000, POINT(3, 4))"]
    s.source_sql("SET time_zone = '+00:00'", f"CREATE TABLE types ({MY_TYPES})",
                 f"INSERT INTO types VALUES {', '.join(rows)}")
    snapshot_only(s)
    query = MY_COMPARE.replace("ST_X(pt), ST_Y(pt)", "ST_AsText(pt)")
    assert target_rows(s, query.format(table=f"`{ns}`.types")) == source_rows(s, query.format(table="types"))


@pytest.mark.parametrize("pair", ["pg_to_my", "my_to_pg"])
def test_hostile_identifiers_through_translation_and_chunked_copy(pair: str, stack: Any, tmp_path: Path) -> None:
    source, target = ("pg-source", "my-target") if pair == "pg_to_my" else ("my-source", "pg-target")
    s = Scenario(stack, source, target, tmp_path)
    s.create_namespace()
    try:
        ns = s.namespace
        if source == "pg-source":
            table = f'{ns}."we""ird;tab%"'
            s.source_sql(f'CREATE TABLE {table} ("k""ey;" int, "b`q %s" varchar(20), "v;--" text,'
                         ' PRIMARY KEY ("k""ey;", "b`q %s"))',
                         f"INSERT INTO {table} SELECT g % 40, 'x' || (g / 40), 'v' || g FROM generate_series(1, 400) g")
            check = (f'SELECT "k""ey;", "b`q %s", "v;--" FROM {table} ORDER BY 1, 2',
                     f"SELECT `k\"ey;`, `b``q %s`, `v;--` FROM `{ns}`.`we\"ird;tab%` ORDER BY 1, CAST(2 AS BINARY)")
        else:
            s.source_sql("CREATE TABLE `we\"ird;tab%` (`k\"ey;` INT, `b``q %s` VARCHAR(20), `v;--` TEXT,"
                         " PRIMARY KEY (`k\"ey;`, `b``q %s`))",
                         "INSERT INTO `we\"ird;tab%` SELECT seq % 40, CONCAT('x', seq DIV 40), CONCAT('v', seq)"
                         " FROM seq_1_to_400")
            check = ("SELECT `k\"ey;`, `b``q %s`, `v;--` FROM `we\"ird;tab%` ORDER BY 1, 2",
                     f'SELECT "k""ey;", "b`q %s", "v;--" FROM "{ns}"."we""ird;tab%" ORDER BY 1, 2')
        snapshot_only(s, snapshot={"chunk_rows": 50})
        src = source_rows(s, check[0])
        dst = target_rows(s, check[1])
        assert len(src) == 400 and sorted(src) == sorted(dst)
        chunks = target_rows(s, "SELECT count(*) FROM replicator.snapshot_chunks WHERE source_table LIKE "
                                f"'{ns}.%'")
        assert chunks[0][0] >= 4, chunks
    finally:
        s.cleanup()


def drain(stream: Generator[Any, None, int]) -> tuple[bytes, int]:
    """A source stream's blocks joined, and the row count it returned."""
    data = bytearray()
    try:
        while True:
            data += next(stream)
    except StopIteration as end:
        return bytes(data), int(end.value)


def test_a_stream_abandoned_half_way_leaves_the_snapshot_usable(pg_scenario: Scenario) -> None:
    """A chunk whose load fails is copied again on the same source connection, in the same snapshot."""
    from replicator.config import load_config
    from replicator.dialects import snapshot_source_for
    from replicator.dialects.base import Transfer
    from replicator.model import TableId

    s = pg_scenario
    ns = s.namespace
    s.source_sql(f"CREATE TABLE {ns}.big (id int PRIMARY KEY, pad text)",
                 f"INSERT INTO {ns}.big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
    config = load_config(s.write_config())
    coordinator, worker = snapshot_source_for(config.source), snapshot_source_for(config.source)
    try:
        point = coordinator.export()
        worker.enter(point)
        s.source_sql(f"DELETE FROM {ns}.big WHERE id > 10")  # after the snapshot: not seen by it
        shape = worker.shape(TableId(ns, "big"))
        transfer = Transfer("pg-text", {})
        first = worker.stream(shape, shape.names, None, None, transfer)
        assert len(next(first)) >= 1 << 20  # one block of ~1 MB, then abandoned
        first.close()
        data, count = drain(worker.stream(shape, shape.names, None, None, transfer))
        assert count == 20000
        assert data.count(b"\n") == 20000
        assert worker.count(TableId(ns, "big")) == 20000
    finally:
        worker.close()
        coordinator.close()


def test_mariadb_runs_of_dense_and_sparse_integer_keys_stream_every_row_of_a_chunk_once(
        my_scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    """A MariaDB chunk of a one-column integer key is read as runs of consecutive key values, several
    runs per query; where the runs come out mostly empty (sparse keys) the rest of the chunk is read
    grouped instead. Dense, sparse, negative and huge keys, chunk bounds inside and between runs:
    every row of each chunk exactly once, nothing from outside it. (A chunk up to 2^62 read run by
    run would not end: the test also times out if the sparse fallback is missing.)"""
    from replicator.config import load_config
    from replicator.dialects import mysql_snapshot, snapshot_source_for
    from replicator.dialects.base import Transfer
    from replicator.model import TableId

    s = my_scenario
    keys = [*range(-7, 0), *range(1, 3001), *(n * 1_000_000 for n in range(1, 41)), 2**62, 2**62 + 5]
    s.source_sql("CREATE TABLE runs (id BIGINT PRIMARY KEY, v VARCHAR(20))",
                 "INSERT INTO runs VALUES " + ", ".join(f"({k}, 'v{k}')" for k in keys),
                 "ANALYZE TABLE runs")
    monkeypatch.setattr(mysql_snapshot, "_GROUP_BYTES", 1500)  # a few dozen keys per run
    monkeypatch.setattr(mysql_snapshot, "_RUNS_PER_QUERY", 4)
    config = load_config(s.write_config())
    worker = snapshot_source_for(config.source)
    try:
        worker.enter(worker.export())
        shape = worker.shape(TableId(s.namespace, "runs"))
        transfer = Transfer("pg-text", {})
        bounds: list[tuple[int, ...] | None] = [None, (0,), (1000,), (1001,), (2999,), (5_000_001,), (2**62 + 1,),
                                                None]
        seen: list[int] = []
        for low, high in itertools.pairwise(bounds):
            data, count = drain(worker.stream(shape, shape.names, low, high, transfer))
            lines = [line.split(b"\t") for line in data.split(b"\n") if line]
            ids = [int(k) for k, _ in lines]
            assert count == len(ids), (low, high)
            assert all((low is None or k >= low[0]) and (high is None or k < high[0]) for k in ids), (low, high)
            assert all(v == f"v{k}".encode() for k, v in zip(ids, (v for _, v in lines), strict=True))
            seen += ids
        assert sorted(seen) == sorted(keys)  # each row once
    finally:
        worker.close()


@pytest.mark.parametrize(("source", "target"), [("pg-source", "pg-target"), ("my-source", "pg-target"),
                                                ("pg-source", "my-target")])
def test_a_truncate_between_the_views_of_a_resumed_copy_empties_only_the_chunks_read_before_it(
        source: str, target: str, stack: Any, tmp_path: Path) -> None:
    """A copy is killed after its third chunk commits; the source is then emptied and filled again
    (other values, more keys), and the copy resumes: its later chunks are read after the truncate,
    its first three before it. Released, the truncate must empty the first three chunks' key ranges
    (their rows predate it; the new rows there then apply from the stream) and only those (the later
    chunks hold the new rows, their events are skipped as copied). Before, it was refused and the
    applier halted."""
    s = Scenario(stack, source, target, tmp_path)
    s.create_namespace()
    try:
        ns = s.namespace
        into = f'"{ns}".k' if target == "pg-target" else f"`{ns}`.k"
        in_order = 'id, w COLLATE "C"' if target == "pg-target" else "id, CAST(w AS BINARY)"
        if source == "pg-source":
            k = f"{ns}.k"
            s.source_sql(f"CREATE TABLE {k} (id int, w text, v text, PRIMARY KEY (id, w))",
                         f"INSERT INTO {k} SELECT g, 'w' || (g % 3), 'old ' || g FROM generate_series(1, 2000) g")
            refill = [f"TRUNCATE {k}",
                      f"INSERT INTO {k} SELECT g, 'w' || (g % 3), 'new ' || g FROM generate_series(1, 2600, 2) g"]
        else:
            k = "k"
            s.source_sql("CREATE TABLE k (id int, w varchar(10), v text, PRIMARY KEY (id, w))",
                         "INSERT INTO k SELECT seq, CONCAT('w', seq % 3), CONCAT('old ', seq) FROM seq_1_to_2000")
            refill = ["TRUNCATE k",
                      "INSERT INTO k SELECT seq, CONCAT('w', seq % 3), CONCAT('new ', seq) FROM seq_1_to_2600_step_2"]
        config = s.write_config(snapshot={"workers": 1, "chunk_rows": 250})
        run_cli("-c", str(config), "connectors", "apply")
        killed = run_cli("-c", str(config), "snapshot", check=False,
                         env={**_env(), "REPLICATOR_FAULT": "snapshot.after-chunk-commit:kill:3"})
        assert killed.returncode == -9, (killed.returncode, killed.stderr)
        assert ledger(s) == {"k": ("copying", 3)}, ledger(s)
        s.source_sql(*refill)
        resumed = run_cli("-c", str(config), "snapshot")
        assert "released to the change stream" in resumed.stderr, resumed.stderr
        # the target now holds the old rows of the first chunks and the new rows of the others
        assert target_rows(s, f"SELECT count(*) FROM {into} WHERE v LIKE 'old %'")[0][0] > 0
        s.source_sql(f"INSERT INTO {k} VALUES (100000, 'w', 'marker')")
        proc = ApplyProcess(config, tmp_path / "apply.log").start()
        try:
            wait_equal(s, f"SELECT count(*) FROM {k} WHERE v = 'marker'",
                       f"SELECT count(*) FROM {into} WHERE v = 'marker'", timeout_s=90, proc=proc)
            assert source_rows(s, f"SELECT id, w, v FROM {k} ORDER BY id, w") == \
                target_rows(s, f"SELECT id, w, v FROM {into} ORDER BY {in_order}")
            assert proc.stop() == 0
        finally:
            proc.stop()
    finally:
        s.cleanup()


@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
def test_a_truncate_and_refill_read_by_the_copy_is_not_replayed_over_it(engine: str, stack: Any,
                                                                         tmp_path: Path) -> None:
    """The source is emptied and filled again after the connector streams, then copied (`--restart`)
    before any applier runs: the stream then holds the truncate, the new rows and, later, a marker.
    The copy already read the truncate and the new rows: replaying the truncate would empty the
    copy (the new rows are skipped as copied), so it is skipped too; the marker applies. A table with
    a primary key and one without."""
    s = Scenario(stack, "pg-source" if engine == "postgres" else "my-source", "pg-target", tmp_path)
    s.create_namespace()
    try:
        ns = s.namespace
        if engine == "postgres":
            fill = [f"INSERT INTO {ns}.k SELECT g, 'new ' || g FROM generate_series(1, 700) g",
                    f"INSERT INTO {ns}.n SELECT 'new ' || g FROM generate_series(1, 700) g"]
            s.source_sql(f"CREATE TABLE {ns}.k (id int PRIMARY KEY, v text)", f"CREATE TABLE {ns}.n (v text)",
                         f"ALTER TABLE {ns}.n REPLICA IDENTITY FULL",
                         f"INSERT INTO {ns}.k SELECT g, 'old ' || g FROM generate_series(1, 500) g",
                         f"INSERT INTO {ns}.n SELECT 'old ' || g FROM generate_series(1, 500) g")
            truncate = [f"TRUNCATE {ns}.k, {ns}.n"]
            k, n = f"{ns}.k", f"{ns}.n"
        else:
            fill = ["INSERT INTO k SELECT seq, CONCAT('new ', seq) FROM seq_1_to_700",
                    "INSERT INTO n SELECT CONCAT('new ', seq) FROM seq_1_to_700"]
            s.source_sql("CREATE TABLE k (id int PRIMARY KEY, v text)", "CREATE TABLE n (v varchar(20))",
                         "INSERT INTO k SELECT seq, CONCAT('old ', seq) FROM seq_1_to_500",
                         "INSERT INTO n SELECT CONCAT('old ', seq) FROM seq_1_to_500")
            truncate = ["TRUNCATE k", "TRUNCATE n"]
            k, n = "k", "n"
        config = s.write_config()
        run_cli("-c", str(config), "connectors", "apply", "--fix-replica-identity")
        run_cli("-c", str(config), "snapshot")
        s.source_sql(*truncate, *fill)
        result = run_cli("-c", str(config), "snapshot", "--restart")
        assert result.stderr.count("700 rows copied") == 2, result.stderr
        s.source_sql(f"INSERT INTO {k} VALUES (100000, 'marker')", f"INSERT INTO {n} VALUES ('marker')")
        proc = ApplyProcess(config, tmp_path / "apply.log").start()
        try:
            for table in ("k", "n"):  # the marker is after the truncate in the table's topic
                wait_equal(s, f"SELECT count(*) FROM {k if table == 'k' else n} WHERE v = 'marker'",
                           f'SELECT count(*) FROM "{ns}".{table} WHERE v = \'marker\'', timeout_s=90, proc=proc)
            assert target_rows(s, f'SELECT count(*) FROM "{ns}".k WHERE v = \'marker\'') == [(1,)]
            assert source_rows(s, f"SELECT id, v FROM {k} ORDER BY id") == \
                target_rows(s, f'SELECT id, v FROM "{ns}".k ORDER BY id')
            assert source_rows(s, f"SELECT v, count(*) FROM {n} GROUP BY v ORDER BY v") == \
                target_rows(s, f'SELECT v, count(*) FROM "{ns}".n GROUP BY v ORDER BY v COLLATE "C"')
            assert proc.stop() == 0
        finally:
            proc.stop()
    finally:
        s.cleanup()


def test_mariadb_zero_dates_reach_postgresql_as_null(my_scenario: Scenario) -> None:
    """Dates with a zero part (a permissive sql_mode stores them) have no PostgreSQL value: they are
    copied as NULL, as Debezium emits them; the first and last valid values around them are kept."""
    s = my_scenario
    ns = s.namespace
    s.source_sql("SET SESSION sql_mode = '', time_zone = '+00:00'",
                 "CREATE TABLE zeros (id INT PRIMARY KEY, d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL)",
                 "INSERT INTO zeros VALUES (1, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00'),"
                 " (2, '2020-00-15', '2020-05-00 10:00:00', '1970-01-01 00:00:01'),"
                 " (3, '0000-01-01', '0001-01-01 00:00:00', '2038-01-19 03:14:07.999999'),"
                 " (4, '2020-02-29', '9999-12-31 23:59:59.999999', NULL), (5, NULL, NULL, NULL)")
    snapshot_only(s)
    rows = target_rows(s, f"SELECT id, d::text, dt::text, (ts AT TIME ZONE 'UTC')::text FROM \"{ns}\".zeros"
                          " ORDER BY id")
    assert rows == [(1, None, None, None), (2, None, None, "1970-01-01 00:00:01"),
                    (3, None, "0001-01-01 00:00:00", "2038-01-19 03:14:07.999999"),
                    (4, "2020-02-29", "9999-12-31 23:59:59.999999", None), (5, None, None, None)], rows


def _my_items(s: Scenario, rows: int) -> Path:
    """PG→MariaDB: one keyed table of `rows` rows, copied once (its MariaDB target then holds them)."""
    ns = s.namespace
    s.source_sql(f"CREATE TABLE {ns}.items (id bigint PRIMARY KEY, name text, qty int NOT NULL)",
                 f"INSERT INTO {ns}.items SELECT g, 'item ' || g, g % 100 FROM generate_series(1, {rows}) g")
    return snapshot_only(s, snapshot={"workers": 2, "chunk_rows": 2500})


def _my_table_id(s: Scenario) -> int:
    """InnoDB's id of the target table: TRUNCATE creates the table anew (a new id), DELETE keeps it."""
    ((table_id,),) = target_rows(s, "SELECT TABLE_ID FROM information_schema.INNODB_SYS_TABLES"
                                    f" WHERE NAME = '{s.namespace}/items'")
    return int(table_id)


def _assert_items_equal(s: Scenario) -> None:
    ns = s.namespace
    source = source_rows(s, f"SELECT id, name, qty FROM {ns}.items ORDER BY id")
    assert target_rows(s, f"SELECT id, name, qty FROM `{ns}`.items ORDER BY id") == source


@pytest.mark.parametrize("fault", ["snapshot.mysql-entry-removed:kill", "snapshot.mysql-table-emptied:kill"])
def test_a_mariadb_target_restarted_by_truncate_and_killed_between_the_steps_is_planned_again(
        pg_to_my: Scenario, fault: str) -> None:
    """A MariaDB target table that holds rows is emptied by TRUNCATE, which commits on its own: the
    ledger entry is removed first, the table emptied, then the new plan written. Killed after either
    of the first two steps, the table has no entry: the next run (without --restart) plans it again,
    empties it again and copies it whole — no row lost, none twice."""
    s = pg_to_my
    config = _my_items(s, 12_000)
    before = _my_table_id(s)
    killed = run_cli("-c", str(config), "snapshot", "--restart", check=False, env={**_env(), "REPLICATOR_FAULT": fault})
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    assert target_rows(s, "SELECT state FROM replicator.snapshot_tables"
                          f" WHERE source_table = '{s.namespace}.items'") == []
    held = target_rows(s, f"SELECT COUNT(*) FROM `{s.namespace}`.items")[0][0]
    assert held == (12_000 if fault.startswith("snapshot.mysql-entry-removed") else 0), held
    resumed = run_cli("-c", str(config), "snapshot")
    assert "12000 rows copied" in resumed.stderr, resumed.stderr
    _assert_items_equal(s)
    assert _my_table_id(s) != before  # emptied by TRUNCATE, not row by row


def test_a_mariadb_target_held_by_another_session_is_emptied_row_by_row(pg_to_my: Scenario) -> None:
    """TRUNCATE waits for another session's open transaction on the table only briefly, then the
    table is emptied by DELETE (which does not wait for a reader): the restart completes."""
    s = pg_to_my
    config = _my_items(s, 6_000)
    before = _my_table_id(s)
    reader = my_connect(s.target, s.namespace)
    try:
        with reader.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT id FROM items LIMIT 1")
            cur.fetchall()
        started = time.monotonic()
        restarted = run_cli("-c", str(config), "snapshot", "--restart")
        assert "6000 rows copied" in restarted.stderr, restarted.stderr
        assert time.monotonic() - started >= 10  # TRUNCATE waited for the reader, then gave way
    finally:
        reader.close()
    _assert_items_equal(s)
    assert _my_table_id(s) == before
