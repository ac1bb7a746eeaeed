"""Everything that differs between PostgreSQL and MySQL/MariaDB lives in this package.

`catalog_for(endpoint)` gives the engine's `SourceCatalog`; nothing outside `dialects/` branches on
the engine name.
"""

from __future__ import annotations

from replicator.config import Endpoint, Engine
from replicator.dialects.base import SchemaDDL, SchemaReader, SchemaTarget, SourceCatalog, TargetWriter


def catalog_for(endpoint: Endpoint) -> SourceCatalog:
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres import PostgresCatalog

        return PostgresCatalog(endpoint)
    from replicator.dialects.mysql import MySQLCatalog

    return MySQLCatalog(endpoint)


def target_writer_for(endpoint: Endpoint, state_schema: str) -> TargetWriter:
    """The applier's writer for the target's engine (one connection)."""
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres_target import PostgresTargetWriter

        return PostgresTargetWriter(endpoint, state_schema)
    from replicator.dialects.mysql_target import MySQLTargetWriter

    return MySQLTargetWriter(endpoint, state_schema)


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


def schema_target_for(endpoint: Endpoint) -> SchemaTarget:
    """Runs translated DDL on the target (one connection)."""
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres_schema import PostgresSchemaTarget

        return PostgresSchemaTarget(endpoint)
    from replicator.dialects.mysql_schema import MySQLSchemaTarget

    return MySQLSchemaTarget(endpoint)


__all__ = ["SchemaDDL", "SchemaReader", "SchemaTarget", "SourceCatalog", "TargetWriter", "catalog_for",
           "schema_ddl_for", "schema_reader_for", "schema_target_for", "target_writer_for"]
