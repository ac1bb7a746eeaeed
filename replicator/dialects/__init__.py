"""Everything that differs between PostgreSQL and MySQL/MariaDB lives in this package.

`catalog_for(endpoint)` gives the engine's `SourceCatalog`; nothing outside `dialects/` branches on
the engine name.
"""

from __future__ import annotations

from replicator.config import Endpoint, Engine
from replicator.dialects.base import SourceCatalog, TargetWriter


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


__all__ = ["SourceCatalog", "TargetWriter", "catalog_for", "target_writer_for"]
