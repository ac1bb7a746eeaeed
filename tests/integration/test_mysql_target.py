"""MySQLTargetWriter against the real MariaDB target of the local stack: each test owns a database."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pymysql
import pytest

from replicator.config import Endpoint
from replicator.dialects import mysql_target
from replicator.dialects.base import DeadLetter, OffsetUpdate, StoredOffset, TargetTable
from replicator.dialects.mysql import connect, quote_identifier
from replicator.dialects.mysql_target import MySQLTargetWriter
from replicator.events import ColumnType, Geometry, SourcePosition
from replicator.model import TableId
from replicator.stack.launcher import Database, StackInfo
from tests.integration.conftest import my_connect

pytestmark = pytest.mark.integration

UTC = dt.UTC


class Box:
    """A private database on the MariaDB target, a writer on it, and an admin connection."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.name = f"w_{uuid.uuid4().hex[:8]}"
        self.state = f"{self.name}_state"
        self.admin = my_connect(db)
        self.sql("SET time_zone = '+00:00'")
        self.sql(f"CREATE DATABASE {quote_identifier(self.name)}")
        self.databases = [self.name]
        self.writers: list[MySQLTargetWriter] = []
        self.writer = self.new_writer()

    def new_writer(self, state: str | None = None) -> MySQLTargetWriter:
        endpoint = Endpoint(engine="mysql", host=self.db.host, port=self.db.port, database=self.name,
                            user=self.db.user, password=self.db.password)
        writer = MySQLTargetWriter(endpoint, state or self.state)
        self.writers.append(writer)
        self.databases.append(state or self.state)
        return writer

    def q(self, table: str) -> str:
        return f"{quote_identifier(self.name)}.{quote_identifier(table)}"

    def sql(self, statement: str, params: tuple[Any, ...] | None = None) -> None:
        with self.admin.cursor() as cur:
            cur.execute(statement, params)

    def rows(self, query: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        with self.admin.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def table(self, name: str, body: str) -> TargetTable:
        self.sql(f"CREATE TABLE {self.q(name)} {body}")
        described = self.writer.describe(TableId(self.name, name))
        assert described is not None
        return described

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for database in self.databases:
            self.sql(f"DROP DATABASE IF EXISTS {quote_identifier(database)}")
        self.admin.close()


@pytest.fixture
def box(stack: StackInfo) -> Iterator[Box]:
    sandbox = Box(stack.database("my-target"))
    try:
        yield sandbox
    finally:
        sandbox.close()


def wkb_of(box: Box, text: str) -> bytes:
    (wkb,) = box.rows("SELECT ST_AsBinary(ST_GeomFromText(%s))", (text,))[0]
    return bytes(wkb)


# -- catalog -----------------------------------------------------------------------------------------
def test_describe_reports_writable_columns_types_and_key_order(box: Box) -> None:
    t = box.table("t", "(a INT NOT NULL, b VARCHAR(10) NOT NULL, j JSON, e ENUM('Sad','Ok'), g INT AS (a + 1),"
                       " u BIGINT UNSIGNED, c TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (b, a))")
    assert t.key == ("b", "a")
    assert t.names == ("a", "b", "j", "e", "u", "c")  # the generated column is not writable
    types = {c.name: c.type_name for c in t.columns}
    assert types == {"a": "int(11)", "b": "varchar(10)", "j": "longtext", "e": "enum('sad','ok')",
                     "u": "bigint(20) unsigned", "c": "timestamp(6)"}
    assert t.column("a") is not None and not t.column("a").nullable  # type: ignore[union-attr]
    assert box.writer.describe(TableId(box.name, "missing")) is None


# -- rows with a primary key -------------------------------------------------------------------------
def test_upsert_inserts_new_rows_and_overwrites_by_primary_key(box: Box) -> None:
    t = box.table("t", "(id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, qty INT)")
    w, cols = box.writer, ("id", "name", "qty")
    w.begin()
    w.upsert(t, cols, [(1, "a", 1), (2, "b", 2)])
    w.commit()
    w.begin()
    w.upsert(t, cols, [(2, "B", 20), (3, "c", None)])
    w.commit()
    assert box.rows(f"SELECT * FROM {box.q('t')} ORDER BY id") == [(1, "a", 1), (2, "B", 20), (3, "c", None)]


def test_upsert_never_touches_another_row_on_a_secondary_unique_collision(box: Box) -> None:
    t = box.table("t", "(id INT PRIMARY KEY, email VARCHAR(40) NOT NULL UNIQUE, name VARCHAR(20))")
    box.sql(f"INSERT INTO {box.q('t')} VALUES (1, 'a@x', 'one'), (2, 'b@x', 'two')")
    before = box.rows(f"SELECT * FROM {box.q('t')} ORDER BY id")
    # The hazard is real here: ON DUPLICATE KEY UPDATE for a *new* id 3 rewrites row 2.
    box.sql("BEGIN")
    box.sql(f"INSERT INTO {box.q('t')} VALUES (3, 'b@x', 'three') ON DUPLICATE KEY UPDATE name = 'three'")
    assert box.rows(f"SELECT name FROM {box.q('t')} WHERE id = 2") == [("three",)]
    box.sql("ROLLBACK")
    w, cols = box.writer, ("id", "email", "name")
    for row in [(3, "b@x", "three"), (1, "b@x", "uno")]:  # a new row, then an existing one, collide with row 2
        w.begin()
        with pytest.raises(pymysql.err.IntegrityError) as caught:
            w.upsert(t, cols, [row])
        assert caught.value.args[0] == 1062
        assert not w.is_transient(caught.value)
        assert w.describe_error(caught.value).startswith("MySQL error 1062: Duplicate entry")
        w.rollback()
        assert box.rows(f"SELECT * FROM {box.q('t')} ORDER BY id") == before
    w.begin()  # the stage is reusable after a failure in it
    w.upsert(t, cols, [(1, "c@x", "uno")])
    w.commit()
    assert box.rows(f"SELECT * FROM {box.q('t')} ORDER BY id") == [(1, "c@x", "uno"), (2, "b@x", "two")]


def test_update_sets_only_given_columns_and_counts_rows_matched(box: Box) -> None:
    t = box.table("t", "(id INT PRIMARY KEY, a INT, b VARCHAR(10) NOT NULL)")
    box.sql(f"INSERT INTO {box.q('t')} VALUES (1, 10, 'x'), (2, 20, 'y')")
    w = box.writer
    w.begin()
    # Row 2 gets the value it has already: it still counts (CLIENT.FOUND_ROWS); key 9 matches nothing.
    assert w.update(t, ("id", "a"), [(1, 11), (2, 20), (9, 99)]) == 2
    w.commit()
    assert box.rows(f"SELECT * FROM {box.q('t')} ORDER BY id") == [(1, 11, "x"), (2, 20, "y")]
    assert w.update(t, ("id", "b"), [(2, "y")]) == 1
    assert w.update(t, ("id",), [(1,), (5,)]) == 1  # key-only: does the row exist?


def test_delete_removes_rows_by_composite_key(box: Box) -> None:
    t = box.table("t", "(k1 INT, k2 VARCHAR(5), v INT, PRIMARY KEY (k1, k2))")
    box.sql(f"INSERT INTO {box.q('t')} VALUES (1, 'a', 1), (1, 'b', 2), (2, 'a', 3)")
    box.writer.begin()
    box.writer.delete(t, [(1, "b"), (2, "a"), (7, "z")])
    box.writer.commit()
    assert box.rows(f"SELECT * FROM {box.q('t')}") == [(1, "a", 1)]


def test_delete_by_a_single_column_key_goes_in_chunks_and_compares_as_the_column_does(box: Box) -> None:
    t = box.table("t", "(id INT PRIMARY KEY, v INT)")
    box.sql(f"INSERT INTO {box.q('t')} SELECT seq, seq FROM seq_1_to_3000")
    statements = spy_statements(box.writer)
    box.writer.begin()
    box.writer.delete(t, [(k,) for k in range(2, 3002)])  # 3000 keys, one absent: three statements
    box.writer.commit()
    assert box.rows(f"SELECT * FROM {box.q('t')}") == [(1, 1)]
    assert sum(s.startswith("DELETE FROM") for s in statements) == 3
    assert not any("stage" in s for s in statements)
    # A DECIMAL and a case-insensitive text key match as the key join did: by the column's type and collation.
    d = box.table("d", "(k DECIMAL(6,2) PRIMARY KEY)")
    c = box.table("c", "(k VARCHAR(5) PRIMARY KEY)")
    box.sql(f"INSERT INTO {box.q('d')} VALUES (1.10), (2.00)")
    box.sql(f"INSERT INTO {box.q('c')} VALUES ('abc'), ('x')")
    box.writer.begin()
    box.writer.delete(d, [(Decimal("1.1"),)])
    box.writer.delete(c, [("ABC",)])
    box.writer.commit()
    assert box.rows(f"SELECT k FROM {box.q('d')}") == [(Decimal("2.00"),)]
    assert box.rows(f"SELECT k FROM {box.q('c')}") == [("x",)]


def test_on_duplicate_key_update_only_where_the_primary_key_is_the_only_unique_key(box: Box) -> None:
    plain = box.table("p", "(id INT PRIMARY KEY, name VARCHAR(20), KEY (name))")
    unique = box.table("u", "(id INT PRIMARY KEY, email VARCHAR(40) UNIQUE)")
    w = box.writer
    assert w._binding(plain).only_primary_unique and not w._binding(unique).only_primary_unique
    statements = spy_statements(w)
    box.sql(f"INSERT INTO {box.q('p')} VALUES (1, 'a'), (2, 'b')")
    w.begin()
    w.upsert(plain, ("id", "name"), [(2, "B"), (3, "c")])
    w.upsert(unique, ("id", "email"), [(1, "a@x")])
    w.commit()
    assert box.rows(f"SELECT * FROM {box.q('p')} ORDER BY id") == [(1, "a"), (2, "B"), (3, "c")]
    odku = [s for s in statements if "ON DUPLICATE KEY UPDATE" in s]
    assert len(odku) == 1 and box.q("p") in odku[0]
    # A unique key added later is seen when the table is described again (reconnect, new column).
    box.sql(f"ALTER TABLE {box.q('p')} ADD UNIQUE KEY (name)")
    again = w.describe(TableId(box.name, "p"))
    assert again is not None and not w._binding(again).only_primary_unique
    w.begin()
    with pytest.raises(pymysql.err.IntegrityError):
        w.upsert(again, ("id", "name"), [(4, "B")])  # would have rewritten row 2 under ON DUPLICATE KEY
    w.rollback()
    assert box.rows(f"SELECT * FROM {box.q('p')} ORDER BY id") == [(1, "a"), (2, "B"), (3, "c")]


def spy_statements(writer: MySQLTargetWriter) -> list[str]:
    """Every statement the writer runs through `_run` from now on."""
    seen: list[str] = []
    run = writer._run

    def spy(query: str, params: tuple[Any, ...] = ()) -> int:
        seen.append(query)
        return run(query, params)

    writer._run = spy  # type: ignore[method-assign]
    return seen


def test_change_key_moves_exactly_the_row_with_that_key(box: Box) -> None:
    # Keys equal as doubles: they must still be told apart.
    t = box.table("t", "(k DECIMAL(30,20) PRIMARY KEY, v VARCHAR(5))")
    box.sql(f"INSERT INTO {box.q('t')} VALUES (1.00000000000000000001, 'a'), (1.00000000000000000002, 'b')")
    w = box.writer
    assert w.change_key(t, (Decimal("1.00000000000000000001"),), ("k", "v"), (Decimal(5), "A")) == 1
    assert w.change_key(t, (Decimal("42"),), ("k", "v"), (Decimal(6), "x")) == 0
    assert box.rows(f"SELECT * FROM {box.q('t')} ORDER BY k") == [
        (Decimal("1.00000000000000000002"), "b"), (Decimal("5.00000000000000000000"), "A")]


# -- rows without a primary key ----------------------------------------------------------------------
def test_exact_update_and_delete_touch_one_of_identical_rows(box: Box) -> None:
    t = box.table("t", "(a INT, f FLOAT, d DOUBLE, s VARCHAR(10), tm TIME(6), n INT)")
    w, cols = box.writer, ("a", "f", "d", "s", "tm", "n")
    same = (1, 0.1, 0.1, "x", dt.timedelta(hours=-1), None)
    w.insert_rows(t, cols, [same, same, (1, 0.1, 0.1, "X", dt.timedelta(hours=-1), None), (2, 1.5, 2.5, "y",
                                                                                             None, None)])
    old = dict(zip(cols, same, strict=True))
    w.begin()
    assert w.update_exact(t, old, {**old, "a": 3}) == 1
    w.commit()
    assert sorted(box.rows(f"SELECT a, s FROM {box.q('t')}")) == [(1, "X"), (1, "x"), (2, "y"), (3, "x")]
    assert w.delete_exact(t, old) == 1
    assert w.delete_exact(t, old) == 0  # the 'X' row differs in case only: it is another row
    assert w.update_exact(t, {"a": 2, "f": 1.5, "d": 2.5, "s": "y", "tm": None, "n": None}, {"n": 7}) == 1
    assert sorted(box.rows(f"SELECT a, s, n FROM {box.q('t')}")) == [(1, "X", None), (2, "y", 7), (3, "x", None)]


def test_delete_all_inside_a_transaction_rolls_back(box: Box) -> None:
    t = box.table("t", "(a INT)")
    box.sql(f"INSERT INTO {box.q('t')} VALUES (1), (2)")
    w = box.writer
    w.begin()
    w.delete_all(t)
    assert box.rows(f"SELECT COUNT(*) FROM {box.q('t')}") == [(2,)]  # not committed (no TRUNCATE)
    w.rollback()
    assert box.rows(f"SELECT COUNT(*) FROM {box.q('t')}") == [(2,)]
    w.delete_all(t)
    assert box.rows(f"SELECT COUNT(*) FROM {box.q('t')}") == [(0,)]


def test_savepoints_undo_part_of_a_transaction(box: Box) -> None:
    t = box.table("t", "(id INT PRIMARY KEY)")
    w = box.writer
    w.begin()
    w.upsert(t, ("id",), [(1,)])
    w.savepoint("sp`1;")
    w.upsert(t, ("id",), [(2,)])
    w.rollback_to_savepoint("sp`1;")
    w.release_savepoint("sp`1;")
    w.commit()
    assert box.rows(f"SELECT id FROM {box.q('t')}") == [(1,)]


# -- values ------------------------------------------------------------------------------------------
WIDE = ("(id INT PRIMARY KEY, flag TINYINT(1), flag2 TINYINT(1), amount DECIMAL(40,20), small DECIMAL(40,35),"
        " ratio FLOAT, e DOUBLE, at DATETIME(6), ts TIMESTAMP(6) NULL, dur TIME(6), dur2 TIME(6), tz_time TIME(6),"
        " day DATE, doc JSON, mood ENUM('sad','ok','happy'), tags SET('a','b','c'), bits BIT(10), one BIT(1),"
        " uid CHAR(36), raw BLOB, shape GEOMETRY, pt POINT, big BIGINT UNSIGNED, items LONGTEXT, label VARCHAR(20))")


def wide_row(box: Box, row_id: int) -> dict[str, Any]:
    return {
        "id": row_id, "flag": True, "flag2": 5, "amount": Decimal("1234567890.12345678901234567890"),
        "small": Decimal("1.234567890123456789012345E-10"), "ratio": 0.1, "e": 2.718281828459045,
        "at": dt.datetime(2024, 2, 29, 13, 45, 30, 123456),
        "ts": dt.datetime(2024, 2, 29, 13, 45, 30, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "dur": dt.timedelta(hours=-12, minutes=-30, microseconds=-5), "dur2": dt.timedelta(hours=838, minutes=59,
                                                                                           seconds=59),
        "tz_time": dt.time(8, 15, 30, 500000, tzinfo=UTC), "day": dt.date(2024, 2, 29),
        "doc": {"b": 2, "a": [1, 2.5, None]}, "mood": "happy", "tags": ["a", "c"], "bits": "1000000001",
        "one": True, "uid": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "raw": b"\xde\xad\xbe\xef\x00\xff",
        "shape": Geometry(wkb_of(box, "LINESTRING(0 0,1 1,2 1)"), srid=4326),
        "pt": Geometry(wkb_of(box, "POINT(1.5 -2.25)"), x=1.5, y=-2.25), "big": 18446744073709551615,
        "items": ["x", "y,z"], "label": ["a", "b"],
    }


def test_values_bind_to_each_column_type(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    t = box.table("v", WIDE)
    row = wide_row(box, 1)
    loads = spy_loads(monkeypatch, box.writer)
    box.writer.begin()
    box.writer.upsert(t, tuple(row), [tuple(row.values())])
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    box.writer.upsert(t, ("id", "doc", "tz_time"), [(2, '{"n": 2.50}', dt.time(13, 45, 30, tzinfo=india))])
    box.writer.commit()
    assert loads == [True, True]  # staged by LOAD DATA, geometry (SRID + WKB bytes) included
    stored = box.rows(
        "SELECT flag, flag2, amount, small, ratio, e, at, ts, UNIX_TIMESTAMP(ts), dur, dur2, tz_time, day, doc, mood,"
        " tags, bits + 0, one + 0, uid, raw, ST_AsText(shape), ST_SRID(shape), ST_AsText(pt), ST_SRID(pt), big,"
        f" items, label FROM {box.q('v')} WHERE id = 1"
    )[0]
    assert stored == (
        1, 5, Decimal("1234567890.12345678901234567890"), Decimal("0.00000000012345678901234567890123450"),
        pytest.approx(0.1), 2.718281828459045, dt.datetime(2024, 2, 29, 13, 45, 30, 123456),
        dt.datetime(2024, 2, 29, 11, 45, 30, 123456), Decimal("1709207130.123456"),
        dt.timedelta(hours=-12, minutes=-30, microseconds=-5), dt.timedelta(hours=838, minutes=59, seconds=59),
        dt.timedelta(hours=8, minutes=15, seconds=30, microseconds=500000), dt.date(2024, 2, 29),
        '{"b":2,"a":[1,2.5,null]}', "happy", "a,c", 513, 1, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        b"\xde\xad\xbe\xef\x00\xff", "LINESTRING(0 0,1 1,2 1)", 4326, "POINT(1.5 -2.25)", 0,
        18446744073709551615, '["x","y,z"]', "a,b",
    )
    assert box.rows(f"SELECT doc, tz_time FROM {box.q('v')} WHERE id = 2") == [  # JSON text kept verbatim
        ('{"n": 2.50}', dt.timedelta(hours=8, minutes=15, seconds=30))]


def test_exact_match_compares_every_column_type(box: Box) -> None:
    box.table("v", WIDE)
    t = box.table("nokey", f"SELECT * FROM {box.q('v')}")  # the same columns, no primary key
    assert t.key == ()
    row = wide_row(box, 1)
    box.writer.insert_rows(t, tuple(row), [tuple(row.values())] * 2)
    assert box.writer.update_exact(t, row, {"id": 2}) == 1
    assert box.writer.delete_exact(t, row) == 1
    assert box.rows(f"SELECT id FROM {box.q('nokey')}") == [(2,)]


@pytest.mark.parametrize(("column", "value"), [
    ("e", float("nan")), ("e", float("inf")), ("amount", Decimal("NaN")), ("amount", Decimal("-Infinity")),
    ("day", "infinity"), ("at", "-infinity"), ("day", "0044-03-15 BC"), ("dur", dt.timedelta(hours=839)),
    ("flag2", dt.timedelta(seconds=1)),
])
def test_values_mysql_cannot_store_raise_value_error(box: Box, column: str, value: Any) -> None:
    t = box.table("v", WIDE)
    with pytest.raises(ValueError, match=r"MySQL|date|duration|TIME"):
        box.writer.upsert(t, ("id", column), [(1, value)])
    assert box.rows(f"SELECT COUNT(*) FROM {box.q('v')}") == [(0,)]


# -- DDL and state -----------------------------------------------------------------------------------
def test_add_column_is_idempotent_and_the_new_column_is_written(box: Box) -> None:
    t = box.table("t", "(id INT PRIMARY KEY)")
    w = box.writer
    w.upsert(t, ("id",), [(1,)])  # creates the stage for the old shape
    varchar = ColumnType("string", None, True, (("__debezium.source.column.type", "VARCHAR"),
                                                ("__debezium.source.column.length", "20")))
    zoned = ColumnType("string", "io.debezium.time.ZonedTimestamp", True)
    amount = ColumnType("bytes", "org.apache.kafka.connect.data.Decimal", True,
                        (("scale", "3"), ("connect.decimal.precision", "12")))
    for _ in range(2):
        assert w.add_column(t.table, "name", varchar) == "varchar(20)"
        assert w.add_column(t.table, "at", zoned) == "datetime(6)"
        assert w.add_column(t.table, "amount", amount) == "decimal(12,3)"
    t2 = w.describe(t.table)
    assert t2 is not None and t2.names == ("id", "name", "at", "amount")
    w.upsert(t2, t2.names, [(1, "one", dt.datetime(2024, 1, 1, tzinfo=UTC), Decimal("1.5"))])
    assert box.rows(f"SELECT * FROM {box.q('t')}") == [(1, "one", dt.datetime(2024, 1, 1), Decimal("1.500"))]
    w.begin()
    with pytest.raises(Exception, match="inside a transaction"):
        w.add_column(t.table, "late", varchar)
    w.rollback()


def test_state_tables_keep_offsets_dead_letters_schema_changes_and_gates(box: Box) -> None:
    w = box.writer
    w.ensure_state()
    w.ensure_state()
    parts = [("p.s.b", 0), ("p.s.a", 1), ("p.s.a", 0)]
    assert w.read_offsets(parts) == {p: StoredOffset(None, None) for p in parts}
    w.begin()
    assert w.lock_offsets(parts) == {p: StoredOffset(None, None) for p in parts}
    other = my_connect(box.db)
    try:
        with other.cursor() as cur:  # the rows are locked until commit
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
            with pytest.raises(pymysql.err.OperationalError) as caught:
                cur.execute(f"SELECT * FROM {quote_identifier(box.state)}.apply_offsets WHERE topic = 'p.s.a'"
                            " FOR UPDATE")
    finally:
        other.close()
    assert caught.value.args[0] == 1205 and w.is_transient(caught.value)
    w.save_offsets([OffsetUpdate("p.s.a", 1, 42, SourcePosition(3, 1000, 2), 1_700_000_000_000),
                    OffsetUpdate("p.s.b", 0, 7, None, None)])
    w.commit()
    w.save_offsets([OffsetUpdate("p.s.a", 1, 43, None, None)])  # no position: the stored one stays
    assert w.read_offsets(parts) == {("p.s.a", 1): StoredOffset(43, SourcePosition(3, 1000, 2)),
                                     ("p.s.b", 0): StoredOffset(7, None), ("p.s.a", 0): StoredOffset(None, None)}
    w.record_dead_letter(DeadLetter("p.s.a", 1, 41, "s.a", '{"id": 1}', "bad value", b"\x00raw"))
    for _ in range(2):
        w.record_schema_change("p", 5, "shop", "ALTER TABLE a ADD c INT", 1_700_000_000_000)
    state = quote_identifier(box.state)
    assert box.rows(f"SELECT topic, kafka_offset, reason, record FROM {state}.dead_letters") == [
        ("p.s.a", 41, "bad value", b"\x00raw")]
    assert box.rows(f"SELECT COUNT(*) FROM {state}.schema_changes") == [(1,)]
    box.sql(f"INSERT INTO {state}.table_gates (source_table, state, filter) VALUES ('s.a', 'hold', NULL),"
            " ('s.b', 'filter', '{}')")
    gates = w.read_gates()
    assert {(g.table, g.state, g.filter) for g in gates.values()} == {("s.a", "hold", None), ("s.b", "filter", "{}")}


def test_transient_failures_are_told_apart_from_bad_data(box: Box) -> None:
    t = box.table("t", "(id INT PRIMARY KEY, s VARCHAR(3))")
    w = box.writer
    with pytest.raises(pymysql.err.DataError) as too_long:
        w.upsert(t, ("id", "s"), [(1, "abcd")])  # strict mode: no silent truncation
    assert not w.is_transient(too_long.value)
    assert w.describe_error(too_long.value) == "MySQL error 1406: Data too long for column 's' at row 1"
    (thread,) = box.rows("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s", (box.name,))[0]
    box.sql(f"KILL {int(thread)}")
    with pytest.raises(pymysql.MySQLError) as lost:
        w.begin()
    assert w.is_transient(lost.value)
    w.rollback()  # on a dead connection: nothing to roll back, no error
    with pytest.raises(pymysql.MySQLError) as closed:
        w.begin()
    assert w.is_transient(closed.value)


# -- hostile names -----------------------------------------------------------------------------------
def test_hostile_identifiers_are_quoted_everywhere(box: Box) -> None:
    k, v, n = 'we"ird', "back`tick", "semi;colon"
    name = "ünï 50%off`); DROP"
    t = box.table(name, f"({quote_identifier(k)} INT PRIMARY KEY, {quote_identifier(v)} VARCHAR(10),"
                        f" {quote_identifier(n)} INT, {quote_identifier('ünï%s')} INT)")
    cols = (k, v, n, "ünï%s")
    w = box.writer
    w.begin()
    w.upsert(t, cols, [(1, "a", 1, 1), (2, "b", 2, 2)])
    assert w.update(t, (k, v), [(1, "A")]) == 1
    w.delete(t, [(2,)])
    assert w.change_key(t, (1,), (k,), (3,)) == 1
    w.savepoint("sp%s`")
    w.commit()
    assert box.rows(f"SELECT * FROM {box.q(name)}") == [(3, "A", 1, 1)]
    bare = box.table(name + "2", f"({quote_identifier(v)} VARCHAR(10), {quote_identifier('ünï%s')} INT)")
    w.insert_rows(bare, (v, "ünï%s"), [("x", 1), ("x", 1)])
    assert w.update_exact(bare, {v: "x", "ünï%s": 1}, {"ünï%s": 2}) == 1
    assert w.delete_exact(bare, {v: "x", "ünï%s": 1}) == 1
    assert box.rows(f"SELECT * FROM {box.q(name + '2')}") == [("x", 2)]
    odd = box.new_writer(state=box.name + "_st`a;%s")
    odd.ensure_state()
    assert odd.read_offsets([("t", 0)]) == {("t", 0): StoredOffset(None, None)}


# -- staging by LOAD DATA LOCAL ------------------------------------------------------------------------
def spy_loads(monkeypatch: pytest.MonkeyPatch, writer: MySQLTargetWriter) -> list[bool]:
    """What each LOAD DATA staging attempt of the writer returned (True: kept, False: INSERT instead)."""
    results: list[bool] = []
    real = writer._load

    def load(*args: Any) -> bool:
        results.append(real(*args))
        return results[-1]
    monkeypatch.setattr(writer, "_load", load)
    return results


def no_insert_staging(monkeypatch: pytest.MonkeyPatch, writer: MySQLTargetWriter) -> None:
    """Make the writer fail if it stages by INSERT: what follows must go through LOAD DATA alone."""
    def refuse(query: str, rows: list[tuple[Any, ...]]) -> None:
        raise AssertionError(f"staged by INSERT: {query}")
    monkeypatch.setattr(writer, "_run_many", refuse)


AWKWARD = ("(id INT PRIMARY KEY, s VARCHAR(64), txt TEXT, ch CHAR(5), raw BLOB, vb VARBINARY(300),"
           " amount DECIMAL(40,20), at DATETIME(6), day DATE, dur TIME(6), doc JSON, tags SET('a','b','c'),"
           " bits BIT(64), bits10 BIT(10), one BIT(1), f DOUBLE, tiny TINYINT, u BIGINT UNSIGNED)")
AWKWARD_TEXT = ["a\tb", "line\nbreak", "back\\slash", "cr\rlf\r\n", "nul\0byte", "\\N", "NULL", "", "\\",
                "x\\", "\\t\\n", "ünïcødé 😀 中文", " spaced ", "\t\n\r\0\\"]


def awkward_rows() -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    bit_values = [0, 1, 9, 10, 13, 92, 2**64 - 1, 0x5C0A090D00]  # bytes that are tab, newline, CR, backslash, NUL
    for i, text in enumerate(AWKWARD_TEXT):
        rows.append((i, text, text * 3, text[:5], bytes(range(256)) if i % 2 else text.encode() + b"\x00\xff",
                     bytes([i, 0, 9, 10, 13, 92, 255]), Decimal(f"-{i}1234567890.00000000000000000001"),
                     dt.datetime(2024, 2, 29, 23, 59, 59, i * 37 + 1), dt.date(1000 + i, 1, 31),
                     [dt.timedelta(hours=-12, minutes=-30, microseconds=-5), dt.timedelta(hours=838, minutes=59,
                      seconds=59), dt.timedelta(days=1, hours=1, microseconds=1)][i % 3],
                     {"k": text, "n": [i, 2.5, None]}, [["a", "c"], ["b"], []][i % 3],
                     bit_values[i % len(bit_values)], i % 1024, bool(i % 2), [0.1, -1e300, 1e-7][i % 3], -128 + i,
                     2**64 - 1 - i))
    rows.append((100, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None,
                 None, None))
    rows.append((101, "", "", "", b"", b"", Decimal("0"), dt.datetime(1970, 1, 1), dt.date(2000, 1, 1),
                 dt.timedelta(0), '{"raw": "json text\\twith escapes"}', [], 0, 0, False, 0.0, 0, 0))
    return rows


AWKWARD_SELECT = ("SELECT id, s, txt, ch, raw, vb, amount, at, day, dur, doc, tags, bits + 0, bits10 + 0, one + 0,"
                  " f, tiny, u FROM {} ORDER BY id")


def test_staging_by_load_data_round_trips_every_awkward_value_exactly(box: Box,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    t = box.table("t", AWKWARD)
    reference = box.table("ref", AWKWARD)
    cols = t.names
    rows = awkward_rows()
    plain = box.new_writer()  # the INSERT path, as the reference: the same rows must be stored the same way
    plain._load_data = False
    ref = plain.describe(reference.table)
    assert ref is not None
    plain.upsert(ref, cols, rows)
    no_insert_staging(monkeypatch, box.writer)
    box.writer.begin()
    box.writer.upsert(t, cols, rows)
    box.writer.commit()
    stored = box.rows(AWKWARD_SELECT.format(box.q("t")))
    assert stored == box.rows(AWKWARD_SELECT.format(box.q("ref")))
    assert [r[1] for r in stored] == [*AWKWARD_TEXT, None, ""]  # '' and NULL, '\N' and 'NULL' told apart
    assert stored[1][4] == bytes(range(256)) and stored[0][4] == b"a\tb\x00\xff"
    assert stored[3][5] == bytes([3, 0, 9, 10, 13, 92, 255])
    assert [r[12] for r in stored[:8]] == [0, 1, 9, 10, 13, 92, 2**64 - 1, 0x5C0A090D00]
    assert stored[1][6] == Decimal("-11234567890.00000000000000000001")
    assert stored[5][7] == dt.datetime(2024, 2, 29, 23, 59, 59, 186)
    assert [r[9] for r in stored[:3]] == [dt.timedelta(hours=-12, minutes=-30, microseconds=-5),
                                          dt.timedelta(hours=838, minutes=59, seconds=59),
                                          dt.timedelta(hours=25, microseconds=1)]
    assert stored[4][10] == '{"k":"nul\\u0000byte","n":[4,2.5,null]}' and stored[15][10] == (
        '{"raw": "json text\\twith escapes"}')
    assert [r[11] for r in stored[:3]] == ["a,c", "b", ""]
    assert stored[14] == (100, *[None] * 17)
    # an update of every column through the stage, still without INSERT staging
    box.writer.upsert(t, cols, [(r[0], "new\t\\N", *r[2:]) for r in rows[:3]])
    assert box.rows(f"SELECT s FROM {box.q('t')} WHERE id < 3") == [("new\t\\N",)] * 3


@pytest.mark.parametrize(("column", "value", "code"), [
    ("s", "a" * 65, 1406),  # data too long: LOAD DATA LOCAL would truncate it with a warning
    ("tiny", 300, 1264),  # out of range: LOAD DATA LOCAL would store 127
    ("tiny", "", 1366),  # '' is no integer: LOAD DATA LOCAL would store 0
    ("one", 2, 1406),  # 2 needs two bits
    ("amount", Decimal("1e30"), 1264),  # 21 integer digits in DECIMAL(40,20)
])
def test_a_value_strict_insert_rejects_still_raises_and_writes_nothing(box: Box, column: str, value: Any, code: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    t = box.table("t", AWKWARD)
    box.sql(f"INSERT INTO {box.q('t')} (id, s) VALUES (1, 'kept')")
    w = box.writer
    loads = spy_loads(monkeypatch, w)
    w.begin()
    with pytest.raises(pymysql.MySQLError) as caught:
        w.upsert(t, ("id", column), [(0, None), (1, value), (2, None)])
    assert caught.value.args[0] == code
    assert loads == [False]  # LOAD DATA was tried, its warning seen, and the INSERT raised
    w.rollback()
    assert box.rows(f"SELECT id, s, tiny FROM {box.q('t')}") == [(1, "kept", None)]
    w.upsert(t, ("id", "s"), [(3, "fine")])  # the stage works again afterwards
    assert box.rows(f"SELECT id, s FROM {box.q('t')} ORDER BY id") == [(1, "kept"), (3, "fine")]


def test_a_duplicate_key_in_the_batch_is_not_silently_skipped(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    t = box.table("t", "(id INT PRIMARY KEY, s VARCHAR(3))")
    loads = spy_loads(monkeypatch, box.writer)
    with pytest.raises(pymysql.err.IntegrityError) as caught:  # LOAD DATA LOCAL skips the second row
        box.writer.upsert(t, ("id", "s"), [(1, "a"), (1, "b")])
    assert caught.value.args[0] == 1062 and loads == [False]
    assert box.rows(f"SELECT COUNT(*) FROM {box.q('t')}") == [(0,)]


def test_staging_by_load_data_stays_inside_the_transaction(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    t = box.table("t", "(id INT PRIMARY KEY, s VARCHAR(10))")
    box.sql(f"INSERT INTO {box.q('t')} VALUES (1, 'one'), (2, 'two')")
    before = box.rows(f"SELECT * FROM {box.q('t')} ORDER BY id")
    w = box.writer
    no_insert_staging(monkeypatch, w)
    w.begin()
    w.upsert(t, ("id", "s"), [(1, "uno"), (3, "three")])
    w.upsert(t, ("id", "s"), [(2, "dos")])  # a second load into the same stage
    w.delete(t, [(1,)])
    assert box.rows(f"SELECT * FROM {box.q('t')} ORDER BY id") == before  # nothing committed yet
    w.rollback()
    assert box.rows(f"SELECT * FROM {box.q('t')} ORDER BY id") == before


def test_tables_the_file_cannot_carry_exactly_are_staged_by_insert(box: Box) -> None:
    t = box.table("t", "(id INT PRIMARY KEY, s VARCHAR(10) CHARACTER SET latin1)")
    assert not box.writer._binding(t).loadable  # utf8mb4 bytes would be stored unconverted
    box.writer.upsert(t, ("id", "s"), [(1, "é\t\\N")])
    assert box.rows(f"SELECT s, HEX(s) FROM {box.q('t')}") == [("é\t\\N", "E9095C4E")]


def test_a_server_refusing_load_data_local_leaves_the_insert_path(box: Box, monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    def without_local_files(endpoint: Endpoint, role: str, *, client_flag: int = 0, local_infile: bool = False) -> Any:
        return connect(endpoint, role, client_flag=client_flag)  # no local_infile: the server refuses LOCAL

    monkeypatch.setattr(mysql_target, "connect", without_local_files)
    w = box.new_writer()
    box.sql(f"CREATE TABLE {box.q('t')} (id INT PRIMARY KEY, s VARCHAR(10))")
    t = w.describe(TableId(box.name, "t"))
    assert t is not None
    with caplog.at_level("WARNING", logger="replicator.dialects.mysql_target"):
        w.upsert(t, ("id", "s"), [(1, "a")])
        w.upsert(t, ("id", "s"), [(2, "b")])
    assert box.rows(f"SELECT * FROM {box.q('t')} ORDER BY id") == [(1, "a"), (2, "b")]
    refusals = [r for r in caplog.records if "LOAD DATA LOCAL" in r.getMessage()]
    assert len(refusals) == 1 and not w._load_data
