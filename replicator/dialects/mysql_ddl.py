"""MySQL/MariaDB as the schema-translation target: plans a source table's columns and renders its DDL.

Pure (no connection). Identifiers go through `quote_identifier`, literals through `quote_literal`
(DDL cannot take parameters; our DDL session never sets NO_BACKSLASH_ESCAPES). The statements are
run without parameters, so pymysql's %-formatting never touches them and `--dry-run` prints exactly
what runs.

From MySQL/MariaDB everything is kept as the catalog shows it: COLUMN_TYPE, character set and
collation, defaults, ON UPDATE, AUTO_INCREMENT, generated columns, ENGINE and the table collation,
index prefixes and DESC, FULLTEXT/SPATIAL, CHECK constraints. From PostgreSQL the types follow
`type_mapping.mysql_from_postgres`; every character column gets utf8mb4 with the utf8mb4_bin
collation (PostgreSQL compares text byte-wise and case-sensitively; a *_ci collation would make
'a' and 'A' collide in a key), and the table is InnoDB.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from replicator.dialects import type_mapping
from replicator.dialects.mysql import quote_identifier, quote_literal
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
)

_RULES = frozenset({"NO ACTION", "RESTRICT", "CASCADE", "SET NULL"})
_NEEDS_PARENS = re.compile(r"^(tinytext|text|mediumtext|longtext|tinyblob|blob|mediumblob|longblob|json|geometry"
                           r"|point)")
_WORD = re.compile(r"^\w+$")
TEXT_COLLATION = "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
TABLE_COLLATION = "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

Resolve = Callable[[TableId], TableId | None]


def _q(name: str) -> str:
    return quote_identifier(name)


def _table(table: TableId) -> str:
    return f"{_q(table.schema)}.{_q(table.name)}"


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(map(_q, names))


class MySQLDDL:
    """Plans tables for a MySQL/MariaDB target. `same_engine`: the source is MySQL/MariaDB too."""

    def __init__(self, same_engine: bool) -> None:
        self._same = same_engine

    def plan_table(self, source: TableSchema, target: TableId, overrides: Mapping[str, str],
                   resolve: Resolve) -> tuple[TablePlan, list[SchemaProblem]]:
        problems: list[SchemaProblem] = []
        lengths = self._key_lengths(source)
        indexed = {k[0] for k in [source.primary_key, *(u.columns for u in source.unique)] if k}
        columns = []
        for column in source.columns:
            planned = self._column(source, column, overrides.get(column.name), lengths.get(column.name),
                                   indexed=column.name in indexed, problems=problems)
            if planned is not None:
                columns.append(planned)
        if sum(c.identity is Identity.AUTO_INCREMENT for c in columns) > 1:
            problems.append(SchemaProblem(source.table, None, "more than one identity column (MySQL allows one "
                                          "AUTO_INCREMENT column)", "exclude the table"))
        namespace = Statement(StatementKind.NAMESPACE, target, target.schema,
                              f"CREATE DATABASE IF NOT EXISTS {_q(target.schema)}"
                              + ("" if self._same else " CHARACTER SET utf8mb4"))
        create = (namespace, self._create_table(source, target, columns, problems))
        types = {c.name: c.target_type for c in columns}
        post_load = tuple(s for i in source.indexes if (s := self._index(source, target, i, types, problems)))
        foreign_keys = tuple(s for fk in source.foreign_keys
                             if (s := self._foreign_key(source, target, fk, resolve, problems)))
        return TablePlan(source, target, tuple(columns), source.primary_key, create, post_load, foreign_keys), problems

    def _key_lengths(self, source: TableSchema) -> dict[str, int]:
        """PostgreSQL source: how many characters each unbounded text column of a key may keep."""
        if self._same:
            return {}
        types = {c.name: c.base_type or c.source_type for c in source.columns}
        keys = [source.primary_key, *(u.columns for u in source.unique), *(fk.columns for fk in source.foreign_keys)]
        lengths: dict[str, int] = {}
        for key in keys:
            for name, length in type_mapping.key_lengths(key, types).items():
                lengths[name] = min(length, lengths.get(name, length))
        return lengths

    # -- columns --------------------------------------------------------------------------------
    def _column(self, table: TableSchema, column: ColumnDef, override: str | None, key_length: int | None, *,
                indexed: bool, problems: list[SchemaProblem]) -> PlannedColumn | None:
        def warn(what: str, suggestion: str = "") -> None:
            problems.append(SchemaProblem(table.table, column.name, what, suggestion, blocking=False))

        text_type = False
        if override is not None:
            target_type = override
        elif self._same:
            target_type = "json" if column.json else column.source_type
        else:
            mapped = type_mapping.mysql_from_postgres(column, key_length)
            if mapped.problem is not None:
                problems.append(SchemaProblem(table.table, column.name, mapped.problem, mapped.suggestion))
                return None
            if mapped.warning:
                warn(mapped.warning)
            target_type, text_type = mapped.target_type, mapped.text
        type_sql = target_type
        if self._same and column.charset is not None and not column.json and override is None:
            type_sql += f" CHARACTER SET {column.charset}"
            type_sql += f" COLLATE {column.collation}" if column.collation else ""
        elif text_type:
            type_sql += f" {TEXT_COLLATION}"
        identity = None
        if column.identity is not None:
            if indexed:
                identity = Identity.AUTO_INCREMENT
            else:
                warn("identity is not carried: MySQL's AUTO_INCREMENT needs the column first in a key",
                     "number new rows in the application")
        default_sql = None if identity is not None else self._default(column, target_type, warn)
        if column.generated is not None and not self._same:
            warn("generated column becomes a plain column (its values are copied)")
        return PlannedColumn(column.name, target_type, column, column.nullable, default_sql, identity, type_sql,
                             generated=self._same and column.generated is not None)

    def _default(self, column: ColumnDef, target_type: str, warn: Callable[[str, str], None]) -> str | None:
        value = column.default_value
        if value is None or column.generated is not None:
            return None
        wrap = _NEEDS_PARENS.match(target_type) is not None  # TEXT/BLOB/JSON take only expression defaults
        if value.kind is DefaultKind.LITERAL:
            literal = quote_literal(value.value)
            return f"({literal})" if wrap else literal
        if value.kind is DefaultKind.NUMBER:
            return value.value
        if value.kind is DefaultKind.BOOLEAN:
            return "1" if value.value == "true" else "0"
        if value.kind is DefaultKind.NOW:
            if self._same:
                return value.value
            if target_type.startswith("datetime"):
                precision = target_type[len("datetime("):-1] if target_type.startswith("datetime(") else "0"
                return "CURRENT_TIMESTAMP" if precision in ("", "0") else f"CURRENT_TIMESTAMP({precision})"
        elif self._same:
            return f"({value.value})"
        warn(f"default {column.default} is not portable and is dropped", "set it on the target by hand if needed")
        return None

    # -- statements -----------------------------------------------------------------------------
    def _create_table(self, source: TableSchema, target: TableId, columns: list[PlannedColumn],
                      problems: list[SchemaProblem]) -> Statement:
        parts = [self._column_sql(c) for c in columns]
        if source.primary_key:
            parts.append(f"PRIMARY KEY ({_names(source.primary_key)})")
        parts.extend(f"UNIQUE KEY {_q(u.name)} ({_names(u.columns)})" for u in source.unique)
        for check in source.checks:
            if self._same:
                parts.append(f"CONSTRAINT {_q(check.name)} CHECK ({check.expression})")
            else:
                problems.append(SchemaProblem(source.table, None, f"CHECK constraint {check.name} ({check.expression})"
                                              " is not carried across engines", "add it on the target by hand",
                                              blocking=False))
        if self._same:
            engine = source.storage_engine if source.storage_engine and _WORD.match(source.storage_engine) else "InnoDB"
            options = f" ENGINE={engine}"
            if source.collation and _WORD.match(source.collation):
                options += f" DEFAULT COLLATE={source.collation}"
        else:
            options = f" ENGINE=InnoDB {TABLE_COLLATION}"
        body = ",\n  ".join(parts)
        statement = f"CREATE TABLE {_table(target)} (\n  {body}\n){options}"
        return Statement(StatementKind.TABLE, target, target.name, statement)

    def _column_sql(self, column: PlannedColumn) -> str:
        spec = f"{_q(column.name)} {column.type_sql or column.target_type}"
        source = column.source
        if self._same and source.generated is not None:
            kind = "STORED" if source.generated_stored else "VIRTUAL"
            return f"{spec} GENERATED ALWAYS AS ({source.generated}) {kind}"
        spec += " NULL" if column.nullable else " NOT NULL"
        if column.identity is Identity.AUTO_INCREMENT:
            spec += " AUTO_INCREMENT"
        if column.default_sql is not None:
            spec += f" DEFAULT {column.default_sql}"
        if self._same and source.on_update is not None:
            spec += f" ON UPDATE {source.on_update}"
        return spec

    def _index(self, source: TableSchema, target: TableId, index: IndexDef, types: dict[str, str],
               problems: list[SchemaProblem]) -> Statement | None:
        def skip(why: str) -> None:
            problems.append(SchemaProblem(source.table, None, f"index {index.name} is not carried: {why}",
                                          "create it on the target by hand", blocking=False))

        if any(part.column is None for part in index.columns):
            skip("an expression index")
            return None
        kind = "UNIQUE " if index.unique else ""
        if index.method in ("fulltext", "spatial"):
            kind = index.method.upper() + " "
        elif not self._same and not index.plain:
            skip(f"a {index.method} index" + (" with a predicate" if index.predicate else ""))
            return None
        parts = []
        wide = [p.column for p in index.columns if p.column and _wide(types.get(p.column, ""))]
        for part in index.columns:
            column = str(part.column)
            prefix = part.prefix_length
            if not self._same and column in wide:
                if index.unique:
                    skip("unique on unbounded text (MySQL could only compare a prefix)")
                    return None
                budget = type_mapping.MYSQL_KEY_BYTES - 16 * (len(index.columns) - len(wide))
                prefix = max(1, budget // len(wide) // 4)
            parts.append(_q(column) + (f"({prefix})" if prefix else "") + (" DESC" if part.descending else ""))
        statement = f"CREATE {kind}INDEX {_q(index.name)} ON {_table(target)} ({', '.join(parts)})"
        return Statement(StatementKind.INDEX, target, index.name, statement)

    def _foreign_key(self, source: TableSchema, target: TableId, fk: ForeignKeyDef, resolve: Resolve,
                     problems: list[SchemaProblem]) -> Statement | None:
        referenced = resolve(fk.referenced)
        if referenced is None:
            problems.append(SchemaProblem(source.table, None, f"foreign key {fk.name} references {fk.referenced}, "
                                          "which is not migrated: not created", "include that table", blocking=False))
            return None
        rules = [rule if rule in _RULES else "NO ACTION" for rule in (fk.on_update, fk.on_delete)]
        for rule in {fk.on_update, fk.on_delete} - _RULES:
            problems.append(SchemaProblem(source.table, None, f"foreign key {fk.name}: {rule} becomes NO ACTION "
                                          "(InnoDB refuses it)", "", blocking=False))
        if fk.deferrable:
            problems.append(SchemaProblem(source.table, None, f"foreign key {fk.name} is deferrable on the source; "
                                          "MySQL checks it at once", "", blocking=False))
        statement = (f"ALTER TABLE {_table(target)} ADD CONSTRAINT {_q(fk.name)} FOREIGN KEY ({_names(fk.columns)})"
                     f" REFERENCES {_table(referenced)} ({_names(fk.referenced_columns)})"
                     f" ON UPDATE {rules[0]} ON DELETE {rules[1]}")
        return Statement(StatementKind.FOREIGN_KEY, target, fk.name, statement)


def _wide(mysql_type: str) -> bool:
    """A MySQL column an index can only take a prefix of."""
    if mysql_type in ("longtext", "longblob", "mediumtext", "mediumblob", "text", "blob"):
        return True
    match = re.match(r"^var(?:char|binary)\((\d+)\)", mysql_type)
    return match is not None and int(match.group(1)) * 4 > type_mapping.MYSQL_KEY_BYTES
