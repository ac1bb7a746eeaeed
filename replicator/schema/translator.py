"""Schema translation, engine-neutral: read the source tables, plan the target DDL, run it by phase.

Owns: which tables (config.tables), what they are called on the target (the same
`TableSelection.target_for` the apply stage routes events with), the column-type overrides
(`snapshot.column_types`), the order of statements (schemas and types, then tables; secondary
indexes after the load; foreign keys after the load or at cutover) and idempotence (every object is
looked up by name before it is created; an existing table is compared, never altered or dropped).
Engine SQL lives in `replicator.dialects` (`schema_reader_for`, `schema_ddl_for`, `schema_target_for`).

Invariant: nothing is created while a blocking problem exists (`apply_schema` refuses the plan), so
a table never goes half-translated to the target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from replicator.config import Endpoint, Engine, MigrationConfig, TableSelection
from replicator.dialects import catalog_for, schema_ddl_for, schema_reader_for, schema_target_for
from replicator.errors import SchemaError, TargetError
from replicator.model import TableId
from replicator.table_schema import (
    Phase,
    SchemaPlan,
    SchemaProblem,
    Statement,
    StatementKind,
    TablePlan,
    TableSchema,
)


@dataclass(frozen=True)
class AppliedStatement:
    statement: Statement
    created: bool  # False: the object was there already (a table: and it is compatible)


def selected_tables(config: MigrationConfig) -> list[TableId]:
    """The source tables `tables.include`/`exclude` select, in catalog order."""
    catalog = catalog_for(config.source)
    try:
        return [t.table for t in catalog.list_tables() if config.selects(t.table)]
    finally:
        catalog.close()


def target_table(selection: TableSelection, source: TableId) -> TableId:
    """Where a source table's rows go: the naming the apply stage routes events by."""
    return TableId(*selection.target_for(source.schema, source.name))


def read_source_schema(endpoint: Endpoint, tables: list[TableId]) -> list[TableSchema]:
    """The definitions of `tables` from the source catalog (PostgreSQL pg_catalog, MySQL information_schema)."""
    reader = schema_reader_for(endpoint)
    try:
        return reader.read(tables)
    finally:
        reader.close()


def plan_schema(schemas: list[TableSchema], source: Engine, target: Engine, selection: TableSelection,
                column_types: Mapping[str, str] | None = None) -> SchemaPlan:
    """Translate source definitions into target DDL. Never raises for an untranslatable column: it
    is a `SchemaProblem` of the plan (blocking unless it is only a warning)."""
    ddl = schema_ddl_for(source, target)

    def resolve(referenced: TableId) -> TableId | None:  # a foreign key's table, if it is migrated too
        chosen = selection.selects(referenced.schema, referenced.name)
        return target_table(selection, referenced) if chosen else None

    overrides = column_types or {}
    plans: list[TablePlan] = []
    problems: list[SchemaProblem] = []
    for schema in schemas:
        prefix = f"{schema.table.qualified}."
        mine = {key[len(prefix):]: value for key, value in overrides.items() if key.startswith(prefix)}
        for column in mine:
            if schema.column(column) is None:
                problems.append(SchemaProblem(schema.table, column, "snapshot.column_types names a column the "
                                              "table does not have", "fix the key (schema.table.column)"))
        plan, found = ddl.plan_table(schema, target_table(selection, schema.table), mine, resolve)
        plans.append(plan)
        problems.extend(found)
    return SchemaPlan(tuple(plans), tuple(problems))


def translate(config: MigrationConfig, tables: list[TableId] | None = None) -> SchemaPlan:
    """Read and plan the selected tables (or `tables`) of the config's source for its target."""
    chosen = selected_tables(config) if tables is None else tables
    schemas = read_source_schema(config.source, chosen)
    return plan_schema(schemas, config.source.engine, config.target.engine, config.tables,
                       config.snapshot.column_types)


def unique_statements(plan: SchemaPlan, phase: Phase) -> list[Statement]:
    """The plan's statements of `phase` in order, each shared object (schema, type, sequence) once."""
    seen: set[tuple[StatementKind, TableId, str]] = set()
    chosen = []
    for statement in plan.statements(phase):
        key = (statement.kind, statement.table, statement.name)
        if statement.kind in (StatementKind.NAMESPACE, StatementKind.TYPE, StatementKind.SEQUENCE):
            key = (statement.kind, TableId(statement.table.schema, ""), statement.name)
        if key in seen:
            continue
        seen.add(key)
        chosen.append(statement)
    return chosen


def refuse_blocking(plan: SchemaPlan) -> None:
    if plan.blocking:
        count = len(plan.blocking)
        raise SchemaError(f"{count} column(s) or table(s) cannot be translated safely; nothing was created",
                          hint="see the problem lines: map the columns with snapshot.column_types or exclude "
                               "the tables")


def apply_schema(endpoint: Endpoint, plan: SchemaPlan, phase: Phase,
                 progress: Callable[[AppliedStatement], None] | None = None, *,
                 index_memory_mb: int | None = None) -> list[AppliedStatement]:
    """Run the plan's statements of `phase` on the target, idempotently: an object that exists is
    left alone; an existing table is compared and a difference the rows cannot bear is a TargetError."""
    refuse_blocking(plan)
    tables = {p.target: p for p in plan.tables}
    target = schema_target_for(endpoint, index_memory_mb)
    done: list[AppliedStatement] = []
    try:
        for statement in unique_statements(plan, phase):
            created = not target.exists(statement)
            if created:
                target.execute(statement)
            elif statement.kind is StatementKind.TABLE:
                difference = target.difference(tables[statement.table])
                if difference is not None:
                    raise TargetError(f"target table {statement.table} exists and differs from the translation: "
                                      f"{difference}", hint="drop it or make it match, or name another target "
                                                            "with tables.rename / tables.target_schema")
            applied = AppliedStatement(statement, created)
            done.append(applied)
            if progress is not None:
                progress(applied)
    finally:
        target.close()
    return done
