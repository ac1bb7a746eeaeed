"""MySQL/MariaDB information_schema → `TableSchema` (source side), and running translated DDL (target side).

Reading: information_schema only (COLUMNS, STATISTICS, TABLE_CONSTRAINTS, KEY_COLUMN_USAGE,
REFERENTIAL_CONSTRAINTS, CHECK_CONSTRAINTS), each naming its schema and table by constants (see
dialects/mysql.py), the same queries on MySQL 8 and MariaDB but for three flavour differences: check
constraints are named per table on MariaDB (its CHECK_CONSTRAINTS says the table: two tables may
both have a check `j`) and per schema on MySQL 8; COLUMN_DEFAULT is SQL text on MariaDB ('NULL' for
none) but a bare value on MySQL 8 (an expression only with EXTRA DEFAULT_GENERATED); and MariaDB's
JSON is a LONGTEXT with a `json_valid()` CHECK, recognised by that CHECK (and not copied as a CHECK).

Target: statements run without parameters (no %-formatting) after an existence check by name, on a
session whose sql_mode has no NO_BACKSLASH_ESCAPES (the DDL's literals assume it). An existing table
is compared to the plan as this server spells types: the planned types go into a TEMPORARY table and
both are read back by SHOW COLUMNS.
"""

from __future__ import annotations

import re
from typing import Any

import pymysql

from replicator.config import Endpoint
from replicator.dialects.mysql import connect, quote_identifier
from replicator.dialects.mysql_ddl import TABLE_COLLATION, TEXT_COLLATION
from replicator.dialects.type_mapping import parse_mysql_default
from replicator.errors import SourceError, TargetError
from replicator.model import TableId
from replicator.table_schema import (
    CheckDef,
    ColumnDef,
    ForeignKeyDef,
    Identity,
    IndexColumn,
    IndexDef,
    Statement,
    StatementKind,
    TablePlan,
    TableSchema,
    UniqueDef,
)

_TABLE = """
SELECT ENGINE, TABLE_COLLATION, COALESCE(TABLE_ROWS, -1) FROM information_schema.TABLES
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND TABLE_TYPE = 'BASE TABLE'
"""
_COLUMNS = """
SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, CHARACTER_SET_NAME, COLLATION_NAME,
       GENERATION_EXPRESSION, DATA_TYPE
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION
"""
_STATISTICS = """
SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE, COLLATION
FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX
"""
_FOREIGN_KEYS = """
SELECT k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME,
       k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE
FROM information_schema.KEY_COLUMN_USAGE k
JOIN information_schema.REFERENTIAL_CONSTRAINTS r
  ON r.CONSTRAINT_SCHEMA = %s AND r.TABLE_NAME = %s AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME
WHERE k.TABLE_SCHEMA = %s AND k.TABLE_NAME = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL
ORDER BY k.CONSTRAINT_NAME, k.ORDINAL_POSITION
"""
# Check constraints: MariaDB names them per table (a column's own check is named after the column,
# so two tables of a schema may both have a `j`) and says the table in CHECK_CONSTRAINTS; MySQL 8
# names them per schema and does not.
_CHECKS_MARIADB = """
SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s
"""
_CHECKS_MYSQL = """
SELECT c.CONSTRAINT_NAME, c.CHECK_CLAUSE
FROM information_schema.TABLE_CONSTRAINTS t
JOIN information_schema.CHECK_CONSTRAINTS c
  ON c.CONSTRAINT_SCHEMA = %s AND c.CONSTRAINT_NAME = t.CONSTRAINT_NAME
WHERE t.TABLE_SCHEMA = %s AND t.TABLE_NAME = %s AND t.CONSTRAINT_TYPE = 'CHECK'
"""
_JSON_CHECK = re.compile(r"^json_valid\(`((?:[^`]|``)+)`\)$", re.IGNORECASE)
_DDL_SESSION = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt(value: Any) -> str | None:
    return None if value is None else _text(value)


class MySQLSchemaReader:
    """Reads table definitions from a MySQL/MariaDB source."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._conn = connect(endpoint, "source")
        self._mariadb = "mariadb" in _text(self._rows("SELECT VERSION()")[0][0]).lower()

    def close(self) -> None:
        self._conn.close()

    def _rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def read(self, tables: list[TableId]) -> list[TableSchema]:
        return [self._table(table) for table in tables]

    def _table(self, table: TableId) -> TableSchema:
        where = (table.schema, table.name)
        found = self._rows(_TABLE, where)
        if not found:
            raise SourceError(f"source table {table} does not exist", hint="check tables.include")
        engine, collation, estimate = found[0]
        checks, json_columns = [], set()
        found_checks = self._rows(_CHECKS_MARIADB, where) if self._mariadb else \
            self._rows(_CHECKS_MYSQL, (table.schema, *where))
        for name, clause in found_checks:
            json_column = _JSON_CHECK.match(_text(clause).strip())
            if json_column:  # MariaDB's JSON type: LONGTEXT plus this CHECK
                json_columns.add(json_column.group(1).replace("``", "`"))
            else:
                checks.append(CheckDef(_text(name), _text(clause)))
        columns = tuple(self._column(row, json_columns) for row in self._rows(_COLUMNS, where))
        primary, unique, indexes = _keys(self._rows(_STATISTICS, where))
        foreign = _foreign_keys(self._rows(_FOREIGN_KEYS, where + where))
        return TableSchema(table, columns, primary, unique, indexes, foreign, tuple(checks), _opt(engine),
                           _opt(collation), int(estimate))

    def _column(self, row: tuple[Any, ...], json_columns: set[str]) -> ColumnDef:
        name, column_type, nullable, default, extra, charset, collation, generation, data_type = row
        name, extra_text = _text(name), _text(extra or "").lower()
        type_text = _text(column_type).lower()
        labels: tuple[str, ...] = ()
        if type_text.startswith(("enum(", "set(")):
            labels = _labels(_text(column_type)[_text(column_type).index("(") + 1:_text(column_type).rindex(")")])
        generated = _opt(generation) or None
        text_type = _text(data_type).lower() in ("char", "varchar", "tinytext", "text", "mediumtext", "longtext",
                                                 "enum", "set", "json")
        default_text = None if generated else _opt(default)
        on_update = re.search(r"on update (current_timestamp(?:\(\d\))?)", extra_text)
        if self._mariadb and default_text is not None and default_text.upper() == "NULL":
            default_text = None  # MariaDB's spelling of "no default" for a nullable column
        return ColumnDef(
            name=name, source_type=type_text, nullable=_text(nullable) == "YES", default=default_text,
            default_value=parse_mysql_default(default_text, mariadb=self._mariadb,
                                              expression="default_generated" in extra_text, text_type=text_type),
            identity=Identity.AUTO_INCREMENT if "auto_increment" in extra_text else None,
            generated=generated, generated_stored="stored" in extra_text or "persistent" in extra_text,
            on_update=on_update.group(1).upper() if on_update else None,
            collation=_opt(collation), charset=_opt(charset), labels=labels, json=name in json_columns,
        )


def _labels(body: str) -> tuple[str, ...]:
    """The members of "'a','b''c'" (COLUMN_TYPE of an ENUM or SET, quotes doubled)."""
    return tuple(m.replace("''", "'") for m in re.findall(r"'((?:[^']|'')*)'", body))


def _keys(rows: list[tuple[Any, ...]]) -> tuple[tuple[str, ...], tuple[UniqueDef, ...], tuple[IndexDef, ...]]:
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(_text(row[0]), []).append(row)
    primary: tuple[str, ...] = ()
    unique: list[UniqueDef] = []
    indexes: list[IndexDef] = []
    for name, parts in grouped.items():
        columns = tuple(IndexColumn(_opt(p[2]), None, _opt(p[5]) == "D", None if p[3] is None else int(p[3]))
                        for p in parts)
        is_unique = int(parts[0][1]) == 0
        method = _text(parts[0][4]).lower()
        index = IndexDef(name, columns, is_unique, method)
        if name == "PRIMARY":
            primary = tuple(str(c.column) for c in columns)
        elif is_unique and index.plain:
            unique.append(UniqueDef(name, tuple(str(c.column) for c in columns)))
        else:
            indexes.append(index)
    return primary, tuple(unique), tuple(indexes)


def _foreign_keys(rows: list[tuple[Any, ...]]) -> tuple[ForeignKeyDef, ...]:
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(_text(row[0]), []).append(row)
    return tuple(
        ForeignKeyDef(name, tuple(_text(p[1]) for p in parts), TableId(_text(parts[0][2]), _text(parts[0][3])),
                      tuple(_text(p[4]) for p in parts), _text(parts[0][5]), _text(parts[0][6]))
        for name, parts in grouped.items())


class MySQLSchemaTarget:
    """Runs translated DDL on a MySQL/MariaDB target (autocommit, one statement at a time)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._conn = connect(endpoint, "target")
        self._run(_DDL_SESSION)
        # Text translated from PostgreSQL compares byte-wise and NO PAD there ('a' ≠ 'a '); utf8mb4_bin
        # pads with spaces, so such keys would collide. The server's binary NO PAD collation replaces
        # it where there is one (MariaDB utf8mb4_nopad_bin, MySQL 8 utf8mb4_0900_bin).
        found = {_text(r[0]) for r in self._rows(
            "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN (%s, %s)",
            ("utf8mb4_nopad_bin", "utf8mb4_0900_bin"))}
        self._nopad = "utf8mb4_nopad_bin" if "utf8mb4_nopad_bin" in found else \
            ("utf8mb4_0900_bin" if "utf8mb4_0900_bin" in found else None)

    def close(self) -> None:
        self._conn.close()

    def _run(self, statement: str) -> None:
        with self._conn.cursor() as cur:
            cur.execute(statement)  # no parameters: pymysql applies no %-formatting

    def _rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(query, params or None)
            return list(cur.fetchall())

    def exists(self, statement: Statement) -> bool:
        table, kind = statement.table, statement.kind
        params: tuple[str, ...]
        if kind is StatementKind.NAMESPACE:
            query, params = ("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (statement.name,))
        elif kind is StatementKind.INDEX:
            query = ("SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
                     " AND INDEX_NAME = %s")
            params = (table.schema, table.name, statement.name)
        elif kind is StatementKind.FOREIGN_KEY:
            query = ("SELECT 1 FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
                     " AND CONSTRAINT_NAME = %s AND CONSTRAINT_TYPE = 'FOREIGN KEY'")
            params = (table.schema, table.name, statement.name)
        else:
            query = "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
            params = (table.schema, statement.name)
        return bool(self._rows(query, params))

    def render(self, statement: Statement) -> str:
        """The statement as this server runs it."""
        text = statement.sql
        if self._nopad is not None:  # only the translation's own collation (see __init__), never a source's
            text = text.replace(TEXT_COLLATION, TEXT_COLLATION.replace("utf8mb4_bin", self._nopad))
            text = text.replace(TABLE_COLLATION, TABLE_COLLATION.replace("utf8mb4_bin", self._nopad))
        return text

    def execute(self, statement: Statement) -> None:
        text = self.render(statement)
        try:
            self._run(text)
        except pymysql.MySQLError as exc:
            message = " ".join(str(exc.args[1] if len(exc.args) > 1 else exc).split())
            raise TargetError(f"cannot create {statement.kind.value} {statement.name} on the target "
                              f"({statement.table}): {message}") from None

    def difference(self, plan: TablePlan) -> str | None:
        """How the existing target table differs from the plan in a way the copy cannot bear, or None."""
        target = f"{quote_identifier(plan.target.schema)}.{quote_identifier(plan.target.name)}"
        existing = {_text(r[0]): (_text(r[1]).lower(), _text(r[2]) == "YES")
                    for r in self._rows(f"SHOW COLUMNS FROM {target}")}
        planned = self._canonical_types(plan)
        for column in plan.columns:
            found = existing.get(column.name)
            if found is None:
                return f"column {column.name} is missing"
            if found[0] != planned[column.name]:
                return f"column {column.name} is {found[0]}, the translation gives {planned[column.name]}"
            if not found[1] and column.nullable:
                return f"column {column.name} is NOT NULL on the target but nullable on the source"
        key = tuple(_text(r[0]) for r in self._rows(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
            " AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", (plan.target.schema, plan.target.name)))
        if key != plan.primary_key:
            return f"the primary key is ({', '.join(key)}), the source's is ({', '.join(plan.primary_key)})"
        return None

    def _canonical_types(self, plan: TablePlan) -> dict[str, str]:
        probe = f"{quote_identifier(plan.target.schema)}.{quote_identifier('replicator_schema_probe')}"
        columns = ", ".join(f"{quote_identifier(c.name)} {c.target_type}" for c in plan.columns)
        try:
            self._run(f"DROP TEMPORARY TABLE IF EXISTS {probe}")
            self._run(f"CREATE TEMPORARY TABLE {probe} ({columns})")
            rows = self._rows(f"SHOW COLUMNS FROM {probe}")
            self._run(f"DROP TEMPORARY TABLE {probe}")
        except pymysql.MySQLError as exc:
            message = " ".join(str(exc.args[1] if len(exc.args) > 1 else exc).split())
            raise TargetError(f"cannot check the planned types of {plan.target}: {message}") from None
        return {_text(r[0]): _text(r[1]).lower() for r in rows}
