"""PostgreSQL catalog → `TableSchema` (source side), and running translated DDL (target side).

Reading: pg_catalog only (pg_attribute, pg_constraint, pg_index, pg_depend), so every fact comes
with its exact name (never parsed from generated SQL), except a secondary index's definition, which
is pg_get_indexdef's text after `USING method ` (checked against the prefix PostgreSQL prints for
it), so PostgreSQL → PostgreSQL keeps operator classes, collations, INCLUDE, WITH and WHERE as they are.

Target: each statement runs in autocommit after an existence check by name (schema, type, sequence,
table, index, constraint), so every phase can run again. An existing table is compared to the plan
by column types as this server spells them: the planned types are put into a session temporary
table and read back with format_type, so 'varchar(20)' and 'character varying(20)' agree.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from replicator.config import Endpoint
from replicator.dialects.postgres import connect
from replicator.dialects.type_mapping import parse_postgres_default
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
    UserType,
)

_TABLE = """
SELECT c.oid, c.relkind::text, GREATEST(c.reltuples, -1)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""
_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
       a.attidentity::text, a.attgenerated::text, t.typcategory = 'A' AND t.typelem <> 0,
       ut.typtype::text, un.nspname, ut.typname,
       CASE WHEN ut.typtype = 'd' THEN format_type(ut.typbasetype, ut.typtypmod) END,
       CASE WHEN ut.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = ut.oid
                                             ORDER BY e.enumsortorder) END,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN co.collname END,
       seq.nspname, seq.relname, seq.owned
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type ut ON ut.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END
JOIN pg_namespace un ON un.oid = ut.typnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN LATERAL (
    SELECT sn.nspname, sc.relname,
           EXISTS (SELECT 1 FROM pg_depend o WHERE o.classid = 'pg_class'::regclass AND o.objid = sc.oid
                   AND o.refobjid = a.attrelid AND o.refobjsubid = a.attnum AND o.deptype = 'a') AS owned
    FROM pg_depend dep JOIN pg_class sc ON sc.oid = dep.refobjid AND sc.relkind = 'S'
    JOIN pg_namespace sn ON sn.oid = sc.relnamespace
    WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid LIMIT 1) seq ON true
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_CONSTRAINTS = """
SELECT con.conname, con.contype::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),
       fn.nspname, fc.relname,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o),
       con.confupdtype::text, con.confdeltype::text, con.condeferrable, con.condeferred,
       CASE WHEN con.contype = 'c' THEN pg_get_expr(con.conbin, con.conrelid) END
FROM pg_constraint con
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
WHERE con.conrelid = %s AND con.contype IN ('p', 'u', 'f', 'c')
ORDER BY con.contype, con.conname
"""
_INDEXES = """
SELECT ic.relname, i.indisunique, am.amname, pg_get_expr(i.indpred, i.indrelid),
       i.indexprs IS NOT NULL, i.indnkeyatts, i.indkey::int2[], i.indoption::int2[],
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnatts) k ORDER BY k),
       pg_get_indexdef(i.indexrelid),
       format('CREATE %%sINDEX %%I ON %%s%%I.%%I USING %%I ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,
              ic.relname, CASE WHEN c.relkind = 'p' THEN 'ONLY ' ELSE '' END, n.nspname, c.relname, am.amname)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = ic.relam
WHERE i.indrelid = %s AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x'))
ORDER BY ic.relname
"""
_RULES = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


class PostgresSchemaReader:
    """Reads table definitions from a PostgreSQL source."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._conn = connect(endpoint, "source")

    def close(self) -> None:
        self._conn.close()

    def read(self, tables: list[TableId]) -> list[TableSchema]:
        return [self._table(table) for table in tables]

    def _table(self, table: TableId) -> TableSchema:
        found: tuple[Any, ...] | None = self._conn.execute(_TABLE, (table.schema, table.name)).fetchone()
        if found is None:
            raise SourceError(f"source table {table} does not exist", hint="check tables.include")
        oid, _, estimate = found
        columns = tuple(_column(row) for row in self._conn.execute(_COLUMNS, (oid,)).fetchall())
        primary: tuple[str, ...] = ()
        unique, foreign, checks = [], [], []
        constraints: list[tuple[Any, ...]] = self._conn.execute(_CONSTRAINTS, (oid,)).fetchall()
        for name, kind, cols, ref_schema, ref_table, ref_cols, upd, dele, deferrable, deferred, check in constraints:
            if kind == "p":
                primary = tuple(cols)
            elif kind == "u":
                unique.append(UniqueDef(str(name), tuple(cols)))
            elif kind == "f":
                foreign.append(ForeignKeyDef(str(name), tuple(cols), TableId(str(ref_schema), str(ref_table)),
                                             tuple(ref_cols), _RULES[str(upd)], _RULES[str(dele)], bool(deferrable),
                                             bool(deferred)))
            elif check is not None:
                checks.append(CheckDef(str(name), str(check)))
        indexes = []
        for row in self._conn.execute(_INDEXES, (oid,)).fetchall():
            index = _index(row)
            if index.unique and index.plain and not index.include and index.method == "btree":
                unique.append(UniqueDef(index.name, tuple(str(c.column) for c in index.columns)))
            else:
                indexes.append(index)
        return TableSchema(table, columns, primary, tuple(unique), tuple(indexes), tuple(foreign), tuple(checks),
                           estimated_rows=int(estimate))


def _column(row: tuple[Any, ...]) -> ColumnDef:
    (name, type_name, nullable, default, identity, generated, array, typtype, type_schema, type_name_only,
     base, labels, collation, seq_schema, seq_name, owned) = row
    kind: Identity | None = {"a": Identity.ALWAYS, "d": Identity.BY_DEFAULT}.get(str(identity))
    sequence = TableId(str(seq_schema), str(seq_name)) if seq_name is not None else None
    if kind is None and sequence is not None and owned:
        kind = Identity.SERIAL
    user_type = None
    if typtype in ("e", "d") or (typtype == "b" and type_schema != "pg_catalog"):
        user_type = UserType(str(type_schema), str(type_name_only), tuple(labels or ()))
    return ColumnDef(
        name=str(name), source_type=str(type_name), nullable=bool(nullable), default=default,
        default_value=None if generated == "s" or sequence is not None else parse_postgres_default(default),
        identity=kind, generated=default if generated == "s" else None, collation=collation,
        user_type=user_type, array=bool(array), labels=tuple(labels or ()),
        base_type=None if base is None else str(base) + ("[]" if array else ""),
        sequence=sequence,
    )


def _index(row: tuple[Any, ...]) -> IndexDef:
    name, unique, method, predicate, _, key_count, keys, options, parts, full, prefix = row
    columns = []
    for position in range(int(key_count)):
        attnum = int(keys[position])
        descending = bool(int(options[position]) & 1)
        part = str(parts[position])
        if attnum == 0:
            columns.append(IndexColumn(None, part, descending))
        else:
            columns.append(IndexColumn(_unquote(part), None, descending))
    include = tuple(_unquote(str(p)) for p in parts[int(key_count):])
    definition = str(full)[len(prefix):] if str(full).startswith(str(prefix)) else None
    return IndexDef(str(name), tuple(columns), bool(unique), str(method), predicate, include, definition)


def _unquote(part: str) -> str:
    """A column as pg_get_indexdef prints it: bare, or in double quotes with quotes doubled."""
    if part.startswith('"') and part.endswith('"'):
        return part[1:-1].replace('""', '"')
    return part


class PostgresSchemaTarget:
    """Runs translated DDL on a PostgreSQL target (autocommit, one statement at a time)."""

    def __init__(self, endpoint: Endpoint, index_memory_mb: int | None = None) -> None:
        self._conn = connect(endpoint, "target")
        if index_memory_mb is not None:  # the sort of an index build in memory (snapshot.index_memory_mb)
            self._conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(f"{index_memory_mb}MB")))

    def close(self) -> None:
        self._conn.close()

    def render(self, statement: Statement) -> str:
        return statement.sql

    def exists(self, statement: Statement) -> bool:
        table = statement.table
        kind = statement.kind
        params: tuple[str, ...]
        if kind is StatementKind.NAMESPACE:
            query, params = "SELECT 1 FROM pg_namespace WHERE nspname = %s", (statement.name,)
        elif kind is StatementKind.TYPE:
            query = ("SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
                     " WHERE n.nspname = %s AND t.typname = %s")
            params = (table.schema, statement.name)
        elif kind is StatementKind.FOREIGN_KEY:
            query = ("SELECT 1 FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n"
                     " ON n.oid = r.relnamespace WHERE n.nspname = %s AND r.relname = %s AND c.conname = %s")
            params = (table.schema, table.name, statement.name)
        else:  # TABLE, INDEX, SEQUENCE: a relation of that name in the schema
            query = ("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                     " WHERE n.nspname = %s AND c.relname = %s")
            params = (table.schema, statement.name)
        return self._conn.execute(query, params).fetchone() is not None

    def execute(self, statement: Statement) -> None:
        try:
            self._conn.execute(statement.sql.encode())
        except psycopg.Error as exc:
            raise TargetError(f"cannot create {statement.kind.value} {statement.name} on the target "
                              f"({statement.table}): {_message(exc)}") from None

    def difference(self, plan: TablePlan) -> str | None:
        """How the existing target table differs from the plan in a way the copy cannot bear, or None."""
        target = plan.target
        regclass = sql.Identifier(target.schema, target.name).as_string(self._conn)
        existing = {str(name): (str(kind), bool(not_null)) for name, kind, not_null in self._conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", (regclass,)).fetchall()}
        planned = self._canonical_types(plan)
        for column in plan.columns:
            found = existing.get(column.name)
            if found is None:
                return f"column {column.name} is missing"
            if found[0] != planned[column.name]:
                return f"column {column.name} is {found[0]}, the translation gives {planned[column.name]}"
            if found[1] and column.nullable:
                return f"column {column.name} is NOT NULL on the target but nullable on the source"
        key = tuple(str(r[0]) for r in self._conn.execute(
            "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(n, o)"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n"
            " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.o", (regclass,)).fetchall())
        if key != plan.primary_key:
            return f"the primary key is ({', '.join(key)}), the source's is ({', '.join(plan.primary_key)})"
        return None

    def _canonical_types(self, plan: TablePlan) -> dict[str, str]:
        """The planned column types as this server's format_type spells them."""
        probe = sql.Identifier("replicator_schema_probe")
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.target_type)) for c in plan.columns)
        try:
            with self._conn.transaction():
                self._conn.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(probe, columns))
                rows = self._conn.execute(
                    sql.SQL("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                            " WHERE attrelid = {}::regclass AND attnum > 0").format(
                        sql.Literal(f"pg_temp.{probe.as_string(self._conn)}"))).fetchall()
        except psycopg.Error as exc:
            raise TargetError(f"cannot check the planned types of {plan.target}: {_message(exc)}") from None
        return {str(name): str(kind) for name, kind in rows}


def _message(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary
    return primary if primary else " ".join(str(exc).split())
