"""The interfaces each engine implements, and the value objects they exchange."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # annotations only: the schema model and the event types load where they are used
    from replicator.canonical import Checksum, ColumnRule, Family
    from replicator.config import MigrationConfig
    from replicator.events import ColumnType, KeyKind, KeyRanges, Row, SourcePosition
    from replicator.model import Finding, SourceTable, TableId
    from replicator.table_schema import SchemaProblem, Statement, TablePlan, TableSchema


class SourceCatalog(Protocol):
    """Reads and adjusts what change capture needs on a source database."""

    def list_tables(self) -> list[SourceTable]:
        """Every user table of the configured database, with key and replica identity facts."""
        ...

    def set_replica_identity_full(self, table: TableId) -> None: ...

    def ensure_watermark(self, table: TableId) -> None:
        """Create our watermark table (id, token, written_at) if missing (idempotent)."""
        ...

    def write_watermark(self, table: TableId, token: str) -> None:
        """Write `token` into the watermark table in a committed transaction of its own."""
        ...

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

Block = bytes | bytearray | memoryview  # a piece of a COPY / LOAD DATA stream


@dataclass(frozen=True)
class SourceShape:
    """A source table as the snapshot copies it: columns (name, type as the source formats it), primary
    key, and how each key column orders chunk bounds (None: a type bounds are not taken on)."""

    table: TableId
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    key_kinds: tuple[KeyKind | None, ...]
    estimated_rows: int

    @property
    def chunk_kinds(self) -> tuple[KeyKind, ...] | None:
        """The key's kinds when the table can be split into key ranges; None: one chunk."""
        if not self.key or any(k is None for k in self.key_kinds):
            return None
        return tuple(k for k in self.key_kinds if k is not None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


@dataclass(frozen=True)
class LedgerTable:
    """A table's entry in the snapshot ledger (our state schema in the target)."""

    source_table: str
    target_table: str
    plan: str  # JSON: the chunk bounds, fixed when the table's copy starts
    state: str  # copying, copied, released
    chunks: dict[int, tuple[int, str]]  # chunk → (rows, position JSON) of the chunks committed
    source_rows: int | None = None
    target_rows: int | None = None
    deferred_key: str | None = None  # the primary key dropped for the load, to add back before the release


@dataclass(frozen=True)
class Transfer:
    """How a chunk's rows travel from source to target: the stream format (into PostgreSQL: COPY binary
    or text; into MySQL: LOAD DATA of PostgreSQL's CSV or of tab-separated lines a MySQL source built),
    and the target's column types, which decide how the source renders some values."""

    format: Literal["pg-binary", "pg-text", "pg-csv", "mysql-tsv"]
    target_types: dict[str, str]

    @property
    def binary(self) -> bool:
        return self.format == "pg-binary"


class SourceRows(Protocol):
    """A chunk's blocks; once iterated to the end, `rows` is how many rows the source sent."""

    rows: int | None

    def __iter__(self) -> Iterator[Block]: ...


def verify_rows(load: ChunkLoad, sent: SourceRows, loaded: int) -> None:
    """Before the chunk's commit: the target loaded exactly the rows the source sent."""
    if sent.rows is not None and sent.rows != loaded:
        from replicator.errors import SnapshotError

        raise SnapshotError(f"{load.source_table} chunk {load.chunk}: {sent.rows} rows read from the source "
                            f"but {loaded} loaded into the target")


@dataclass(frozen=True)
class ChunkLoad:
    """One chunk's load into the target and its ledger entry."""

    source_table: str
    chunk: int
    position: str  # JSON of the read view's position (SnapshotPoint.position)
    table: TableId  # the target table
    key: tuple[str, ...]
    kinds: tuple[KeyKind, ...] | None  # None: the whole table is the chunk
    low: tuple[Any, ...] | None
    high: tuple[Any, ...] | None
    columns: tuple[str, ...]
    transfer: Transfer


@dataclass(frozen=True)
class SnapshotPoint:
    """A consistent read view of the source and where the change stream stood when it was taken
    (the per-chunk filter entry of replicator.apply.gate: {"postgres": {...}} or {"mysql": {...}})."""

    token: str  # what a worker needs to enter it (PostgreSQL: the exported snapshot's name)
    position: dict[str, Any]


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

    def record_marks(self, marks: list[tuple[str, int, int, int]]) -> None:
        """In the batch transaction: (source table, generation, bucket, offset) rows of the buckets its
        events touched, each kept at the highest offset (replicator.apply.marks)."""
        ...

    def read_marks(self, table: str) -> dict[tuple[int, int], int]:
        """(generation, bucket) → highest offset, of one source table."""
        ...

    def save_pass(self, table: str, generation: int, text: str, keep: int | None) -> None:
        """Record a complete reconcile pass; forget the passes and marks of the table's generations
        below `keep` (None: keep all)."""
        ...

    def read_pass(self, table: str) -> tuple[int, str, float] | None:
        """The latest complete pass of a table: generation, its JSON, when it was recorded (epoch s)."""
        ...

    def read_gates(self, *, lock: bool = False) -> dict[str, Gate]:
        """All gates; with `lock`, inside the batch transaction, a locking read of the latest committed
        ones (FOR SHARE): a gate that changed since the batch was planned makes the batch void."""
        ...

    def write_gate(self, table: str, state: str | None, filter_text: str | None, partitions: list[Partition]) -> None:
        """Set a table's gate (None: remove it) in a transaction that first locks the offset rows of
        its partitions, as every batch transaction does: a batch either committed before the change
        or reads it after its lock step (and is voided if it planned with the old gate)."""
        ...

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

    def delete_ranges(self, table: TargetTable, ranges: KeyRanges) -> int:
        """Delete the rows whose key lies in one of the ranges (compared as the snapshot's chunk bounds:
        integers, text by its bytes), inside the current transaction; returns the rows deleted."""
        ...


class SnapshotSource(Protocol):
    """One source connection of the snapshot copier (see replicator.snapshot)."""

    def close(self) -> None: ...

    def shape(self, table: TableId) -> SourceShape: ...

    def split_points(self, shape: SourceShape, chunk_rows: int) -> list[tuple[Any, ...]]:
        """Ordered key values cutting the table into chunks of about `chunk_rows` rows ([]: one chunk)."""
        ...

    def sequences(self, table: TableId) -> dict[str, int]:
        """Column → the sequence's or auto-increment's current value, for the cutover to sync."""
        ...

    def is_transient(self, exc: BaseException) -> bool:
        """A failure of one read that leaves the read view usable: the chunk is read again."""
        ...

    def export(self) -> SnapshotPoint:
        """Coordinator: open a consistent read view that workers can enter; where the stream stood."""
        ...

    def enter(self, point: SnapshotPoint) -> SnapshotPoint:
        """Worker: read in `point` from now on (or in a view of its own: its position is returned)."""
        ...

    def leave(self) -> None: ...

    def count(self, table: TableId) -> int:
        """Rows of the table in the current read view."""
        ...

    def stream(self, shape: SourceShape, columns: tuple[str, ...], low: tuple[Any, ...] | None,
               high: tuple[Any, ...] | None, transfer: Transfer) -> Generator[Block, None, int]:
        """The rows of [low, high) as blocks of the load format the target reads; returns the rows sent."""
        ...


class SnapshotTarget(Protocol):
    """One target connection of the snapshot copier: chunk loads and the chunk ledger."""

    def close(self) -> None: ...

    def column_types(self, table: TableId) -> dict[str, str] | None: ...

    def is_transient(self, exc: BaseException) -> bool:
        """A deadlock, lock timeout or lost connection: the chunk's transaction rolled back; retry it."""
        ...

    def is_broken(self) -> bool:
        """The connection is gone (a new one is needed)."""
        ...

    def load_chunk(self, load: ChunkLoad, blocks: SourceRows) -> tuple[int, int]:
        """One transaction: load the blocks (the range is empty: see start_table), check that the target
        loaded as many rows as the source sent (`verify_rows`), record the chunk and its position in
        the ledger; commit. (rows, bytes) loaded."""
        ...

    def ledger_table(self, source_table: str) -> LedgerTable | None: ...

    def start_table(self, source_table: str, target: TableId, plan: str) -> str | None:
        """(Re)start a table's copy with this plan: its earlier chunk entries are forgotten and the
        target table is emptied (every key range is loaded again; the table is held, so nothing else
        writes it), in one transaction, or where emptying commits on its own (MySQL's TRUNCATE), in
        an order that leaves no ledger entry until the table is empty (a crash between: planned again).
        Where the engine gains by it, the primary key is dropped too (loading first and building the
        index once is faster) and the statement that adds it back is returned (and kept in the
        ledger); else None."""
        ...

    def restore_key(self, table: TableId, statement: str, memory_mb: int, *, empty: bool = False) -> None:
        """Add back a primary key `start_table` dropped (idempotent), sorting in up to `memory_mb`;
        `empty`: delete the table's rows first, in the same transaction (a restart loads them all
        again, and rows the key would refuse must not stop it)."""
        ...

    def finish_table(self, source_table: str, state: str, source_rows: int | None, target_rows: int | None,
                     sequences: str | None) -> None: ...

    def count(self, table: TableId) -> int: ...
# -- reconcile ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HashedTable:
    """A compared table as one side queries it: its name there, the columns compared (with their
    families) and this side's types of them, the key (source key order) and how each key column
    orders ranges (int, text in byte order; None: by its canonical text, and no ranges)."""

    table: TableId
    rules: tuple[ColumnRule, ...]
    types: Mapping[str, str]
    key: tuple[str, ...]
    kinds: tuple[KeyKind | None, ...]
    same: bool = False  # both sides are this engine: a column of the same type on both gets cheaper texts
    fast: bool = False  # an engine-specific row hash both sides share (PostgreSQL: hashtextextended)

    def same_type(self, rule: ColumnRule) -> bool:
        """Both sides are this engine and the column has the same type on both."""
        return self.same and rule.source_type == rule.target_type

    @property
    def range_kinds(self) -> tuple[KeyKind, ...] | None:
        """The key's kinds when ranges of it can be queried; None: the table is compared whole."""
        if not self.key or any(k is None for k in self.kinds):
            return None
        return tuple(k for k in self.kinds if k is not None)


class HashSide(Protocol):
    """One connection of the reconciler to the source or the target: the canonical encoding of
    replicator.canonical as the engine's SQL. Key ranges [low, high) compare text keys in byte order;
    bounds of None are open."""

    role: str

    def close(self) -> None: ...

    def family(self, type_name: str) -> Family:
        """The family of one of this engine's column types (replicator.canonical)."""
        ...

    def columns(self, table: TableId) -> tuple[list[tuple[str, str]], tuple[str, ...]] | None:
        """(columns with their types, primary key), or None when the table does not exist."""
        ...

    def checksum(self, t: HashedTable, low: tuple[Any, ...] | None, high: tuple[Any, ...] | None) -> Checksum:
        """Row count and hash sum of the range, in one query."""
        ...

    def one_process(self, on: bool) -> None:
        """Hash in one server process (on), or in as many as the server's settings allow (off: its
        default). An engine whose queries always run in one thread does nothing."""
        ...

    def split(self, t: HashedTable, low: tuple[Any, ...] | None, high: tuple[Any, ...] | None,
              every: int) -> list[tuple[Any, ...]]:
        """Key values cutting the range into runs of `every` rows."""
        ...

    def buckets(self, t: HashedTable, low: int, high: int, width: int) -> dict[int, Checksum]:
        """A one-column integer key's range [low, high) cut into buckets of `width` key values, each
        bucket's checksum (bucket i holds low + i*width …), in one query; empty buckets are absent."""
        ...

    def bounds(self, t: HashedTable) -> tuple[int, int] | None:
        """min and max of a one-column integer key (None: no rows)."""
        ...

    def rows(self, t: HashedTable, spans: Sequence[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]],
             ) -> Generator[tuple[tuple[Any, ...], tuple[str | None, ...]], None, None]:
        """(sort key, canonical column texts) of each row of the ranges (disjoint, given as (low, high)
        in key order: several ranges are read by one query), streamed in sort-key order: a key
        column of kind int or text by its value (text in byte order), others by their canonical text; a
        table without a key by its canonical row text."""
        ...

    def values(self, t: HashedTable, low: tuple[Any, ...] | None,
               high: tuple[Any, ...] | None) -> Generator[tuple[tuple[str | None, ...], Row], None, None]:
        """(canonical texts of the key — of every column without a key —, the row's values as the
        applier's decoder yields them from the change events of that row) of each row of the range:
        what a repair writes through the applier's writer."""
        ...

    def open_view(self) -> SnapshotPoint:
        """Start a consistent read view; where the change stream stood when it was taken."""
        ...

    def close_view(self) -> None: ...


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

    def render(self, statement: Statement) -> str:
        """The statement as this target runs it (e.g. the server's own NO PAD binary collation)."""
        ...

    def execute(self, statement: Statement) -> None: ...

    def difference(self, plan: TablePlan) -> str | None:
        """None when the existing target table can take the plan's rows; else the first difference."""
        ...

    def close(self) -> None: ...


# -- preflight ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PresentTable:
    """A target table that exists already, as preflight compares it with its source table."""

    columns: tuple[str, ...]  # writable columns (not generated), in table order
    has_rows: bool
    writable: bool = True  # the target user may SELECT, INSERT, UPDATE and DELETE its rows


class SourceInspector(Protocol):
    """Preflight on the source: reads settings, privileges and the catalog; changes nothing."""

    def findings(self, config: MigrationConfig) -> list[Finding]:
        """Server settings CDC needs, the user's privileges, replication capacity, each selected table
        (key, engine or replica identity, SELECT) and our watermark table."""
        ...

    def columns(self, config: MigrationConfig) -> dict[TableId, tuple[str, ...]]:
        """Every selected table and its copied (non-generated) columns, in table order."""
        ...

    def close(self) -> None: ...


class TargetInspector(Protocol):
    """Preflight on the target: reads settings, privileges and the catalog; changes nothing."""

    def findings(self, config: MigrationConfig, absent: list[TableId]) -> list[Finding]:
        """Our state schema can be created and used, the apply session's settings are allowed, and the
        `absent` tables (which replicator creates) can be created where they go."""
        ...

    def present(self, tables: list[TableId]) -> dict[TableId, PresentTable]:
        """The tables that exist, with their columns and whether they hold rows."""
        ...

    def close(self) -> None: ...
