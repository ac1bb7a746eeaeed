"""Everything that differs between PostgreSQL and MySQL/MariaDB lives in this package.

`catalog_for(endpoint)` gives the engine's `SourceCatalog`; nothing outside `dialects/` branches on
the engine name.
"""

from __future__ import annotations

from replicator.config import Endpoint, Engine, MigrationConfig
from replicator.dialects.base import (
    HashSide,
    SchemaDDL,
    SchemaReader,
    SchemaTarget,
    SnapshotSource,
    SnapshotTarget,
    SourceCatalog,
    SourceInspector,
    TargetInspector,
    TargetWriter,
    Transfer,
)
from replicator.model import TableId


def catalog_for(endpoint: Endpoint) -> SourceCatalog:
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres import PostgresCatalog

        return PostgresCatalog(endpoint)
    from replicator.dialects.mysql import MySQLCatalog

    return MySQLCatalog(endpoint)


def selected_tables(config: MigrationConfig, names: list[str] | None) -> list[TableId]:
    """The source tables the config selects, or the named ones (each must be selected)."""
    from replicator.errors import ConfigError

    catalog = catalog_for(config.source)
    try:
        selected = [t.table for t in catalog.list_tables() if config.selects(t.table)]
    finally:
        catalog.close()
    if not names:
        if not selected:
            raise ConfigError(f"no table of the source {config.source.describe()} matches tables.include",
                              hint="check tables.include / tables.exclude")
        return selected
    by_name = {t.qualified: t for t in selected}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"not a selected source table: {', '.join(unknown)}",
                          hint="name tables as schema.table (MySQL: database.table); see tables.include")
    return [by_name[n] for n in names]


def source_inspector_for(config: MigrationConfig) -> SourceInspector:
    """Preflight's read-only look at the source (one connection; connection failures are one line)."""
    if config.source.engine is Engine.POSTGRES:
        from replicator.dialects.postgres_preflight import PostgresSourceInspector

        return PostgresSourceInspector(config)
    from replicator.dialects.mysql_preflight import MySQLSourceInspector

    return MySQLSourceInspector(config)


def target_inspector_for(config: MigrationConfig) -> TargetInspector:
    """Preflight's read-only look at the target (one connection; connection failures are one line)."""
    if config.target.engine is Engine.POSTGRES:
        from replicator.dialects.postgres_preflight import PostgresTargetInspector

        return PostgresTargetInspector(config)
    from replicator.dialects.mysql_preflight import MySQLTargetInspector

    return MySQLTargetInspector(config)


def target_writer_for(endpoint: Endpoint, state_schema: str) -> TargetWriter:
    """The applier's writer for the target's engine (one connection)."""
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres_target import PostgresTargetWriter

        return PostgresTargetWriter(endpoint, state_schema)
    from replicator.dialects.mysql_target import MySQLTargetWriter

    return MySQLTargetWriter(endpoint, state_schema)


def snapshot_source_for(endpoint: Endpoint) -> SnapshotSource:
    """One source connection of the snapshot copier (planning, or a worker's reads in the snapshot)."""
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres_snapshot import PostgresSnapshotSource

        return PostgresSnapshotSource(endpoint)
    from replicator.dialects.mysql_snapshot import MySQLSnapshotSource

    return MySQLSnapshotSource(endpoint)


def snapshot_target_for(endpoint: Endpoint, state_schema: str) -> SnapshotTarget:
    """One target connection of the snapshot copier (chunk loads and the ledger)."""
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres_load import PostgresSnapshotTarget

        return PostgresSnapshotTarget(endpoint, state_schema)
    from replicator.dialects.mysql_load import MySQLSnapshotTarget

    return MySQLSnapshotTarget(endpoint, state_schema)


def transfer_for(source: Endpoint, target: Endpoint, source_types: dict[str, str],
                 target_types: dict[str, str]) -> Transfer:
    """How chunks travel: PostgreSQL's binary COPY format when both ends are PostgreSQL and every copied
    column has the same type on both (binary values are type-specific), else COPY text built by the
    source; into MySQL/MariaDB, LOAD DATA of PostgreSQL's CSV or of lines a MySQL source built."""
    if target.engine is not Engine.POSTGRES:
        return Transfer("pg-csv" if source.engine is Engine.POSTGRES else "mysql-tsv", target_types)
    binary = source.engine is Engine.POSTGRES and all(target_types.get(n) == k for n, k in source_types.items())
    return Transfer("pg-binary" if binary else "pg-text", target_types)


def hash_side_for(endpoint: Endpoint, role: str) -> HashSide:
    """One connection of the reconciler to the source or the target (role names it in errors)."""
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres_hash import PostgresHashSide

        return PostgresHashSide(endpoint, role)
    from replicator.dialects.mysql_hash import MySQLHashSide

    return MySQLHashSide(endpoint, role)


def schema_reader_for(endpoint: Endpoint) -> SchemaReader:
    """Reads table definitions from the source's catalog (one connection)."""
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres_schema import PostgresSchemaReader

        return PostgresSchemaReader(endpoint)
    from replicator.dialects.mysql_schema import MySQLSchemaReader

    return MySQLSchemaReader(endpoint)


def schema_ddl_for(source: Engine, target: Engine) -> SchemaDDL:
    """Plans and renders target DDL for tables of the source engine (pure, no connection)."""
    if target is Engine.POSTGRES:
        from replicator.dialects.postgres_ddl import PostgresDDL

        return PostgresDDL(same_engine=source is target)
    from replicator.dialects.mysql_ddl import MySQLDDL

    return MySQLDDL(same_engine=source is target)


def schema_target_for(endpoint: Endpoint, index_memory_mb: int | None = None) -> SchemaTarget:
    """Runs translated DDL on the target (one connection); PostgreSQL builds indexes sorting in up to
    `index_memory_mb` (maintenance_work_mem; the server's default when None)."""
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres_schema import PostgresSchemaTarget

        return PostgresSchemaTarget(endpoint, index_memory_mb)
    from replicator.dialects.mysql_schema import MySQLSchemaTarget

    return MySQLSchemaTarget(endpoint)



__all__ = ["HashSide", "SchemaDDL", "SchemaReader", "SchemaTarget", "SnapshotSource", "SnapshotTarget",
           "SourceCatalog", "SourceInspector", "TargetInspector", "TargetWriter", "Transfer", "catalog_for",
           "hash_side_for", "schema_ddl_for",
           "schema_reader_for", "schema_target_for", "selected_tables", "snapshot_source_for", "snapshot_target_for",
           "source_inspector_for", "target_inspector_for", "target_writer_for", "transfer_for"]
