"""PostgreSQL as the apply target: row statements, value binding, and our state tables.

Set-based writes go through a session temporary table per target table: `COPY` the batch's rows in,
then one statement merges them (`INSERT … SELECT … ON CONFLICT (key) DO UPDATE`, `UPDATE … FROM`,
`DELETE … USING`). `ON CONFLICT (key)` arbitrates on the primary key only: a collision on any other
unique index raises instead of touching another row, and the applier then replays the batch one
event at a time in source order.

The apply session runs with `session_replication_role = replica` (foreign keys and user triggers do
not fire, so tables may arrive in any order) and `TimeZone = UTC` (naive timestamps are UTC wall
clock, as Debezium sends them). Identifiers are quoted by `sql.Identifier`; values are parameters
or COPY data, never SQL text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg import sql

from replicator.config import Endpoint
from replicator.dialects.base import (
    DeadLetter,
    Gate,
    OffsetUpdate,
    Partition,
    StoredOffset,
    TargetColumn,
    TargetTable,
)
from replicator.dialects.postgres import connect
from replicator.dialects.postgres_snapshot import range_condition
from replicator.errors import TargetError
from replicator.events import ColumnType, Geometry, KeyRanges, Row, SourcePosition
from replicator.model import TableId

Converter = Callable[[Any], Any]
SIMPLE_DEFAULTS = (bool, int, float, Decimal, str)

_DESCRIBE = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       COALESCE((SELECT k.ord FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) WHERE k.attnum = a.attnum), 0)
FROM pg_attribute a
LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum
"""


def _state_ddl(schema: str) -> list[sql.Composed]:
    s = sql.Identifier(schema)
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.apply_offsets (topic text NOT NULL, kafka_partition integer NOT NULL,"
            " next_offset bigint, position_major bigint, position_minor bigint, position_row bigint,"
            " source_ts_ms bigint, applied_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (topic, kafka_partition))"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.dead_letters (id bigserial PRIMARY KEY, topic text NOT NULL,"
            " kafka_partition integer NOT NULL, kafka_offset bigint NOT NULL, source_table text, event_key text,"
            " reason text NOT NULL, record bytea, recorded_at timestamptz NOT NULL DEFAULT now())"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.schema_changes (topic text NOT NULL, kafka_offset bigint NOT NULL,"
            " database_name text, ddl text NOT NULL, source_ts_ms bigint,"
            " recorded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (topic, kafka_offset))"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.table_gates (source_table text PRIMARY KEY, state text NOT NULL"
            " CHECK (state IN ('hold', 'filter')), filter text, updated_at timestamptz NOT NULL DEFAULT now())"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.snapshot_tables (source_table text PRIMARY KEY, target_table text NOT NULL,"
            " plan text NOT NULL, state text NOT NULL CHECK (state IN ('copying', 'copied', 'released')),"
            " source_rows bigint, target_rows bigint, sequences text,"
            " started_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz)"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.snapshot_chunks (source_table text NOT NULL, chunk integer NOT NULL,"
            " rows bigint NOT NULL, bytes bigint NOT NULL, position text NOT NULL,"
            " copied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (source_table, chunk))"
        ).format(s),
        sql.SQL("ALTER TABLE {}.snapshot_tables ADD COLUMN IF NOT EXISTS deferred_key text").format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.reconcile_marks (source_table text NOT NULL, generation bigint NOT NULL,"
            " bucket integer NOT NULL, max_offset bigint NOT NULL, PRIMARY KEY (source_table, generation, bucket))"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.reconcile_passes (source_table text NOT NULL, generation bigint NOT NULL,"
            " pass text NOT NULL, finished_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (source_table, generation))"
        ).format(s),
    ]


def _time_text(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        if value < dt.timedelta(0) or value > dt.timedelta(hours=24):
            raise ValueError(f"time of day out of range: {value}")
        micros = value // dt.timedelta(microseconds=1)
        seconds, micro = divmod(micros, 1_000_000)
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{micro:06d}"
    return value


def _point_text(value: Any) -> Any:
    if isinstance(value, Geometry):
        if value.x is None or value.y is None:
            raise ValueError("a geometry that is not a point cannot go into a point column")
        return f"({value.x!r},{value.y!r})"
    return value


def _json_text(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


def _hstore_text(value: Any) -> Any:
    mapping = orjson.loads(value) if isinstance(value, str) else value
    if not isinstance(mapping, dict):
        return value

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return ", ".join(f"{quote(k)}=>{'NULL' if v is None else quote(str(v))}" for k, v in mapping.items())


def _bool_value(value: Any) -> Any:
    if isinstance(value, int | str) and not isinstance(value, bool):
        return value not in (0, "0")
    return value


def _bit_text(value: Any) -> Any:
    if isinstance(value, bool):  # Debezium sends bit(1) as a boolean
        return "1" if value else "0"
    return value


def _set_text(value: Any) -> Any:
    return ",".join(value) if isinstance(value, list) else value


def _geometry_hex(value: Any) -> Any:
    if isinstance(value, Geometry):
        return value.wkb.hex() if value.srid is None else f"SRID={value.srid};{value.wkb.hex()}"
    return value


def converter_for(type_name: str) -> Converter | None:
    """How a decoded value is bound to a column of this PostgreSQL type (None: as it is)."""
    base = type_name.split("(", maxsplit=1)[0].strip()
    if type_name.endswith("[]"):
        return None
    if base in ("time without time zone", "time"):
        return _time_text
    if base == "boolean":
        return _bool_value
    if base in ("bit", "bit varying"):
        return _bit_text
    if base == "point":
        return _point_text
    if base in ("json", "jsonb"):
        return _json_text
    if base == "hstore":
        return _hstore_text
    if base in ("geometry", "geography"):
        return _geometry_hex
    if base in ("text", "character varying", "character"):
        return _set_text
    return None


def column_type_sql(column_type: ColumnType) -> str:
    """The PostgreSQL type for a column first seen in an event schema (schema evolution)."""
    source_type = (column_type.parameter("__debezium.source.column.type") or "").upper()
    length = column_type.parameter("__debezium.source.column.length")
    scale = column_type.parameter("scale") or column_type.parameter("__debezium.source.column.scale")
    logical = column_type.logical or ""
    by_logical = {
        "io.debezium.time.Date": "date", "org.apache.kafka.connect.data.Date": "date",
        "io.debezium.time.Time": "time(3)", "io.debezium.time.MicroTime": "time(6)",
        "io.debezium.time.NanoTime": "time(6)", "org.apache.kafka.connect.data.Time": "time(3)",
        "io.debezium.time.Timestamp": "timestamp(3)", "org.apache.kafka.connect.data.Timestamp": "timestamp(3)",
        "io.debezium.time.MicroTimestamp": "timestamp(6)", "io.debezium.time.NanoTimestamp": "timestamp(6)",
        "io.debezium.time.ZonedTimestamp": "timestamptz", "io.debezium.time.ZonedTime": "timetz",
        "io.debezium.time.MicroDuration": "interval", "io.debezium.time.Interval": "interval",
        "io.debezium.time.Year": "smallint", "io.debezium.data.Uuid": "uuid", "io.debezium.data.Json": "jsonb",
        "io.debezium.data.Xml": "xml", "io.debezium.data.VariableScaleDecimal": "numeric",
        "io.debezium.data.EnumSet": "text", "io.debezium.data.Enum": "text",
        "io.debezium.data.geometry.Point": "point", "io.debezium.data.Bits": "bit varying",
    }
    if logical == "org.apache.kafka.connect.data.Decimal":
        precision = column_type.parameter("connect.decimal.precision")
        return f"numeric({precision},{scale})" if precision and scale is not None else "numeric"
    if logical in by_logical:
        return by_logical[logical]
    if source_type.startswith(("VARCHAR", "CHARACTER VARYING")) and length:
        return f"varchar({int(length)})"
    by_connect = {
        "int8": "smallint", "int16": "smallint", "int32": "integer", "int64": "bigint",
        "float32": "real", "float64": "double precision", "boolean": "boolean", "string": "text",
        "bytes": "bytea", "map": "jsonb", "struct": "jsonb",
    }
    if column_type.connect_type == "array" and column_type.item is not None:
        return column_type_sql(column_type.item) + "[]"
    if "UNSIGNED" in source_type and column_type.connect_type == "int64":
        return "numeric(20)"
    return by_connect.get(column_type.connect_type, "text")


def writing_session(endpoint: Endpoint) -> psycopg.Connection[Any]:
    """A target connection as the applier and the copier write through it: autocommit (transactions
    are explicit), `session_replication_role = replica` (foreign keys and user triggers do not fire
    for rows that arrive in any table order), time zone UTC."""
    conn: psycopg.Connection[Any] = connect(endpoint, "target", autocommit=True)
    try:
        conn.execute("SET session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        conn.close()
        raise TargetError(
            f"target user {endpoint.user!r} may not set session_replication_role",
            hint="grant it superuser, or on PostgreSQL 15+ `GRANT SET ON PARAMETER session_replication_role`",
        ) from None
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


class PostgresTargetWriter:
    """The applier's connection to a PostgreSQL target (see the module docstring)."""

    def __init__(self, endpoint: Endpoint, state_schema: str) -> None:
        self._conn = writing_session(endpoint)
        self._state = state_schema
        self._temp: dict[TableId, tuple[TargetTable, sql.Identifier]] = {}
        self._converters: dict[TableId, dict[str, Converter | None]] = {}
        self._types: dict[TableId, dict[str, str]] = {}
        self._in_txn = False

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def begin(self) -> None:
        self._conn.execute("BEGIN")
        self._in_txn = True

    def commit(self) -> None:
        self._conn.execute("COMMIT")
        self._in_txn = False

    def rollback(self) -> None:
        self._temp.clear()  # staging tables created in the transaction are gone
        if not self._conn.closed:
            self._conn.execute("ROLLBACK")
        self._in_txn = False

    def savepoint(self, name: str) -> None:
        self._conn.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(name)))

    def rollback_to_savepoint(self, name: str) -> None:
        self._temp.clear()  # a staging table created after the savepoint is gone; re-created on use
        self._conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(name)))

    def release_savepoint(self, name: str) -> None:
        self._conn.execute(sql.SQL("RELEASE SAVEPOINT {}").format(sql.Identifier(name)))

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected
                      | psycopg.errors.LockNotAvailable | psycopg.errors.AdminShutdown
                      | psycopg.errors.CannotConnectNow | psycopg.errors.QueryCanceled):
            return True
        return isinstance(exc, psycopg.OperationalError) or self._conn.closed or self._conn.broken

    def describe_error(self, exc: BaseException) -> str:
        if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
            detail = f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""
            return f"{exc.diag.message_primary}{detail}"
        return " ".join(str(exc).split()) or type(exc).__name__

    # -- catalog and DDL -----------------------------------------------------------------------
    def ensure_state(self) -> None:
        # apply, snapshot and reconcile may start at once: CREATE … IF NOT EXISTS run by two sessions
        # together fails in one of them (DuplicateTable), so they take turns under an advisory lock
        # named for the state schema; each statement still commits on its own (no table lock is held
        # across statements)
        key = f"replicator state {self._state}"
        self._conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        try:
            for statement in _state_ddl(self._state):
                self._conn.execute(statement)
        finally:
            self._conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))

    def describe(self, table: TableId) -> TargetTable | None:
        regclass = sql.Identifier(table.schema, table.name).as_string(self._conn)
        exists = self._conn.execute("SELECT to_regclass(%s)", (regclass,)).fetchone()
        if exists is None or exists[0] is None:
            return None
        rows = self._conn.execute(_DESCRIBE, (regclass,)).fetchall()
        columns = tuple(TargetColumn(str(name), str(kind), bool(nullable)) for name, kind, nullable, _ in rows)
        key = tuple(str(name) for name, _, _, pos in sorted(rows, key=lambda r: int(r[3])) if int(pos) > 0)
        described = TargetTable(table, columns, key)
        self._types[table] = {c.name: c.type_name for c in columns}
        self._converters[table] = {c.name: converter_for(c.type_name) for c in columns}
        self._temp.pop(table, None)
        return described

    def add_column(self, table: TableId, column: str, column_type: ColumnType) -> str:
        type_sql = column_type_sql(column_type)
        default: sql.Composable = sql.SQL("")
        if isinstance(column_type.default, SIMPLE_DEFAULTS):  # rows that exist get it, as on the source
            default = sql.SQL(" DEFAULT {}::{}").format(sql.Literal(column_type.default), sql.SQL(type_sql))
        self._conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}{}").format(
                sql.Identifier(table.schema, table.name), sql.Identifier(column), sql.SQL(type_sql), default
            )
        )
        return type_sql

    # -- state ---------------------------------------------------------------------------------
    def _offsets_table(self) -> sql.Composed:
        return sql.SQL("{}.apply_offsets").format(sql.Identifier(self._state))

    def read_offsets(self, partitions: list[Partition]) -> dict[Partition, StoredOffset]:
        with self._conn.transaction():
            for topic, partition in sorted(partitions):
                self._conn.execute(
                    sql.SQL("INSERT INTO {} (topic, kafka_partition) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
                        self._offsets_table()
                    ),
                    (topic, partition),
                )
            return self._select_offsets(partitions, lock=False)

    def lock_offsets(self, partitions: list[Partition]) -> dict[Partition, StoredOffset]:
        return self._select_offsets(partitions, lock=True)

    def _select_offsets(self, partitions: list[Partition], *, lock: bool) -> dict[Partition, StoredOffset]:
        if not partitions:
            return {}
        topics = [t for t, _ in partitions]
        numbers = [p for _, p in partitions]
        query = sql.SQL(
            "SELECT o.topic, o.kafka_partition, next_offset, position_major, position_minor, position_row"
            " FROM {} o JOIN unnest(%s::text[], %s::int[]) AS w(topic, kafka_partition)"
            " USING (topic, kafka_partition) ORDER BY o.topic, o.kafka_partition"
        ).format(self._offsets_table())
        if lock:
            query = sql.Composed([query, sql.SQL(" FOR UPDATE OF o")])
        result: dict[Partition, StoredOffset] = {}
        for topic, partition, next_offset, major, minor, row in self._conn.execute(query, (topics, numbers)):
            position = None if major is None else SourcePosition(int(major), int(minor), int(row))
            result[(str(topic), int(partition))] = StoredOffset(
                None if next_offset is None else int(next_offset), position
            )
        return result

    def save_offsets(self, updates: list[OffsetUpdate]) -> None:
        if not updates:
            return
        query = sql.SQL(
            "UPDATE {} SET next_offset = %s, position_major = COALESCE(%s, position_major),"
            " position_minor = COALESCE(%s, position_minor), position_row = COALESCE(%s, position_row),"
            " source_ts_ms = COALESCE(%s, source_ts_ms), applied_at = now()"
            " WHERE topic = %s AND kafka_partition = %s"
        ).format(self._offsets_table())
        params = []
        for u in updates:
            p = u.position
            params.append((u.next_offset, p and p.major, p and p.minor, p and p.row, u.source_ts_ms,
                           u.topic, u.partition))
        with self._conn.cursor() as cur:
            cur.executemany(query, params)

    def record_dead_letter(self, letter: DeadLetter) -> None:
        self._conn.execute(
            sql.SQL(
                "INSERT INTO {}.dead_letters (topic, kafka_partition, kafka_offset, source_table, event_key,"
                " reason, record) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            ).format(sql.Identifier(self._state)),
            (letter.topic, letter.partition, letter.offset, letter.table, letter.key, letter.reason, letter.record),
        )

    def record_schema_change(self, topic: str, offset: int, database: str, ddl: str, source_ts_ms: int) -> None:
        self._conn.execute(
            sql.SQL(
                "INSERT INTO {}.schema_changes (topic, kafka_offset, database_name, ddl, source_ts_ms)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
            ).format(sql.Identifier(self._state)),
            (topic, offset, database, ddl, source_ts_ms),
        )

    def record_marks(self, marks: list[tuple[str, int, int, int]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(sql.SQL(
                "INSERT INTO {0}.reconcile_marks AS m (source_table, generation, bucket, max_offset)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (source_table, generation, bucket)"
                " DO UPDATE SET max_offset = greatest(m.max_offset, EXCLUDED.max_offset)"
            ).format(sql.Identifier(self._state)), sorted(marks))

    def read_marks(self, table: str) -> dict[tuple[int, int], int]:
        rows = self._conn.execute(sql.SQL(
            "SELECT generation, bucket, max_offset FROM {}.reconcile_marks WHERE source_table = %s"
        ).format(sql.Identifier(self._state)), (table,)).fetchall()
        return {(int(g), int(b)): int(o) for g, b, o in rows}

    def save_pass(self, table: str, generation: int, text: str, keep: int | None) -> None:
        state = sql.Identifier(self._state)
        with self._conn.transaction():
            self._conn.execute(sql.SQL("INSERT INTO {}.reconcile_passes (source_table, generation, pass)"
                                       " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING").format(state),
                               (table, generation, text))
            if keep is not None:
                for name in ("reconcile_passes", "reconcile_marks"):
                    self._conn.execute(sql.SQL("DELETE FROM {}.{} WHERE source_table = %s AND generation < %s")
                                       .format(state, sql.Identifier(name)), (table, keep))

    def read_pass(self, table: str) -> tuple[int, str, float] | None:
        row = self._conn.execute(sql.SQL(
            "SELECT generation, pass, extract(epoch FROM finished_at)::float8 FROM {}.reconcile_passes"
            " WHERE source_table = %s ORDER BY generation DESC LIMIT 1").format(sql.Identifier(self._state)),
            (table,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), float(row[2]))

    def read_gates(self, *, lock: bool = False) -> dict[str, Gate]:
        query = sql.SQL("SELECT source_table, state, filter FROM {}.table_gates{}").format(
            sql.Identifier(self._state), sql.SQL(" FOR SHARE" if lock else ""))
        rows = self._conn.execute(query).fetchall()
        return {str(t): Gate(str(t), str(s), None if f is None else str(f)) for t, s, f in rows}

    def write_gate(self, table: str, state: str | None, filter_text: str | None, partitions: list[Partition]) -> None:
        self.read_offsets(partitions)  # the rows exist, so that the lock below locks them
        gates = sql.SQL("{}.table_gates").format(sql.Identifier(self._state))
        with self._conn.transaction():
            self._select_offsets(partitions, lock=True)  # serialised with every batch of these partitions
            if state is None:
                self._conn.execute(sql.SQL("DELETE FROM {} WHERE source_table = %s").format(gates), (table,))
            else:
                self._conn.execute(
                    sql.SQL("INSERT INTO {} (source_table, state, filter) VALUES (%s, %s, %s) ON CONFLICT"
                            " (source_table) DO UPDATE SET state = EXCLUDED.state, filter = EXCLUDED.filter,"
                            " updated_at = now()").format(gates), (table, state, filter_text))

    # -- rows ----------------------------------------------------------------------------------
    def _bind(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        converters = self._converters[table.table]
        active = [(i, converters[c]) for i, c in enumerate(columns) if converters.get(c) is not None]
        if not active:
            return rows
        bound = []
        for row in rows:
            values = list(row)
            for i, convert in active:
                if values[i] is not None and convert is not None:
                    values[i] = convert(values[i])
            bound.append(tuple(values))
        return bound

    def _temp_table(self, table: TargetTable) -> sql.Identifier:
        cached = self._temp.get(table.table)
        if cached is not None and cached[0] == table:
            return cached[1]
        name = sql.Identifier(f"replicator_stage_{len(self._temp)}_{abs(hash(table.table)) % 10**8}")
        self._conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        # CREATE TABLE AS copies column types but not NOT NULL: partial rows leave columns NULL.
        self._conn.execute(
            sql.SQL("CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
                name, sql.SQL(", ").join(map(sql.Identifier, table.names)),
                sql.Identifier(table.table.schema, table.table.name),
            )
        )
        self._temp[table.table] = (table, name)
        return name

    def _stage(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> sql.Identifier:
        temp = self._temp_table(table)
        self._conn.execute(sql.SQL("TRUNCATE {}").format(temp))
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(temp, sql.SQL(", ").join(map(sql.Identifier, columns)))
        with self._conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for row in self._bind(table, columns, rows):
                copy.write_row(row)
        return temp

    def _target(self, table: TargetTable) -> sql.Identifier:
        return sql.Identifier(table.table.schema, table.table.name)

    def _key_match(self, table: TargetTable, left: str, right: sql.Identifier) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("{}.{} = {}.{}").format(sql.Identifier(left), sql.Identifier(k), right, sql.Identifier(k))
            for k in table.key
        )

    def upsert(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        temp = self._stage(table, columns, rows)
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        others = [c for c in columns if c not in table.key]
        action = (
            sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others)
            )
            if others
            else sql.SQL("DO NOTHING")
        )
        self._conn.execute(
            sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                self._target(table), cols, cols, temp, sql.SQL(", ").join(map(sql.Identifier, table.key)), action
            )
        )

    def update(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        temp = self._stage(table, columns, rows)
        others = [c for c in columns if c not in table.key]
        if not others:
            others = list(table.key[:1])
        cur = self._conn.execute(
            sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE {}").format(
                self._target(table),
                sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in others),
                temp,
                self._key_match(table, "t", sql.Identifier("s")),
            )
        )
        return cur.rowcount

    def delete(self, table: TargetTable, keys: list[tuple[Any, ...]]) -> None:
        if not keys:
            return
        temp = self._stage(table, table.key, keys)
        self._conn.execute(
            sql.SQL("DELETE FROM {} AS t USING {} AS s WHERE {}").format(
                self._target(table), temp, self._key_match(table, "t", sql.Identifier("s"))
            )
        )

    def _typed(self, table: TargetTable, column: str) -> sql.Composable:
        return sql.SQL("%s::{}").format(sql.SQL(self._types[table.table][column]))

    def _convert_row(self, table: TargetTable, row: Row) -> tuple[Any, ...]:
        return self._bind(table, tuple(row), [tuple(row.values())])[0]

    def change_key(self, table: TargetTable, old_key: tuple[Any, ...], columns: tuple[str, ...],
                   values: tuple[Any, ...]) -> int:
        bound = self._bind(table, columns, [values])[0]
        old = self._bind(table, table.key, [old_key])[0]
        cur = self._conn.execute(
            sql.SQL("UPDATE {} SET {} WHERE {}").format(
                self._target(table),
                sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(c), self._typed(table, c)) for c in columns
                ),
                sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier(k), self._typed(table, k))
                                      for k in table.key),
            ),
            (*bound, *old),
        )
        return cur.rowcount

    def insert_rows(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(self._target(table), cols)
        with self._conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for row in self._bind(table, columns, rows):
                copy.write_row(row)

    def _match_one(self, table: TargetTable, old: Row) -> tuple[sql.Composable, tuple[Any, ...]]:
        """A condition selecting one row equal to `old` (NULL-safe, compared as the column's type;
        json/xml/point have no equality operator, so those compare as text)."""
        parts = []
        for column in old:
            type_name = self._types[table.table][column]
            if type_name.split("(")[0] in ("json", "xml", "point", "polygon", "line", "box", "circle", "path"):
                parts.append(sql.SQL("{}::text IS NOT DISTINCT FROM (%s::{})::text").format(
                    sql.Identifier(column), sql.SQL(type_name)))
            else:
                parts.append(sql.SQL("{} IS NOT DISTINCT FROM {}").format(sql.Identifier(column),
                                                                          self._typed(table, column)))
        condition = sql.SQL("ctid = (SELECT ctid FROM {} WHERE {} LIMIT 1)").format(
            self._target(table), sql.SQL(" AND ").join(parts)
        )
        return condition, self._convert_row(table, old)

    def update_exact(self, table: TargetTable, old: Row, new: Row) -> int:
        condition, params = self._match_one(table, old)
        values = self._convert_row(table, new)
        cur = self._conn.execute(
            sql.SQL("UPDATE {} SET {} WHERE {}").format(
                self._target(table),
                sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), self._typed(table, c)) for c in new),
                condition,
            ),
            (*values, *params),
        )
        return cur.rowcount

    def delete_exact(self, table: TargetTable, old: Row) -> int:
        condition, params = self._match_one(table, old)
        cur = self._conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(self._target(table), condition), params)
        return cur.rowcount

    def delete_all(self, table: TargetTable) -> None:
        self._conn.execute(sql.SQL("DELETE FROM {}").format(self._target(table)))

    def delete_ranges(self, table: TargetTable, ranges: KeyRanges) -> int:
        deleted = 0
        for low, high in ranges.spans:
            cursor = self._conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(
                self._target(table), range_condition(ranges.key, ranges.kinds, low, high)))
            deleted += max(cursor.rowcount, 0)
        return deleted
