"""The interfaces each engine implements."""

from __future__ import annotations

from typing import Protocol

from replicator.model import SourceTable, TableId


class SourceCatalog(Protocol):
    """Reads and adjusts what change capture needs on a source database."""

    def list_tables(self) -> list[SourceTable]:
        """Every user table of the configured database, with key and replica identity facts."""
        ...

    def set_replica_identity_full(self, table: TableId) -> None: ...

    def drop_capture_objects(self, slot_name: str, publication_name: str, wait_s: float) -> list[str]:
        """Drop what a PostgreSQL connector leaves behind (slot, publication); say what was dropped."""
        ...

    def close(self) -> None: ...
