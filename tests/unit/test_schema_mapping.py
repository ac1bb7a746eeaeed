"""The pure parts of schema translation: type texts in, type texts (or problems) out, per direction;
default parsing; and the planner's naming, DDL and problems, without a database."""

from __future__ import annotations

import pytest

from replicator.config import Engine, TableSelection
from replicator.dialects.type_mapping import (
    key_lengths,
    mysql_from_postgres,
    parse_mysql_default,
    parse_postgres_default,
    postgres_from_mysql,
)
from replicator.model import TableId
from replicator.schema import plan_schema, unique_statements
from replicator.table_schema import (
    ColumnDef,
    DefaultKind,
    DefaultValue,
    ForeignKeyDef,
    Identity,
    IndexColumn,
    IndexDef,
    Phase,
    TableSchema,
    UniqueDef,
    UserType,
)


@pytest.mark.parametrize(("mysql", "postgres"), [
    ("tinyint(1)", "boolean"), ("tinyint(4)", "smallint"), ("tinyint(3) unsigned", "smallint"),
    ("smallint(5) unsigned", "integer"), ("mediumint(8) unsigned", "integer"), ("int(11)", "integer"),
    ("int", "integer"), ("int(10) unsigned", "bigint"), ("bigint(20)", "bigint"),
    ("bigint(20) unsigned", "numeric(20,0)"), ("decimal(12,3)", "numeric(12,3)"),
    ("decimal(6,2) unsigned zerofill", "numeric(6,2)"), ("float", "real"), ("float(10,4)", "real"),
    ("double", "double precision"), ("bit(1)", "boolean"), ("bit(10)", "bit(10)"), ("char(5)", "character(5)"),
    ("varchar(20)", "character varying(20)"), ("longtext", "text"), ("blob", "bytea"), ("binary(4)", "bytea"),
    ("varbinary(8)", "bytea"), ("date", "date"), ("datetime", "timestamp(0) without time zone"),
    ("datetime(6)", "timestamp(6) without time zone"), ("timestamp(3)", "timestamp(3) with time zone"),
    ("time(6)", "interval"), ("year(4)", "smallint"), ("year", "smallint"), ("enum('a','b')", "text"),
    ("set('a','b')", "text"), ("json", "jsonb"), ("point", "point"), ("uuid", "uuid"), ("inet6", "inet"),
])
def test_mysql_to_postgres(mysql: str, postgres: str) -> None:
    mapped = postgres_from_mysql(ColumnDef("c", mysql))
    assert (mapped.target_type, mapped.problem) == (postgres, None)


def test_mariadb_json_is_a_longtext_with_a_check() -> None:
    assert postgres_from_mysql(ColumnDef("c", "longtext", json=True)).target_type == "jsonb"


@pytest.mark.parametrize("mysql", ["geometry", "polygon", "multipoint", "vector(3)"])
def test_mysql_types_without_a_postgres_mapping_are_problems(mysql: str) -> None:
    mapped = postgres_from_mysql(ColumnDef("c", mysql))
    assert mapped.problem and not mapped.target_type and "snapshot.column_types" in mapped.suggestion


@pytest.mark.parametrize(("postgres", "mysql"), [
    ("smallint", "smallint"), ("integer", "int"), ("bigint", "bigint"), ("numeric(12,3)", "decimal(12,3)"),
    ("numeric(5,0)", "decimal(5,0)"), ("money", "decimal(19,2)"), ("real", "float"),
    ("double precision", "double"), ("boolean", "tinyint(1)"), ("text", "longtext"),
    ("character varying(20)", "varchar(20)"), ("character varying", "longtext"),
    ("character varying(20000)", "longtext"), ("character(5)", "char(5)"), ("character(300)", "varchar(300)"),
    ("bytea", "longblob"), ("uuid", "char(36)"), ("json", "json"), ("jsonb", "json"), ("hstore", "json"),
    ("date", "date"), ("time without time zone", "time(6)"), ("time(3) without time zone", "time(3)"),
    ("time with time zone", "time(6)"), ("timestamp(3) without time zone", "datetime(3)"),
    ("timestamp with time zone", "datetime(6)"), ("bit(8)", "bit(8)"), ("bit(1)", "bit(1)"), ("xml", "longtext"),
    ("inet", "varchar(43)"), ("macaddr", "varchar(17)"), ("point", "point"), ("oid", "bigint"),
])
def test_postgres_to_mysql(postgres: str, mysql: str) -> None:
    mapped = mysql_from_postgres(ColumnDef("c", postgres))
    assert (mapped.target_type, mapped.problem) == (mysql, None)


def test_postgres_enum_domain_and_unbounded_numeric_to_mysql() -> None:
    enum = ColumnDef("c", "s.mood", user_type=UserType("s", "mood", ("sad", "it's")), labels=("sad", "it's"))
    assert mysql_from_postgres(enum).target_type == "enum('sad','it''s')"
    domain = ColumnDef("c", "s.posint", base_type="numeric(5,2)", user_type=UserType("s", "posint"))
    assert mysql_from_postgres(domain).target_type == "decimal(5,2)"
    unbounded = mysql_from_postgres(ColumnDef("c", "numeric"))
    assert unbounded.target_type == "decimal(65,30)" and unbounded.warning and not unbounded.problem
    assert mysql_from_postgres(ColumnDef("c", "time with time zone")).warning


@pytest.mark.parametrize(("postgres", "suggested"), [
    ("integer[]", "json"), ("interval", "varchar(64)"), ("bit varying(16)", "varchar(N)"),
    ("numeric(70,2)", "decimal(65,30)"), ("numeric(20,35)", "decimal(65,30)"), ("bit(65)", "varchar(65)"),
    ("int4range", "json or longtext"), ("tsvector", ""), ("polygon", "json or longtext"),
])
def test_postgres_types_without_a_safe_mysql_mapping_are_problems(postgres: str, suggested: str) -> None:
    mapped = mysql_from_postgres(ColumnDef("c", postgres, array=postgres.endswith("[]")))
    assert mapped.problem and "no safe MySQL mapping" in mapped.problem and not mapped.target_type
    assert f"(e.g. {suggested})" in mapped.suggestion if suggested else mapped.suggestion == "exclude the table"


def test_text_in_a_key_gets_a_length_that_fits_an_innodb_key() -> None:
    types = {"a": "text", "b": "integer", "c": "character varying(1000)", "d": "character varying(20)"}
    assert key_lengths(("a",), types) == {"a": 768}
    assert key_lengths(("a", "b", "c", "d"), types) == {"a": 380, "c": 380}
    mapped = mysql_from_postgres(ColumnDef("a", "text"), key_length=380)
    assert mapped.target_type == "varchar(380)" and mapped.warning
    assert mysql_from_postgres(ColumnDef("d", "character varying(20)"), key_length=380).target_type == "varchar(20)"
    assert mysql_from_postgres(ColumnDef("b", "bytea"), key_length=100).target_type == "varbinary(400)"


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("'x''y'::text", DefaultKind.LITERAL, "x'y"), ("42", DefaultKind.NUMBER, "42"),
    ("'-1.5'::numeric", DefaultKind.LITERAL, "-1.5"), ("(-1)", DefaultKind.NUMBER, "-1"),
    ("true", DefaultKind.BOOLEAN, "true"), ("now()", DefaultKind.NOW, "now()"),
    ("CURRENT_TIMESTAMP", DefaultKind.NOW, "CURRENT_TIMESTAMP"), ("'{}'::jsonb", DefaultKind.LITERAL, "{}"),
    ("gen_random_uuid()", DefaultKind.EXPRESSION, "gen_random_uuid()"),
    ("'sad'::s.mood", DefaultKind.LITERAL, "sad"),
])
def test_postgres_defaults(text: str, kind: DefaultKind, value: str) -> None:
    assert parse_postgres_default(text) == DefaultValue(kind, value)


def test_postgres_null_defaults_are_no_default() -> None:
    assert parse_postgres_default(None) is None
    assert parse_postgres_default("NULL::character varying") is None


@pytest.mark.parametrize(("text", "mariadb", "expression", "text_type", "expected"), [
    ("'it''s'", True, False, True, DefaultValue(DefaultKind.LITERAL, "it's")),
    ("'a\\\\b'", True, False, True, DefaultValue(DefaultKind.LITERAL, "a\\b")),
    ("42", True, False, False, DefaultValue(DefaultKind.NUMBER, "42")),
    ("NULL", True, False, False, None),
    ("current_timestamp(6)", True, False, False, DefaultValue(DefaultKind.NOW, "current_timestamp(6)")),
    ("b'101'", True, False, False, DefaultValue(DefaultKind.NUMBER, "5")),
    ("it's", False, False, True, DefaultValue(DefaultKind.LITERAL, "it's")),  # MySQL 8: the bare value
    ("42", False, False, True, DefaultValue(DefaultKind.LITERAL, "42")),
    ("1.5", False, False, False, DefaultValue(DefaultKind.NUMBER, "1.5")),
    ("CURRENT_TIMESTAMP", False, True, False, DefaultValue(DefaultKind.NOW, "CURRENT_TIMESTAMP")),
    ("(rand() * 10)", False, True, False, DefaultValue(DefaultKind.EXPRESSION, "(rand() * 10)")),
])
def test_mysql_defaults(text: str, mariadb: bool, expression: bool, text_type: bool,
                        expected: DefaultValue | None) -> None:
    assert parse_mysql_default(text, mariadb=mariadb, expression=expression, text_type=text_type) == expected


def schema(columns: tuple[ColumnDef, ...], **extra: object) -> TableSchema:
    return TableSchema(TableId("app", 'or"ders'), columns, **extra)  # type: ignore[arg-type]  # test shorthand


def test_plan_mysql_to_postgres_names_keys_defaults_and_phases() -> None:
    columns = (
        ColumnDef("id", "int(11)", False, identity=Identity.AUTO_INCREMENT),
        ColumnDef("state", "enum('new','it''s')", labels=("new", "it's"),
                  default_value=DefaultValue(DefaultKind.LITERAL, "new")),
        ColumnDef("flag", "tinyint(1)", False, default_value=DefaultValue(DefaultKind.NUMBER, "0")),
        ColumnDef("at", "datetime", default_value=DefaultValue(DefaultKind.LITERAL, "0000-00-00 00:00:00")),
        ColumnDef("email", "varchar(100)", collation="utf8mb4_general_ci"),
        ColumnDef("ref", "int(11)"),
    )
    table = schema(columns, primary_key=("id",), unique=(UniqueDef("email", ("email",)),),
                   indexes=(IndexDef("by_state", (IndexColumn("state"),)),),
                   foreign_keys=(ForeignKeyDef("fk", ("ref",), TableId("app", "other"), ("id",)),
                                 ForeignKeyDef("gone", ("ref",), TableId("tmp", "x"), ("id",))),
                   storage_engine="InnoDB")
    selection = TableSelection(include=["app.*"], rename={'app.or"ders': "sales.orders"})
    plan = plan_schema([table], Engine.MYSQL, Engine.POSTGRES, selection)
    [tp] = plan.tables
    assert tp.target == TableId("sales", "orders") and tp.innodb
    create = [s.sql for s in tp.create]
    assert create[0] == 'CREATE SCHEMA IF NOT EXISTS "sales"'
    assert create[1] == (
        'CREATE TABLE "sales"."orders" (\n  "id" integer GENERATED BY DEFAULT AS IDENTITY NOT NULL,\n'
        "  \"state\" text DEFAULT 'new',\n  \"flag\" boolean DEFAULT false NOT NULL,\n"
        '  "at" timestamp(0) without time zone,\n  "email" character varying(100),\n  "ref" integer,\n'
        '  PRIMARY KEY ("id"),\n  CONSTRAINT "orders_email" UNIQUE ("email"),\n'
        "  CHECK (\"state\" IN ('new', 'it''s'))\n)")
    assert [s.sql for s in tp.post_load] == ['CREATE INDEX IF NOT EXISTS "orders_by_state" ON "sales"."orders" '
                                             '("state")']
    assert [s.sql for s in tp.foreign_keys] == [
        'ALTER TABLE "sales"."orders" ADD CONSTRAINT "fk" FOREIGN KEY ("ref") REFERENCES "app"."other" ("id")'
        " ON UPDATE NO ACTION ON DELETE NO ACTION"]
    lines = [p.line() for p in plan.warnings]
    assert any("zero-date default" in line for line in lines)
    assert any(line.startswith('warning: app.or"ders.email: collation utf8mb4_general_ci') for line in lines)
    assert any("references tmp.x, which is not migrated" in line for line in lines)
    assert not plan.blocking
    assert [s.sql for s in unique_statements(plan, Phase.CREATE)] == create


def test_plan_postgres_to_mysql_problems_block_and_overrides_unblock() -> None:
    columns = (ColumnDef("id", "integer", False, identity=Identity.SERIAL), ColumnDef("tags", "text[]", array=True),
               ColumnDef("name", "text", False, default_value=DefaultValue(DefaultKind.LITERAL, "it's")),
               ColumnDef("at", "timestamp(3) with time zone", default_value=DefaultValue(DefaultKind.NOW, "now()")))
    table = schema(columns, primary_key=("id", "name"))
    selection = TableSelection(include=["*"])
    plan = plan_schema([table], Engine.POSTGRES, Engine.MYSQL, selection)
    [problem] = plan.blocking
    assert problem.line() == ('problem: app.or"ders.tags: an array has no safe MySQL mapping; map it explicitly '
                              "with snapshot.column_types (e.g. json), or exclude the table")
    plan = plan_schema([table], Engine.POSTGRES, Engine.MYSQL, selection, {'app.or"ders.tags': "json"})
    assert not plan.blocking
    [tp] = plan.tables
    assert tp.column_types() == {"id": "int", "tags": "json", "name": "varchar(764)", "at": "datetime(3)"}
    assert tp.create[1].sql == (
        "CREATE TABLE `app`.`or\"ders` (\n  `id` int NOT NULL AUTO_INCREMENT,\n  `tags` json NULL,\n"
        "  `name` varchar(764) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT 'it''s',\n"
        "  `at` datetime(3) NULL DEFAULT CURRENT_TIMESTAMP(3),\n  PRIMARY KEY (`id`, `name`)\n)"
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    unknown = plan_schema([table], Engine.POSTGRES, Engine.MYSQL, selection, {'app.or"ders.nope': "json"})
    assert any("names a column the table does not have" in p.line() for p in unknown.blocking)
