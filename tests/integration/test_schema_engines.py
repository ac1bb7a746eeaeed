"""Schema translation per direction, on the real databases: a source table per type family is
read, translated and created on the target; then a row of the values the apply stage decodes from
Debezium is written through the apply writer into the translated table and read back."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from replicator.events import Geometry
from replicator.schema import Phase, apply_schema, translate
from replicator.stack.launcher import StackInfo
from tests.integration.schema_support import SchemaScenario

pytestmark = pytest.mark.integration

UTC = dt.UTC


def scenario(stack: StackInfo, source: str, target: str, tmp_path: Path) -> Iterator[SchemaScenario]:
    s = SchemaScenario(stack, source, target, tmp_path)
    yield s
    s.drop()


@pytest.fixture
def my_to_pg(stack: StackInfo, tmp_path: Path) -> Iterator[SchemaScenario]:
    yield from scenario(stack, "my-source", "pg-target", tmp_path)


@pytest.fixture
def pg_to_my(stack: StackInfo, tmp_path: Path) -> Iterator[SchemaScenario]:
    yield from scenario(stack, "pg-source", "my-target", tmp_path)


@pytest.fixture
def pg_to_pg(stack: StackInfo, tmp_path: Path) -> Iterator[SchemaScenario]:
    yield from scenario(stack, "pg-source", "pg-target", tmp_path)


@pytest.fixture
def my_to_my(stack: StackInfo, tmp_path: Path) -> Iterator[SchemaScenario]:
    yield from scenario(stack, "my-source", "my-target", tmp_path)


# -- MariaDB → PostgreSQL --------------------------------------------------------------------------
MY_TYPES = """
    id INT AUTO_INCREMENT PRIMARY KEY, ti TINYINT, flag TINYINT(1) NOT NULL DEFAULT 1, tu TINYINT UNSIGNED,
    si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
    de DECIMAL(12,3) DEFAULT 1.500, du DECIMAL(6,2) UNSIGNED, fl FLOAT, db DOUBLE, b1 BIT(1), b10 BIT(10),
    ch CHAR(5), vc VARCHAR(20) NOT NULL DEFAULT 'it''s', tx TEXT, bl BLOB, bn BINARY(4),
    en ENUM('sad','ok','happy') DEFAULT 'ok', st SET('a','b','c'), js JSON, d DATE DEFAULT '0000-00-00',
    t6 TIME(6), dt0 DATETIME, dt6 DATETIME(6), ts6 TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6), yr YEAR, pt POINT
"""
PG_EXPECTED = {
    "id": "integer", "ti": "smallint", "flag": "boolean", "tu": "smallint", "si": "smallint", "su": "integer",
    "mi": "integer", "iu": "bigint", "bi": "bigint", "bu": "numeric(20,0)", "de": "numeric(12,3)",
    "du": "numeric(6,2)", "fl": "real", "db": "double precision", "b1": "boolean", "b10": "bit(10)",
    "ch": "character(5)", "vc": "character varying(20)", "tx": "text", "bl": "bytea", "bn": "bytea",
    "en": "text", "st": "text", "js": "jsonb", "d": "date", "t6": "interval",
    "dt0": "timestamp(0) without time zone", "dt6": "timestamp(6) without time zone",
    "ts6": "timestamp(6) with time zone", "yr": "smallint", "pt": "point",
}
# What the decoders produce from the Debezium events of MY_ROWS[0] of test_apply_engines.
MY_DECODED = {
    "id": 1, "ti": -128, "flag": 5, "tu": 255, "si": -32768, "su": 65535, "mi": -8388608, "iu": 4294967295,
    "bi": -9223372036854775808, "bu": 18446744073709551615, "de": Decimal("123456789.125"), "du": Decimal("9999.99"),
    "fl": 1.5, "db": 2.718281828459045, "b1": True, "b10": "1000000001", "ch": "ab", "vc": "ab  ",
    "tx": "héllo ✓", "bl": b"\xde\xad\xbe\xef\x00\xff", "bn": b"\x01\x02\x00\x00", "en": "happy", "st": ["a", "c"],
    "js": '{"b": 2, "a": [1, 2.5, null]}', "d": dt.date(2024, 2, 29), "t6": -dt.timedelta(hours=12, minutes=30,
                                                                                          seconds=0.5),
    "dt0": dt.datetime(2024, 2, 29, 13, 45, 30), "dt6": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    "ts6": dt.datetime(2024, 2, 29, 13, 45, 30, 123456, tzinfo=UTC), "yr": 2024,
    "pt": Geometry(bytes.fromhex("0101000000000000000000f83f00000000000002c0"), None, 1.5, -2.25),
}


def test_mariadb_to_pg_type_matrix(my_to_pg: SchemaScenario) -> None:
    s = my_to_pg
    s.source_sql(f"CREATE TABLE types ({MY_TYPES})")
    plan = translate(s.config())
    assert not plan.blocking, plan.problems
    [table] = plan.tables
    assert table.column_types() == PG_EXPECTED
    assert table.innodb
    warnings = " ".join(p.line() for p in plan.warnings)
    assert "zero-date default" in warnings
    apply_schema(s.config().target, plan, Phase.ALL)
    described = {name: kind for name, kind in s.target_rows(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass"
        " AND attnum > 0", (f'"{s.namespace}".types',))}
    assert described == PG_EXPECTED
    s.write_row("types", MY_DECODED)
    s.write_row("types", {"id": 2})
    ns = s.namespace
    [row] = s.target_rows(f"SELECT flag, bu, b10::text, st, js->>'b', t6, ts6, pt[0], en, vc FROM {ns}.types"
                          " WHERE id = 1")
    assert row == (True, Decimal("18446744073709551615"), "1000000001", "a,c", "2", MY_DECODED["t6"],
                   MY_DECODED["ts6"], 1.5, "happy", "ab  ")
    # defaults and identity: a row inserted with only its key gets the source's defaults
    [defaults] = s.target_rows(f"SELECT flag, vc, de, en, d, ts6 IS NOT NULL FROM {ns}.types WHERE id = 2")
    assert defaults == (True, "it's", Decimal("1.500"), "ok", None, True)
    assert s.target_rows(f"SELECT attidentity FROM pg_attribute WHERE attrelid = '{ns}.types'::regclass"
                         " AND attname = 'id'") == [("d",)]  # AUTO_INCREMENT → GENERATED BY DEFAULT AS IDENTITY
    with pytest.raises(Exception, match="check"):
        s.target_sql(f"INSERT INTO {ns}.types (id, en) VALUES (50, 'angry')")


def test_mariadb_checks_are_read_per_table(my_to_pg: SchemaScenario) -> None:
    """MariaDB names a check constraint per table: a JSON column's `json_valid` check and another
    table's check of the same name stay each with its own table (and reconcile reads them so too)."""
    from replicator.dialects import hash_side_for

    s = my_to_pg
    s.source_sql("CREATE TABLE a_json (id INT PRIMARY KEY, j JSON)",
                 "CREATE TABLE b_int (id INT PRIMARY KEY, j INT, CONSTRAINT j CHECK (j > 0))")
    plan = translate(s.config())
    assert not plan.blocking, plan.problems
    types = {t.target.name: t.column_types() for t in plan.tables}
    assert types == {"a_json": {"id": "integer", "j": "jsonb"}, "b_int": {"id": "integer", "j": "integer"}}
    checks = {t.target.name: [c.expression for c in t.source.checks] for t in plan.tables}
    assert checks == {"a_json": [], "b_int": ["`j` > 0"]}
    side = hash_side_for(s.config().source, "source")
    try:
        assert side.columns(s.table("b_int")) == ([("id", "int(11)"), ("j", "int(11)")], ("id",))
        assert side.columns(s.table("a_json")) == ([("id", "int(11)"), ("j", "json")], ("id",))
    finally:
        side.close()


# -- PostgreSQL → MariaDB --------------------------------------------------------------------------
PG_TYPES = """
    id serial PRIMARY KEY, si smallint, i integer NOT NULL DEFAULT 42, bi bigint, nu numeric(12,3), nv numeric,
    mo money, r real, dp double precision, b boolean DEFAULT true, tx text DEFAULT 'it''s', vc varchar(20),
    ch char(5), by bytea, u uuid, j json, jb jsonb, d date, t time(6), tz timetz, ts timestamp(6),
    tstz timestamptz DEFAULT now(), en {ns}.mood DEFAULT 'ok', bits bit(8), xm xml, ine inet, mac macaddr, pt point,
    ia int[], iv interval
"""
MY_EXPECTED = {
    "id": "int", "si": "smallint", "i": "int", "bi": "bigint", "nu": "decimal(12,3)", "nv": "decimal(65,30)",
    "mo": "decimal(19,2)", "r": "float", "dp": "double", "b": "tinyint(1)", "tx": "longtext", "vc": "varchar(20)",
    "ch": "char(5)", "by": "longblob", "u": "char(36)", "j": "json", "jb": "json", "d": "date", "t": "time(6)",
    "tz": "time(6)", "ts": "datetime(6)", "tstz": "datetime(6)", "en": "enum('sad','ok','ha''ppy')",
    "bits": "bit(8)", "xm": "longtext", "ine": "varchar(43)", "mac": "varchar(17)", "pt": "point",
    "ia": "json", "iv": "varchar(64)",
}
PG_DECODED = {
    "id": 1, "si": -32768, "i": 2147483647, "bi": 9223372036854775807, "nu": Decimal("123456789.125"),
    "nv": Decimal("3.14159265358979323846"), "mo": Decimal("1234.56"), "r": 1.5, "dp": 2.718281828459045, "b": True,
    "tx": 'héllo ✓ "q"', "vc": "ab  ", "ch": "ab   ", "by": b"\xde\xad\xbe\xef\x00\xff",
    "u": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "j": '{"b": 2, "a": [1, 2.50, null]}', "jb": '{"a": 1}',
    "d": dt.date(2024, 2, 29), "t": dt.timedelta(hours=13, minutes=45, seconds=30.123456),
    "tz": dt.time(8, 15, 30, 500000, tzinfo=UTC), "ts": dt.datetime(2024, 2, 29, 13, 45, 30, 123456),
    "tstz": dt.datetime(2024, 2, 29, 11, 45, 30, 123456, tzinfo=UTC), "en": "ha'ppy", "bits": "10100101",
    "xm": '<a x="1">t</a>', "ine": "192.168.1.10/24", "mac": "08:00:2b:01:02:03",
    "pt": Geometry(bytes.fromhex("0101000000000000000000f83f00000000000002c0"), None, 1.5, -2.25),
    "ia": [1, 2, None, 4], "iv": "P1Y2M3DT4H5M6.789S",
}


def test_pg_to_mariadb_type_matrix(pg_to_my: SchemaScenario) -> None:
    s = pg_to_my
    ns = s.namespace
    s.source_sql(f"CREATE TYPE {ns}.mood AS ENUM ('sad', 'ok', 'ha''ppy')",
                 f"CREATE TABLE {ns}.types ({PG_TYPES.format(ns=ns)})")
    plan = translate(s.config())
    blocking = {p.column: p.line() for p in plan.blocking}
    assert set(blocking) == {"ia", "iv"}
    assert "an array has no safe MySQL mapping; map it explicitly with snapshot.column_types (e.g. json)" \
           in blocking["ia"]
    overrides = {f"{ns}.types.ia": "json", f"{ns}.types.iv": "varchar(64)"}
    plan = translate(s.config(snapshot={"column_types": overrides}))
    assert not plan.blocking, plan.blocking
    assert plan.tables[0].column_types() == MY_EXPECTED
    apply_schema(s.config().target, plan, Phase.ALL)
    described = dict(s.target_rows("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS"
                                   " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'types'", (ns,)))
    described.update({k: "json" for k in ("j", "jb", "ia") if described[k] == "longtext"})  # MariaDB's JSON
    assert {k: v.replace("int(11)", "int").replace("smallint(6)", "smallint").replace("bigint(20)", "bigint")
            for k, v in described.items()} == MY_EXPECTED
    s.write_row("types", PG_DECODED)
    s.write_row("types", {"id": 2})
    [row] = s.target_rows(f"SELECT nv, u, JSON_EXTRACT(j, '$.b'), tz, tstz, en, BIN(bits), ST_X(pt), ia, iv, ch"
                          f" FROM `{ns}`.types WHERE id = 1")
    assert row == (Decimal("3.141592653589793238460000000000"), str(PG_DECODED["u"]), "2",
                   dt.timedelta(hours=8, minutes=15, seconds=30.5), dt.datetime(2024, 2, 29, 11, 45, 30, 123456),
                   "ha'ppy", "10100101", 1.5, "[1,2,null,4]", "P1Y2M3DT4H5M6.789S", "ab")
    [defaults] = s.target_rows(f"SELECT i, b, tx, en, tstz IS NOT NULL FROM `{ns}`.types WHERE id = 2")
    assert defaults == (42, 1, "it's", "ok", True)
    s.target_sql(f"INSERT INTO `{ns}`.types (si) VALUES (7)")  # AUTO_INCREMENT continues after the copied ids
    assert s.target_rows(f"SELECT id FROM `{ns}`.types WHERE si = 7") == [(3,)]
    # text compares byte-wise and without padding, as on PostgreSQL: values differing in case or in
    # trailing spaces are distinct
    assert s.target_rows("SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
                         " AND COLUMN_NAME = 'vc'", (ns,)) == [("utf8mb4_nopad_bin",)]


# -- PostgreSQL → PostgreSQL -----------------------------------------------------------------------
PG_ALL = """
    id bigserial PRIMARY KEY, gid int GENERATED ALWAYS AS IDENTITY, sq int DEFAULT nextval('{ns}.shared_seq'),
    nu numeric(12,3), nv numeric, mo money, r real, tx text COLLATE "C" DEFAULT 'x''y', vc varchar(20) NOT NULL,
    ch char(5), by bytea, u uuid DEFAULT gen_random_uuid(), j json, jb jsonb DEFAULT '{{}}', d date, t time(3),
    tz timetz, ts timestamp(3), tstz timestamptz DEFAULT now(), iv interval, ia int[] DEFAULT '{{}}', ta text[],
    en {ns}.mood DEFAULT 'ok', ea {ns}.mood[], bits bit(8), vb varbit(16), xm xml, ine inet, cidr_ cidr,
    mac macaddr, pt point, ir int4range, dm {ns}.posint, gen int GENERATED ALWAYS AS (gid * 2) STORED,
    CHECK (gid > 0)
"""
PG_ALL_ROW = ("(1, DEFAULT, DEFAULT, 123456789.125, 100.500, 1234.56, 1.5, 'héllo', 'ab  ', 'ab', '\\xdeadbeef',"
              " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"b\": 2.50}}', '{{\"a\": 1}}', '2024-02-29',"
              " '13:45:30.123', '13:45:30.5+05:30', '2024-02-29 13:45:30.123', '2024-02-29 13:45:30.123456+02',"
              " '1 year 2 mons',"
              " '{{1,NULL}}', '{{\"a\",\"b c\"}}', 'happy', '{{sad,ok}}', B'10100101', B'101', '<a/>',"
              " '192.168.1.10/24', '10.0.0.0/8', '08:00:2b:01:02:03', '(1.5,-2.25)', '[1,10)', 4.5, DEFAULT)")


def test_pg_to_pg_identical_with_enum_domain_identity_and_sequences(pg_to_pg: SchemaScenario) -> None:
    s = pg_to_pg
    ns = s.namespace
    source_ddl = [f"CREATE TYPE {ns}.mood AS ENUM ('sad', 'ok', 'happy')",
                  f"CREATE DOMAIN {ns}.posint AS numeric(5,2) CHECK (VALUE > 0)",
                  f"CREATE SEQUENCE {ns}.shared_seq",
                  f"CREATE TABLE {ns}.types ({PG_ALL.format(ns=ns)})",
                  f"CREATE INDEX lower_tx ON {ns}.types (lower(tx) text_pattern_ops DESC) INCLUDE (d)"
                  " WHERE r > 0",
                  f"CREATE INDEX ia_gin ON {ns}.types USING gin (ia)"]
    s.source_sql(*source_ddl)
    plan = translate(s.config())
    assert not plan.blocking, plan.blocking
    [table] = plan.tables
    types = table.column_types()
    assert types["dm"] == "numeric(5,2)"  # a domain becomes its base type
    assert types["en"] == f'"{ns}"."mood"' and types["ea"] == f'"{ns}"."mood"[]'
    assert types["iv"] == "interval" and types["ir"] == "int4range" and types["tz"] == "time with time zone"
    assert "gen" not in table.copy_columns and "gid" in table.copy_columns
    apply_schema(s.config().target, plan, Phase.ALL)
    row = f"INSERT INTO {ns}.types VALUES {PG_ALL_ROW.format()}"
    s.source_sql(row)
    s.target_sql(row)
    query = f"SELECT whole::text FROM {ns}.types AS whole"
    assert s.target_rows(query) == s.source_rows(query)
    # the same kind of numbering: serial (own sequence), identity ALWAYS, a created shared sequence
    describe = ("SELECT a.attname, a.attidentity, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN"
                " pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = %s::regclass"
                " AND a.attname IN ('id', 'gid', 'sq', 'gen') ORDER BY a.attname")
    assert s.target_rows(describe, (f"{ns}.types",)) == s.source_rows(describe, (f"{ns}.types",))
    indexes = f"SELECT indexdef FROM pg_indexes WHERE schemaname = '{ns}' ORDER BY indexname"
    assert s.target_rows(indexes) == s.source_rows(indexes)


# -- MariaDB → MariaDB -----------------------------------------------------------------------------
MY_ALL = MY_TYPES + """, g INT AS (ti + 1) STORED, up DATETIME(3) DEFAULT CURRENT_TIMESTAMP(3)
    ON UPDATE CURRENT_TIMESTAMP(3), lat VARCHAR(10) CHARACTER SET latin1 COLLATE latin1_swedish_ci,
    KEY prefix_desc (tx(10), si DESC), UNIQUE KEY u_vc (vc, ch), FULLTEXT KEY ft (tx), CHECK (si <> 0)
"""
MY_ROW = ("(1, -128, 1, 255, -32768, 65535, -8388608, 4294967295, -9223372036854775808, 18446744073709551615,"
          " 123456789.125, 9999.99, 1.5, 2.718281828459045, b'1', b'1000000001', 'ab', 'ab  ', 'héllo ✓',"
          " x'DEADBEEF00FF', x'0102', 'happy', 'a,c', '{\"b\": 2}', '2024-02-29', '-12:30:00.5',"
          " '2024-02-29 13:45:30', '9999-12-31 23:59:59.999999', '2024-02-29 13:45:30.123456', 2024,"
          " POINT(1.5, -2.25), DEFAULT, '2024-01-01 00:00:00.123', 'åäö')")


def test_mariadb_to_mariadb_identical(my_to_my: SchemaScenario) -> None:
    s = my_to_my
    ns = s.namespace
    s.source_sql(f"CREATE TABLE types ({MY_ALL}) ENGINE=InnoDB COLLATE utf8mb4_unicode_ci",
                 "CREATE TABLE log (n INT) ENGINE=MyISAM")
    plan = translate(s.config())
    assert not plan.blocking and not plan.warnings, plan.problems
    assert [p.innodb for p in plan.tables] == [False, True]
    assert "g" not in plan.tables[1].copy_columns
    apply_schema(s.config().target, plan, Phase.ALL)
    s.source_sql(f"INSERT INTO types VALUES {MY_ROW}")
    s.target_sql(f"INSERT INTO types VALUES {MY_ROW}")
    for table in ("types", "log"):
        create = s.source_rows(f"SHOW CREATE TABLE `{ns}`.`{table}`")
        assert s.target_rows(f"SHOW CREATE TABLE `{ns}`.`{table}`") == create
    query = f"SELECT *, ST_AsText(pt) FROM `{ns}`.types"
    assert s.target_rows(query) == s.source_rows(query)
