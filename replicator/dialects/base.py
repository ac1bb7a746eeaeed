"""The interfaces each engine implements, and the value objects they exchange."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from replicator.events import ColumnType, Row, SourcePosition
from replicator.model import SourceTable, TableId
from replicator.table_schema import SchemaProblem, Statement, TablePlan, TableSchema


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


@dataclass(frozen=True)
class TargetColumn:
    name: str
    type_name: str  # as the engine formats it, lower case: 'integer', 'character varying(20)', 'tinyint(1)'
    nullable: bool = True


@dataclass(frozen=True)
class TargetTable:
    """A target table as the applier writes it: its writable columns and primary key."""

    table: TableId
    columns: tuple[TargetColumn, ...]
    key: tuple[str, ...]  # primary-key column names in key order; () for a table without one

    def column(self, name: str) -> TargetColumn | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


@dataclass(frozen=True)
class StoredOffset:
    """Our record of one partition: where to resume and the source position last applied."""

    next_offset: int | None  # None: nothing applied yet, start at the log start
    position: SourcePosition | None


@dataclass(frozen=True)
class OffsetUpdate:
    topic: str
    partition: int
    next_offset: int
    position: SourcePosition | None
    source_ts_ms: int | None


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    table: str | None
    key: str | None
    reason: str
    record: bytes | None


@dataclass(frozen=True)
class Gate:
    """Snapshot gating of one source table (see replicator.apply.gate)."""

    table: str  # source schema.table
    state: str  # 'hold' or 'filter'
    filter: str | None  # JSON, owned by the snapshot stage


Partition = tuple[str, int]


class TargetWriter(Protocol):
    """One target connection the applier writes through. Engine SQL lives in the implementations.

    Row values arrive as decoded plain Python values (see replicator.apply.decode); the writer binds
    them to each target column's type. All row and state writes between `begin` and `commit` are one
    transaction; DDL (`ensure_state`, `add_column`) is never run inside it.
    """

    def close(self) -> None: ...

    def ensure_state(self) -> None:
        """Create our state schema and tables if missing (idempotent DDL, autocommit)."""
        ...

    def describe(self, table: TableId) -> TargetTable | None:
        """The table's writable columns and key, or None when it does not exist."""
        ...

    def add_column(self, table: TableId, column: str, column_type: ColumnType) -> str:
        """Add a column with the type mapped from the event schema (idempotent); return the type used."""
        ...

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def savepoint(self, name: str) -> None: ...

    def rollback_to_savepoint(self, name: str) -> None: ...

    def release_savepoint(self, name: str) -> None: ...

    def is_transient(self, exc: BaseException) -> bool:
        """True for failures that waiting and retrying can cure: a lost connection, a deadlock, a
        serialization failure, a lock timeout. The applier then rolls back, reconnects and retries."""
        ...

    def describe_error(self, exc: BaseException) -> str:
        """One line for a driver exception (no SQL text, no values)."""
        ...

    # -- exactly-once state ----------------------------------------------------------------------
    def read_offsets(self, partitions: list[Partition]) -> dict[Partition, StoredOffset]:
        """Stored offsets (creating empty rows for new partitions), outside any batch transaction."""
        ...

    def lock_offsets(self, partitions: list[Partition]) -> dict[Partition, StoredOffset]:
        """Inside the batch transaction: lock the partitions' rows in sorted order (SELECT … FOR UPDATE)."""
        ...

    def save_offsets(self, updates: list[OffsetUpdate]) -> None: ...

    def record_dead_letter(self, letter: DeadLetter) -> None: ...

    def record_schema_change(self, topic: str, offset: int, database: str, ddl: str, source_ts_ms: int) -> None: ...

    def read_gates(self) -> dict[str, Gate]: ...

    # -- rows ------------------------------------------------------------------------------------
    def upsert(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Insert each row, or overwrite `columns` of the row with the same primary key.
        Must never touch a row other than the one with the same primary key."""
        ...

    def update(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> int:
        """`columns` starts with the key columns; set the others on the row with that key.
        Returns how many rows matched."""
        ...

    def delete(self, table: TargetTable, keys: list[tuple[Any, ...]]) -> None: ...

    def change_key(self, table: TargetTable, old_key: tuple[Any, ...], columns: tuple[str, ...],
                   values: tuple[Any, ...]) -> int:
        """UPDATE … SET columns = values WHERE key = old_key (columns include the new key). Rows matched."""
        ...

    def insert_rows(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Plain inserts (tables without a primary key)."""
        ...

    def update_exact(self, table: TargetTable, old: Row, new: Row) -> int:
        """Update exactly one row equal to `old` in all its columns (NULL-safe); rows touched (0 or 1)."""
        ...

    def delete_exact(self, table: TargetTable, old: Row) -> int: ...

    def delete_all(self, table: TargetTable) -> None:
        """Empty the table inside the current transaction (never an implicitly committing TRUNCATE)."""
        ...


# -- schema translation ------------------------------------------------------------------------------
class SchemaReader(Protocol):
    """Reads table definitions from a source catalog."""

    def read(self, tables: list[TableId]) -> list[TableSchema]: ...

    def close(self) -> None: ...


class SchemaDDL(Protocol):
    """Plans one source table for the target engine and renders its DDL (pure: no connection)."""

    def plan_table(self, source: TableSchema, target: TableId, overrides: Mapping[str, str],
                   resolve: Callable[[TableId], TableId | None]) -> tuple[TablePlan, list[SchemaProblem]]:
        """`overrides`: column → target type given by the user; `resolve`: a referenced source table's
        target name, or None when it is not migrated."""
        ...


class SchemaTarget(Protocol):
    """Runs translated DDL on the target."""

    def exists(self, statement: Statement) -> bool:
        """True when the object the statement creates (by kind and name) is already there."""
        ...

    def execute(self, statement: Statement) -> None: ...

    def difference(self, plan: TablePlan) -> str | None:
        """None when the existing target table can take the plan's rows; else the first difference."""
        ...

    def close(self) -> None: ...
