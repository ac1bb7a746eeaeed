"""PostgreSQL as the schema-translation target: plans a source table's columns and renders its DDL.

Pure (no connection): identifiers and literals are rendered by psycopg's `sql` module, so the
statements printed by `--dry-run` are exactly the ones run. From PostgreSQL everything is kept as
it is (enum types are re-created in the target schema, domains become their base type, serial
columns stay serial, identity columns keep their kind, index definitions are taken verbatim from
pg_get_indexdef); from MySQL/MariaDB the types follow `type_mapping.postgres_from_mysql`.

Constraint and index names: PostgreSQL's own are kept; MySQL's are per table, PostgreSQL's index
names per schema, so those become `<table>_<name>` (cut to 63 bytes with a hash suffix if needed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from psycopg import sql

from replicator.dialects import type_mapping
from replicator.model import TableId
from replicator.table_schema import (
    ColumnDef,
    DefaultKind,
    ForeignKeyDef,
    Identity,
    IndexDef,
    PlannedColumn,
    SchemaProblem,
    Statement,
    StatementKind,
    TablePlan,
    TableSchema,
    UserType,
)

_SERIAL = {"smallint": "smallserial", "integer": "serial", "bigint": "bigserial"}
_INTEGERS = frozenset({"smallint", "integer", "bigint"})
_RULES = frozenset({"NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"})
_NAME_BYTES = 63

Resolve = Callable[[TableId], TableId | None]


def text(composable: sql.Composable) -> str:
    return composable.as_string(None)


def pg_name(*parts: str) -> str:
    """`a_b`, cut to PostgreSQL's 63 bytes with a stable hash suffix when longer."""
    name = "_".join(parts)
    if len(name.encode()) <= _NAME_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]  # noqa: S324 - a name suffix, not security
    cut = name.encode()[: _NAME_BYTES - 9].decode(errors="ignore")
    return f"{cut}_{digest}"


class PostgresDDL:
    """Plans tables for a PostgreSQL target. `same_engine`: the source is PostgreSQL too."""

    def __init__(self, same_engine: bool) -> None:
        self._same = same_engine

    def plan_table(self, source: TableSchema, target: TableId, overrides: Mapping[str, str],
                   resolve: Resolve) -> tuple[TablePlan, list[SchemaProblem]]:
        problems: list[SchemaProblem] = []
        columns = []
        for column in source.columns:
            planned = self._column(source, column, target, overrides.get(column.name), problems)
            if planned is not None:
                columns.append(planned)
        key_columns = set(source.primary_key) | {c for u in source.unique for c in u.columns}
        if not self._same:
            for column in source.columns:
                remark = type_mapping.case_insensitive_warning(column) if column.name in key_columns else None
                if remark:
                    problems.append(SchemaProblem(source.table, column.name, remark, "", blocking=False))
        create = [*self._prelude(target, columns), self._create_table(source, target, columns, problems)]
        post_load = [s for index in source.indexes if (s := self._index(source, target, index, problems))]
        foreign_keys = [s for fk in source.foreign_keys if (s := self._foreign_key(source, target, fk, resolve,
                                                                                   problems))]
        plan = TablePlan(source, target, tuple(columns), source.primary_key, tuple(create), tuple(post_load),
                         tuple(foreign_keys))
        return plan, problems

    # -- columns --------------------------------------------------------------------------------
    def _column(self, table: TableSchema, column: ColumnDef, target: TableId, override: str | None,
                problems: list[SchemaProblem]) -> PlannedColumn | None:
        def warn(what: str, suggestion: str = "") -> None:
            problems.append(SchemaProblem(table.table, column.name, what, suggestion, blocking=False))

        if override is not None:
            target_type, type_sql, user_type = override, override, None
        elif self._same:
            target_type, type_sql, user_type = self._same_type(column, target, warn)
        else:
            mapped = type_mapping.postgres_from_mysql(column)
            if mapped.problem is not None:
                problems.append(SchemaProblem(table.table, column.name, mapped.problem, mapped.suggestion))
                return None
            if mapped.warning:
                warn(mapped.warning)
            target_type, type_sql, user_type = mapped.target_type, mapped.target_type, None
        identity = column.identity
        default_sql = None
        if identity is Identity.SERIAL and target_type in _SERIAL and override is None:
            type_sql = _SERIAL[target_type]  # creates and owns its sequence, as on the source
        elif identity is Identity.AUTO_INCREMENT and target_type not in _INTEGERS:
            identity = None
            warn(f"AUTO_INCREMENT is not carried to a {target_type} column", "number new rows in the application")
        else:
            if identity is Identity.AUTO_INCREMENT:
                identity = Identity.BY_DEFAULT
            elif identity is Identity.SERIAL:
                identity = None  # a serial over a non-integer override: keep the nextval() default
            if identity is None:
                default_sql = self._default(column, target, target_type, warn)
        if column.generated is not None and not self._same:
            warn("generated column becomes a plain column (its values are copied)", "")
        return PlannedColumn(column.name, target_type, column, column.nullable, default_sql,
                             identity, type_sql, user_type, generated=self._same and column.generated is not None)

    def _same_type(self, column: ColumnDef, target: TableId,
                   warn: Callable[[str, str], None]) -> tuple[str, str, UserType | None]:
        if column.base_type is not None:
            warn(f"domain {column.source_type} becomes its base type {column.base_type} (its CHECK "
                 "constraints are not carried)", "")
            return column.base_type, column.base_type, None
        if column.user_type is not None and column.labels:
            enum = UserType(target.schema, column.user_type.name, column.labels)
            rendered = text(sql.Identifier(enum.schema, enum.name)) + ("[]" if column.array else "")
            return rendered, rendered, enum
        if column.source_type == "tsvector":
            warn("tsvector: Debezium does not capture changes of this column", "recompute it on the target")
        return column.source_type, column.source_type, None

    def _default(self, column: ColumnDef, target: TableId, target_type: str,
                 warn: Callable[[str, str], None]) -> str | None:
        value = column.default_value
        if column.generated is not None and self._same:
            return None
        if column.sequence is not None and self._same:
            sequence = sql.Identifier(target.schema, column.sequence.name)
            return text(sql.SQL("nextval({}::regclass)").format(sql.Literal(text(sequence))))
        if value is None:
            return None
        if self._same:
            if value.kind is DefaultKind.LITERAL:  # without the source's cast (it may name the source schema)
                return text(sql.Literal(value.value))
            return column.default
        return self._portable_default(column, target_type, warn)

    @staticmethod
    def _portable_default(column: ColumnDef, target_type: str, warn: Callable[[str, str], None]) -> str | None:
        """A MySQL default for a PostgreSQL column: constants and the current timestamp only."""
        value = column.default_value
        assert value is not None
        if column.on_update is not None:
            warn(f"ON UPDATE {column.on_update} is not carried", "set the column in the application or a trigger")
        if type_mapping.is_zero_date(value):
            warn(f"zero-date default {value.value!r} is dropped (PostgreSQL has no zero date; Debezium sends "
                 "zero dates as NULL)", "")
            return None
        if value.kind is DefaultKind.NOW:
            if target_type.startswith(("timestamp", "date")):
                return "CURRENT_TIMESTAMP"
        elif value.kind is DefaultKind.NUMBER:
            if target_type == "boolean":
                return "false" if float(value.value) == 0 else "true"
            if target_type.startswith("bit("):
                return text(sql.SQL("{}::{}").format(sql.Literal(int(value.value)), sql.SQL(target_type)))
            return value.value if not value.value.startswith("-") else f"({value.value})"
        elif value.kind is DefaultKind.LITERAL:
            return text(sql.Literal(value.value))
        warn(f"default {column.default} is not portable and is dropped", "set it on the target by hand if needed")
        return None

    # -- statements -----------------------------------------------------------------------------
    def _prelude(self, target: TableId, columns: list[PlannedColumn]) -> list[Statement]:
        statements = [Statement(StatementKind.NAMESPACE, target, target.schema,
                                text(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(target.schema))))]
        for column in columns:
            enum = column.user_type
            if enum is not None:
                statements.append(Statement(
                    StatementKind.TYPE, TableId(enum.schema, enum.name), enum.name,
                    text(sql.SQL("CREATE TYPE {} AS ENUM ({})").format(
                        sql.Identifier(enum.schema, enum.name), sql.SQL(", ").join(map(sql.Literal, enum.labels))))))
            sequence = column.source.sequence
            if self._same and sequence is not None and column.source.identity is not Identity.SERIAL:
                statements.append(Statement(
                    StatementKind.SEQUENCE, TableId(target.schema, sequence.name), sequence.name,
                    text(sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(
                        sql.Identifier(target.schema, sequence.name)))))
        return statements

    def _create_table(self, source: TableSchema, target: TableId, columns: list[PlannedColumn],
                      problems: list[SchemaProblem]) -> Statement:
        parts: list[sql.Composable] = [self._column_sql(c) for c in columns]
        if source.primary_key:
            parts.append(sql.SQL("PRIMARY KEY ({})").format(_names(source.primary_key)))
        for unique in source.unique:
            name = unique.name if self._same else pg_name(target.name, unique.name)
            parts.append(sql.SQL("CONSTRAINT {} UNIQUE ({})").format(sql.Identifier(name), _names(unique.columns)))
        for column in columns:  # MySQL ENUM: a CHECK of its labels
            if not self._same and column.source.labels and column.source.source_type.startswith("enum"):
                parts.append(sql.SQL("CHECK ({} IN ({}))").format(
                    sql.Identifier(column.name), sql.SQL(", ").join(map(sql.Literal, column.source.labels))))
        for check in source.checks:
            if self._same:
                parts.append(sql.SQL("CONSTRAINT {} CHECK ({})").format(sql.Identifier(check.name),
                                                                         sql.SQL(check.expression)))
            else:
                problems.append(SchemaProblem(source.table, None, f"CHECK constraint {check.name} ({check.expression})"
                                              " is not carried across engines", "add it on the target by hand",
                                              blocking=False))
        statement = sql.SQL("CREATE TABLE {} (\n  {}\n)").format(
            sql.Identifier(target.schema, target.name), sql.SQL(",\n  ").join(parts))
        return Statement(StatementKind.TABLE, target, target.name, text(statement))

    def _column_sql(self, column: PlannedColumn) -> sql.Composable:
        parts: list[sql.Composable] = [sql.Identifier(column.name), sql.SQL(column.type_sql or column.target_type)]
        source = column.source
        if self._same and source.collation is not None:
            parts.append(sql.SQL("COLLATE {}").format(sql.Identifier(source.collation)))
        if column.identity is Identity.ALWAYS:
            parts.append(sql.SQL("GENERATED ALWAYS AS IDENTITY"))
        elif column.identity is Identity.BY_DEFAULT:
            parts.append(sql.SQL("GENERATED BY DEFAULT AS IDENTITY"))
        if self._same and source.generated is not None:
            parts.append(sql.SQL("GENERATED ALWAYS AS ({}) STORED").format(sql.SQL(source.generated)))
        if column.default_sql is not None:
            parts.append(sql.SQL("DEFAULT {}").format(sql.SQL(column.default_sql)))
        if not column.nullable:
            parts.append(sql.SQL("NOT NULL"))
        return sql.SQL(" ").join(parts)

    def _index(self, source: TableSchema, target: TableId, index: IndexDef,
               problems: list[SchemaProblem]) -> Statement | None:
        table = sql.Identifier(target.schema, target.name)
        unique = sql.SQL("UNIQUE ") if index.unique else sql.SQL("")
        if self._same and index.definition is not None:
            statement = sql.SQL("CREATE {}INDEX IF NOT EXISTS {} ON {} USING {} {}").format(
                unique, sql.Identifier(index.name), table, sql.Identifier(index.method), sql.SQL(index.definition))
            return Statement(StatementKind.INDEX, target, index.name, text(statement))
        name = pg_name(target.name, index.name)
        if index.method not in ("btree", "hash") or any(c.column is None for c in index.columns):
            problems.append(SchemaProblem(source.table, None, f"{index.method} index {index.name} is not carried",
                                          "create it on the target by hand", blocking=False))
            return None
        for part in index.columns:
            if part.prefix_length is not None:
                problems.append(SchemaProblem(source.table, part.column, f"index {index.name}: the prefix length "
                                              f"{part.prefix_length} is dropped (PostgreSQL indexes whole values)",
                                              "", blocking=False))
        columns = sql.SQL(", ").join(
            sql.SQL("{}{}").format(sql.Identifier(str(c.column)), sql.SQL(" DESC" if c.descending else ""))
            for c in index.columns)
        statement = sql.SQL("CREATE {}INDEX IF NOT EXISTS {} ON {} ({})").format(
            unique, sql.Identifier(name), table, columns)
        return Statement(StatementKind.INDEX, target, name, text(statement))

    def _foreign_key(self, source: TableSchema, target: TableId, fk: ForeignKeyDef, resolve: Resolve,
                     problems: list[SchemaProblem]) -> Statement | None:
        referenced = resolve(fk.referenced)
        if referenced is None:
            problems.append(SchemaProblem(source.table, None, f"foreign key {fk.name} references {fk.referenced}, "
                                          "which is not migrated: not created", "include that table", blocking=False))
            return None
        rules = [rule if rule in _RULES else "NO ACTION" for rule in (fk.on_update, fk.on_delete)]
        deferral = ""
        if fk.deferrable:
            deferral = " DEFERRABLE INITIALLY DEFERRED" if fk.initially_deferred else " DEFERRABLE"
        name = fk.name if self._same else pg_name(fk.name)
        statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})"
                            " ON UPDATE {} ON DELETE {}{}").format(
            sql.Identifier(target.schema, target.name), sql.Identifier(name), _names(fk.columns),
            sql.Identifier(referenced.schema, referenced.name), _names(fk.referenced_columns),
            sql.SQL(rules[0]), sql.SQL(rules[1]), sql.SQL(deferral))
        return Statement(StatementKind.FOREIGN_KEY, target, name, text(statement))


def _names(names: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))
