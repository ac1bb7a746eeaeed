"""Everything that differs between PostgreSQL and MySQL/MariaDB lives in this package.

`catalog_for(endpoint)` gives the engine's `SourceCatalog`; nothing outside `dialects/` branches on
the engine name.
"""

from __future__ import annotations

from replicator.config import Endpoint, Engine
from replicator.dialects.base import SourceCatalog


def catalog_for(endpoint: Endpoint) -> SourceCatalog:
    if endpoint.engine is Engine.POSTGRES:
        from replicator.dialects.postgres import PostgresCatalog

        return PostgresCatalog(endpoint)
    from replicator.dialects.mysql import MySQLCatalog

    return MySQLCatalog(endpoint)


__all__ = ["SourceCatalog", "catalog_for"]
