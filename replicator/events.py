"""Change events as value objects: what one Kafka record means once decoded (by replicator.apply).

Every record of every topic the applier reads decodes into exactly one of these. Column values are
plain Python values (see `replicator.apply.decode` for the full list); how a value is bound to a
target column is the dialect's business, never this module's.

`SourcePosition` is the source's own order of changes, used for exactly-once deduplication (an event
at or below the stored position of its partition was applied already: Kafka Connect re-sends events
after a crash under new offsets). It is a triple so that both engines fit one comparable form:
PostgreSQL `(commit LSN of the last completed transaction, change LSN, 0)` from `source.sequence`,
MySQL/MariaDB `(binlog file number, position, row)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from replicator.model import TableId

# Column values by column name, in the event schema's field order.
Row = dict[str, Any]


class SourcePosition(NamedTuple):
    """An event's place in the source's commit order; compared as the tuple (major, minor, row).
    (A NamedTuple, not a dataclass: one is built per event, and this is 3x cheaper.)"""

    major: int
    minor: int
    row: int = 0

    def __str__(self) -> str:
        return f"{self.major}/{self.minor}/{self.row}"

    @property
    def ordered(self) -> bool:
        """False when the commit order is unknown: PostgreSQL's first transaction of a connector that
        started without offsets has no lastCommitLsn (binlog file numbers start at 1). Such an event
        cannot be a re-send (a restarted connector restores lastCommitLsn), so it is never taken for a
        duplicate, and it is never stored as the partition's position (it would move it backwards)."""
        return self.major > 0


class RecordRef(NamedTuple):
    """Where a record sits in Kafka: named in every error about it."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Geometry:
    """A geometry as standard WKB (MySQL's 4-byte SRID prefix already removed) plus its SRID.
    For a Debezium Point, `x`/`y` are set too."""

    wkb: bytes
    srid: int | None = None
    x: float | None = None
    y: float | None = None


KeyKind = Literal["int", "text"]  # how a key column orders chunk bounds: integers, or text by its bytes


@dataclass(frozen=True, slots=True)
class KeyRanges:
    """Key ranges [low, high) of a table (a None bound: unbounded), the key compared column by column
    as `kinds` says (int, or text by its bytes): the part of a table that a truncate empties when only
    that part of the target predates it (replicator.apply.gate, a resumed snapshot's chunks)."""

    key: tuple[str, ...]
    kinds: tuple[KeyKind, ...]
    spans: tuple[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None], ...]


@dataclass(slots=True)
class ChangeEvent:
    """A row change: ops c (insert), r (snapshot read), u (update), d (delete), t (truncate)."""

    ref: RecordRef
    op: str
    table: TableId
    key: Row | None  # primary-key columns; None for a table without a primary key, and for `t`
    before: Row | None  # for PostgreSQL DEFAULT identity deletes, only the key columns are real
    after: Row | None
    # Columns whose `after` value was a TOAST "unchanged" placeholder. They are NOT in `after`.
    unavailable: frozenset[str]
    position: SourcePosition | None  # None for snapshot reads (all rows share one position)
    source_ts_ms: int  # when the source committed the change
    kafka_ts_ms: int  # when the record reached Kafka (record timestamp)
    txid: int | None = None  # PostgreSQL transaction id (32-bit, as Debezium sends it)
    old_key: Row | None = None  # from the `__debezium.oldkey` header of a primary-key change's `c`
    new_key: Row | None = None  # from the `__debezium.newkey` header of a primary-key change's `d`
    snapshot: bool = False
    # Field names of the value schema in order: a change means the source schema changed.
    columns: tuple[str, ...] = ()
    # Per column: (Connect type, logical name or None, parameters) for schema evolution.
    column_types: dict[str, ColumnType] = field(default_factory=dict)
    # A truncate that empties only these key ranges (set by the snapshot filter; None: the whole table).
    ranges: KeyRanges | None = None


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A column as the event schema describes it, enough to create it on the target."""

    connect_type: str  # int8 int16 int32 int64 float32 float64 boolean string bytes array map struct
    logical: str | None  # e.g. io.debezium.time.MicroTimestamp, org.apache.kafka.connect.data.Decimal
    optional: bool
    parameters: tuple[tuple[str, str], ...] = ()  # includes __debezium.source.column.* when propagated
    item: ColumnType | None = None  # array item type
    # The column default from the schema, decoded (None: none). Debezium sends a fake 0 for serial
    # keys and 1970-01-01 for MySQL TIMESTAMP NOT NULL; it is only used to add a new column.
    default: Any = None

    def parameter(self, name: str) -> str | None:
        for key, value in self.parameters:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The null-value record after a delete: carries nothing to apply."""

    ref: RecordRef
    kafka_ts_ms: int
    new_key: Row | None = None  # a primary-key change's tombstone repeats the newkey header


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Debezium's liveness record: the source connector was alive and caught up at `source_ts_ms`."""

    ref: RecordRef
    source_ts_ms: int
    kafka_ts_ms: int


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """A PostgreSQL `pg_logical_emit_message` (op `m`)."""

    ref: RecordRef
    prefix: str
    content: bytes
    position: SourcePosition | None
    source_ts_ms: int
    kafka_ts_ms: int
    txid: int | None


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """A record of the MySQL connector's schema-change topic: recorded, never replayed."""

    ref: RecordRef
    database: str
    ddl: str
    tables: tuple[str, ...]  # tableChanges[].id, e.g. '"shop"."orders"'
    change_types: tuple[str, ...]  # CREATE / ALTER / DROP per table change
    position: SourcePosition | None
    source_ts_ms: int
    kafka_ts_ms: int


@dataclass(frozen=True, slots=True)
class TransactionMarker:
    """A BEGIN/END record of a `<prefix>.transaction` topic (PostgreSQL transaction metadata)."""

    ref: RecordRef
    status: str
    txid: str
    kafka_ts_ms: int


Record = ChangeEvent | Tombstone | Heartbeat | LogicalMessage | SchemaChange | TransactionMarker
