"""Schema translation per direction, on the real databases: a source table per type family is
read, translated and created on the target; then a row of the values the apply stage decodes from
Debezium is written through the apply writer into the translated table and read back."""

from __future__ import annotations

import datetime as dt
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
