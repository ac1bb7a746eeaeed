"""MySQL 8 / MariaDB 10.11 as the apply target: row statements, value binding, and our state tables.

Set-based writes stage the batch in a session TEMPORARY table per target table (its columns, a
PRIMARY KEY on the key only; CREATE/DROP TEMPORARY TABLE and LOAD DATA do not commit implicitly;
emptied by dropping and re-creating it, as TRUNCATE would commit and DELETE is 10x slower), then
merge it on the primary key alone:
    UPDATE target t JOIN stage s ON t.pk = s.pk SET t.c = s.c, …
    INSERT INTO target (cols) SELECT cols FROM stage s WHERE NOT EXISTS (… t.pk = s.pk)
Why the upsert is safe: the UPDATE reaches only the row whose primary key equals a staged key and the
INSERT adds only rows whose key is absent, so a collision on a secondary UNIQUE key raises ER_DUP_ENTRY
(1062) instead of touching the other row; the applier then replays one event at a time. `INSERT … ON
DUPLICATE KEY UPDATE` fires on ANY unique key and would update the wrong row, and `REPLACE` would
delete it: REPLACE is never used, and ON DUPLICATE KEY UPDATE (one statement instead of two, about
half the server time) only for a table whose primary key is its only unique key, as read from
information_schema when the table is described (at start, after a reconnect, after a column was
added): there, "a duplicate key" can only mean "the same primary key". A unique key added to the
target while apply runs is seen after the next reconnect; add such keys before, or at cutover.
Deletes of a single-column key need no stage: `DELETE … WHERE pk IN (…)`, 1000 keys per statement,
each compared as a primary-key change compares it.

Staging: `LOAD DATA LOCAL INFILE` of a tab-separated file (in /dev/shm) when it is provably exact,
else the strict multi-row INSERT. LOCAL turns strict-mode errors into warnings (a value truncated,
a row skipped), so a load is kept only if it reports no warning at all (notes included) and exactly
as many rows as were sent; otherwise the stage is emptied and the same rows go through the INSERT,
which raises the error the value deserves. The file's fields are what the INSERT would bind, written
as the INSERT's literals would be (CHARACTER SET binary: no conversion, so only tables whose text
columns are utf8mb4 take this path; BIT values as big-endian bytes, since LOAD DATA stores a BIT
field's bytes, not its digits); a value of any other type sends the batch to the INSERT. The file
is written column by column (`column_fields`: one comprehension where a column's values share one
type, otherwise value by value; the same bytes either way).

The session: autocommit with explicit BEGIN/COMMIT; `time_zone = '+00:00'` (naive datetimes are UTC
wall clock, as Debezium sends them); `foreign_key_checks = 0` (tables arrive in any order); strict
`sql_mode` (no silent truncation; NO_AUTO_VALUE_ON_ZERO keeps a replicated 0); CLIENT.FOUND_ROWS (an
UPDATE counts rows matched, not changed). Identifiers go through `quote_identifier` with `%` doubled
(every statement passes pymysql's %-formatting); values are parameters, never SQL text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import math
import os
import re
import struct
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pymysql
from pymysql.constants import CLIENT

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
from replicator.dialects.mysql import connect, quote_identifier
from replicator.dialects.mysql_snapshot import range_condition
from replicator.errors import TargetError
from replicator.events import ColumnType, Geometry, KeyRanges, Row, SourcePosition
from replicator.model import TableId

Converter = Callable[[Any], Any]
Encoder = Callable[[Any], bytes]

log = logging.getLogger(__name__)

_SESSION = (
    "SET SESSION time_zone = '+00:00', SESSION foreign_key_checks = 0,"
    " SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'"
)
# Lost connection (2003/2006/2013/2055), killed or shut down (1927/1053), idle timeout (4031),
# deadlock (1213), lock wait timeout (1205), MariaDB snapshot-isolation conflict (1020).
_TRANSIENT = frozenset({1020, 1053, 1205, 1213, 1927, 2003, 2006, 2013, 2055, 4031})
ER_DUP_FIELDNAME = 1060
_MAX_TIME = dt.timedelta(hours=838, minutes=59, seconds=59)  # MySQL's TIME range, either sign
_TEXT = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
# LOAD DATA LOCAL refused: by the server (1148 MySQL 5.7/MariaDB, 3948 MySQL 8, 4166 MariaDB 10.6+).
_LOAD_REFUSED = frozenset({1148, 3948, 4166})
# tmpfs if there is one (None: tempfile's default directory); tempfile creates the file O_EXCL, mode 0600.
_SPOOL = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# The staging file holds bytes in no character set: text columns in another one would get utf8mb4
# bytes unconverted. Binary strings and non-text columns have none (NULL in information_schema).
_LOADABLE_CHARSETS = frozenset({"utf8mb4", "binary"})

# Generated columns are not writable: MariaDB leaves GENERATION_EXPRESSION NULL for the others,
# MySQL ''. (EXTRA LIKE '%GENERATED%' would also drop MySQL's DEFAULT_GENERATED columns.)
_COLUMNS = """
SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND COALESCE(GENERATION_EXPRESSION, '') = ''
ORDER BY ORDINAL_POSITION
"""
_PRIMARY_KEY = """
SELECT COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX
"""
_OTHER_UNIQUE = """
SELECT COUNT(*) FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY'
"""
_DELETE_CHUNK = 1000  # keys per DELETE … IN (…)


def _ident(name: str) -> str:
    return quote_identifier(name).replace("%", "%%")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# {s}: our database. Kafka topic names are ASCII, and part of keys: compared byte for byte. The
# timestamps are UTC (the session time zone).
_STATE_DDL = (
    "CREATE DATABASE IF NOT EXISTS {s} CHARACTER SET utf8mb4",
    "CREATE TABLE IF NOT EXISTS {s}.apply_offsets ({topic}, kafka_partition INT NOT NULL, next_offset BIGINT,"
    " position_major BIGINT, position_minor BIGINT, position_row BIGINT, source_ts_ms BIGINT,"
    " applied_at {now}, PRIMARY KEY (topic, kafka_partition)){tail}",
    "CREATE TABLE IF NOT EXISTS {s}.dead_letters (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, {topic},"
    " kafka_partition INT NOT NULL, kafka_offset BIGINT NOT NULL, source_table TEXT, event_key LONGTEXT,"
    " reason LONGTEXT NOT NULL, record LONGBLOB, recorded_at {now}){tail}",
    "CREATE TABLE IF NOT EXISTS {s}.schema_changes ({topic}, kafka_offset BIGINT NOT NULL, database_name TEXT,"
    " ddl LONGTEXT NOT NULL, source_ts_ms BIGINT, recorded_at {now}, PRIMARY KEY (topic, kafka_offset)){tail}",
    "CREATE TABLE IF NOT EXISTS {s}.table_gates (source_table VARCHAR(255) COLLATE utf8mb4_bin PRIMARY KEY,"
    " state VARCHAR(16) NOT NULL CHECK (state IN ('hold', 'filter')), filter LONGTEXT, updated_at {now}){tail}",
    "CREATE TABLE IF NOT EXISTS {s}.snapshot_tables (source_table VARCHAR(255) COLLATE utf8mb4_bin PRIMARY KEY,"
    " target_table TEXT NOT NULL, plan LONGTEXT NOT NULL, state VARCHAR(16) NOT NULL"
    " CHECK (state IN ('copying', 'copied', 'released')), source_rows BIGINT, target_rows BIGINT, sequences LONGTEXT,"
    " started_at {now}, finished_at DATETIME(6)){tail}",
    "CREATE TABLE IF NOT EXISTS {s}.snapshot_chunks (source_table VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,"
    " chunk INT NOT NULL, `rows` BIGINT NOT NULL, bytes BIGINT NOT NULL, position LONGTEXT NOT NULL,"
    " copied_at {now}, PRIMARY KEY (source_table, chunk)){tail}",
    "CREATE TABLE IF NOT EXISTS {s}.reconcile_marks (source_table VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,"
    " generation BIGINT NOT NULL, bucket INT NOT NULL, max_offset BIGINT NOT NULL,"
    " PRIMARY KEY (source_table, generation, bucket)){tail}",
    "CREATE TABLE IF NOT EXISTS {s}.reconcile_passes (source_table VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,"
    " generation BIGINT NOT NULL, pass LONGTEXT NOT NULL, finished_at {now},"
    " PRIMARY KEY (source_table, generation)){tail}",
)
_STATE_PARTS = {"topic": "topic VARCHAR(249) CHARACTER SET ascii COLLATE ascii_bin NOT NULL",
                "now": "DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)",
                "tail": " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"}


# -- value binding ---------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """What every column needs, whatever its type."""
    kind = type(value)
    if kind is int or kind is str or kind is bool or kind is bytes:
        return value
    if kind is float:
        if not math.isfinite(value):  # MySQL has no NaN or infinity: the event fails, never NULL
            raise ValueError(f"MySQL cannot store the float {value!r}")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"MySQL cannot store the decimal {value}")
        return value  # pymysql writes it as an exact literal (format 'f'), never '1E-9' (a double)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is None else value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, dt.timedelta):
        raise ValueError(f"a duration ({value}) can only go into a TIME column")
    if isinstance(value, dt.time):
        if value.utcoffset():
            value = dt.datetime.combine(dt.date(2000, 1, 1), value).astimezone(dt.UTC).time()
        return value.strftime("%H:%M:%S.%f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Geometry):
        # MySQL's own geometry value: 4-byte little-endian SRID, then WKB. It needs no ST_GeomFromWKB()
        # placeholder (multi-row INSERT batching still applies) and keeps the stored axis order (MySQL 8's
        # ST_GeomFromWKB swaps lat/long for geographic SRIDs; Debezium sends MySQL's stored order).
        return struct.pack("<I", value.srid or 0) + value.wkb
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


def _duration(value: Any) -> Any:
    if not isinstance(value, dt.timedelta):
        return _plain(value)
    if abs(value) > _MAX_TIME:
        raise ValueError(f"{value} is outside MySQL's TIME range (±838:59:59)")
    seconds, micro = divmod(abs(value) // dt.timedelta(microseconds=1), 1_000_000)
    sign = "-" if value < dt.timedelta(0) else ""
    return f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{micro:06d}"


def _bits(value: Any) -> Any:
    if isinstance(value, str):  # Debezium Bits, decoded to '0101…'
        return int(value, 2) if value else 0
    return _plain(value)


def _temporal(value: Any) -> Any:
    if isinstance(value, str):  # 'infinity', '-infinity' and BC dates stay text after decoding
        raise ValueError(f"{value!r} is not a date or time MySQL can store")
    return _plain(value)


def _delimited(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)  # EnumSet members, as a SET column takes them
    return _plain(value)


def _base(type_name: str) -> str:
    return type_name.split("(", maxsplit=1)[0].split(" ", maxsplit=1)[0]


# -- the LOAD DATA file ------------------------------------------------------------------------------
# FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n': NULL is \N, and a field's
# backslash, tab, newline, carriage return and NUL are escaped (\\, \t, \n, \r, \0). No enclosure,
# so a field reading NULL is the string 'NULL'.
class _UnloadableError(Exception):
    """A bound value the file cannot carry exactly: the rows go through the INSERT instead."""


_SPECIAL = re.compile(rb"[\\\t\n\r\x00]")
_ESCAPED = {b"\\": b"\\\\", b"\t": b"\\t", b"\n": b"\\n", b"\r": b"\\r", b"\x00": b"\\0"}
_NULL = b"\\N"


def _escape(data: bytes) -> bytes:
    return _SPECIAL.sub(lambda m: _ESCAPED[m.group()], data) if _SPECIAL.search(data) else data


def _field(value: Any) -> bytes:
    """A bound value as the INSERT would write it, for any column but BIT."""
    kind = type(value)
    if kind is str:
        return _escape(value.encode())  # a lone surrogate raises UnicodeEncodeError: unloadable
    if kind is int:
        return b"%d" % value
    if kind is bool:
        return b"1" if value else b"0"
    if kind is bytes or kind is bytearray:
        return _escape(bytes(value))
    if kind is dt.datetime:  # naive (UTC wall clock) after binding
        if value.tzinfo is not None:
            raise _UnloadableError(value)
        return str(value.isoformat(" ")).encode()
    if kind is Decimal:
        return format(value, "f").encode()  # never an exponent, as pymysql writes it
    if kind is float:
        return repr(value).encode()  # finite after binding; '1e+16' is read as a number too
    if kind is dt.date:
        return str(value.isoformat()).encode()
    raise _UnloadableError(type(value).__name__)


def _bit_field(value: Any) -> bytes:
    """LOAD DATA stores a BIT field's bytes as the value (b'513' would be 0x353133): big-endian bytes."""
    if type(value) is bool or type(value) is int:
        number = int(value)
        if number < 0:
            raise _UnloadableError(value)
        return _escape(number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big"))
    raise _UnloadableError(type(value).__name__)


def encoder_for(type_name: str) -> Encoder:
    """How a bound value of a column of this MySQL type is written into the LOAD DATA file."""
    return _bit_field if _base(type_name) == "bit" else _field


# The file column by column (`column_fields`): where every non-null value of a column has one of
# these types and its converter is one that passes such a value through `_plain`, the fields are
# written by one comprehension, exactly as `_field(converter(value))` would write each of them;
# any other column goes value by value. (On the benchmark's 8 columns: 0.88 → ~0.3 CPU-s per 200k
# events, time the writer thread held the GIL.)
def _int_fields(values: tuple[Any, ...]) -> list[bytes] | None:
    return [_NULL if v is None else b"%d" % v for v in values]


def _bool_fields(values: tuple[Any, ...]) -> list[bytes] | None:
    return [_NULL if v is None else b"1" if v else b"0" for v in values]


def _str_fields(values: tuple[Any, ...]) -> list[bytes] | None:
    encoded = [_NULL if v is None else v.encode() for v in values]  # a lone surrogate raises: unloadable
    if _SPECIAL.search(b"".join(e for e, v in zip(encoded, values, strict=True) if v is not None)):
        return [_NULL if v is None else _escape(e) for e, v in zip(encoded, values, strict=True)]
    return encoded


def _decimal_fields(values: tuple[Any, ...]) -> list[bytes] | None:
    if not all(v.is_finite() for v in values if v is not None):
        return None  # `_plain` raises for it: value by value, so that it does
    return [_NULL if v is None else format(v, "f").encode() for v in values]


def _datetime_fields(values: tuple[Any, ...]) -> list[bytes] | None:
    # str(d) is d.isoformat(" ") (and cheaper to call). In UTC, as the decoder makes every zoned
    # timestamp, it ends "+00:00": cut, it is the naive value's text, without astimezone() + replace().
    return [_NULL if v is None else (str(v) if v.tzinfo is None else str(v)[:-6] if v.tzinfo is dt.UTC
                                     else str(v.astimezone(dt.UTC).replace(tzinfo=None))).encode()
            for v in values]


_PASSING = frozenset({"plain", "duration", "bits", "temporal", "delimited"})  # what they pass through `_plain`
_COLUMN_FIELDS: dict[type, tuple[Callable[[tuple[Any, ...]], list[bytes] | None], frozenset[str]]] = {
    int: (_int_fields, _PASSING),
    bool: (_bool_fields, _PASSING),
    str: (_str_fields, frozenset({"plain", "duration", "delimited"})),  # `_bits` parses it, `_temporal` refuses it
    Decimal: (_decimal_fields, _PASSING),
    dt.datetime: (_datetime_fields, _PASSING),
}


def column_fields(convert: Converter, encode: Encoder, values: tuple[Any, ...]) -> list[bytes]:
    """One column's LOAD DATA fields: `encode(convert(value))` per value, `\\N` for NULL (see `_COLUMN_FIELDS`)."""
    if encode is _field:
        kinds = set(map(type, values))
        kinds.discard(type(None))
        if not kinds:
            return [_NULL] * len(values)
        if len(kinds) == 1:
            fast = _COLUMN_FIELDS.get(kinds.pop())
            if fast is not None and _CONVERTER_NAMES.get(convert) in fast[1]:
                fields = fast[0](values)
                if fields is not None:
                    return fields
    return [_NULL if v is None else encode(convert(v)) for v in values]


_CONVERTERS: dict[str, Converter] = {"time": _duration, "bit": _bits, "date": _temporal, "datetime": _temporal,
                                     "timestamp": _temporal, "set": _delimited, "varchar": _delimited,
                                     "char": _delimited}
_CONVERTER_NAMES: dict[Converter, str] = {_plain: "plain", _duration: "duration", _bits: "bits",
                                          _temporal: "temporal", _delimited: "delimited"}


def converter_for(type_name: str) -> Converter:
    """How a decoded value is bound to a column of this MySQL type."""
    return _CONVERTERS.get(_base(type_name), _plain)


def _placeholder(type_name: str, *, exact: bool) -> str:
    """A parameter compared to a stored value of this type. FLOAT holds float32, so 0.1e0 never
    equals it; a DECIMAL compared to a string is compared as a double; MySQL 8 JSON to a string
    is a JSON string. `exact` also compares text case- and accent-sensitively."""
    base = _base(type_name)
    if base == "float":
        return "CAST(%s AS FLOAT)"
    if base == "decimal":
        return f"CAST(%s AS DECIMAL{type_name[type_name.index('('):type_name.index(')') + 1]})"
    if base == "json":
        return "CAST(%s AS JSON)"
    return "%s COLLATE utf8mb4_bin" if exact and base in _TEXT else "%s"


def column_type_sql(column_type: ColumnType) -> str:
    """The MySQL type for a column first seen in an event schema (schema evolution)."""
    source_type = (column_type.parameter("__debezium.source.column.type") or "").upper()
    length = column_type.parameter("__debezium.source.column.length")
    scale = column_type.parameter("scale") or column_type.parameter("__debezium.source.column.scale")
    logical = column_type.logical or ""
    by_logical = {
        "io.debezium.time.Date": "date", "org.apache.kafka.connect.data.Date": "date",
        "io.debezium.time.Time": "time(3)", "org.apache.kafka.connect.data.Time": "time(3)",
        "io.debezium.time.MicroTime": "time(6)", "io.debezium.time.NanoTime": "time(6)",
        "io.debezium.time.ZonedTime": "time(6)", "io.debezium.time.MicroDuration": "time(6)",
        "io.debezium.time.Timestamp": "datetime(3)", "org.apache.kafka.connect.data.Timestamp": "datetime(3)",
        "io.debezium.time.MicroTimestamp": "datetime(6)", "io.debezium.time.NanoTimestamp": "datetime(6)",
        # An instant as UTC wall clock (the session is UTC): TIMESTAMP would stop at 2038.
        "io.debezium.time.ZonedTimestamp": "datetime(6)", "io.debezium.time.Interval": "varchar(64)",
        "io.debezium.time.Year": "year", "io.debezium.data.Uuid": "char(36)", "io.debezium.data.Json": "json",
        "io.debezium.data.Xml": "longtext", "io.debezium.data.VariableScaleDecimal": "decimal(65,30)",
        "io.debezium.data.Enum": "varchar(255)", "io.debezium.data.Ltree": "longtext",
        "io.debezium.data.geometry.Point": "point", "io.debezium.data.geometry.Geometry": "geometry",
        "io.debezium.data.geometry.Geography": "geometry",
    }
    if logical == "org.apache.kafka.connect.data.Decimal":
        precision = int(column_type.parameter("connect.decimal.precision") or 65)
        digits = int(scale or 0)
        return f"decimal({precision},{digits})" if precision <= 65 and digits <= 30 else "decimal(65,30)"
    if logical == "io.debezium.data.EnumSet":  # the longest value is every member: `allowed` itself
        return f"varchar({max(1024, len(column_type.parameter('allowed') or ''))})"
    if logical == "io.debezium.data.Bits":
        bits = int(column_type.parameter("length") or length or 64)
        return f"bit({bits})" if bits <= 64 else f"varchar({bits})"
    if logical in by_logical:
        return by_logical[logical]
    if column_type.connect_type == "string" and length:  # 255 and 16383: the CHAR and utf8mb4 VARCHAR limits
        if source_type in ("CHAR", "BPCHAR") and int(length) <= 255:
            return f"char({int(length)})"
        if source_type.startswith(("VARCHAR", "CHARACTER VARYING")) and int(length) <= 16383:
            return f"varchar({int(length)})"
    if column_type.connect_type == "boolean" and source_type.startswith("BIT"):
        return "bit(1)"
    if column_type.connect_type == "int64" and "BIGINT" in source_type and "UNSIGNED" in source_type:
        return "bigint unsigned"
    by_connect = {
        "int8": "tinyint", "int16": "smallint", "int32": "int", "int64": "bigint", "float32": "float",
        "float64": "double", "boolean": "tinyint(1)", "string": "longtext", "bytes": "longblob",
        "array": "json", "map": "json", "struct": "json",
    }
    return by_connect.get(column_type.connect_type, "longtext")


@dataclass
class _Binding:
    """What describe() derived for one target table, and its staging table once created."""

    table: TargetTable
    converters: dict[str, Converter]
    types: dict[str, str]
    definitions: tuple[str, ...]  # the staging table's columns and primary key
    encoders: dict[str, Encoder]  # how each column's bound values are written into a LOAD DATA file
    loadable: bool  # every text column is utf8mb4: the table may be staged by LOAD DATA
    only_primary_unique: bool  # no UNIQUE key but the primary key: ON DUPLICATE KEY UPDATE is exact
    stage: str | None = None


class MySQLTargetWriter:
    """The applier's connection to a MySQL/MariaDB target (see the module docstring)."""

    def __init__(self, endpoint: Endpoint, state_schema: str) -> None:
        self._conn: Any = connect(endpoint, "target", client_flag=CLIENT.FOUND_ROWS, local_infile=True)
        self._load_data = True  # False once the server refused LOAD DATA LOCAL
        self._state = state_schema
        self._bindings: dict[TableId, _Binding] = {}
        self._stage_numbers = itertools.count()
        self._in_txn = False
        self._run(_SESSION)

    def _run(self, query: str, params: tuple[Any, ...] = ()) -> int:
        # Always with a params tuple: pymysql then applies %-formatting, so `%%` in names is right.
        with self._conn.cursor() as cur:
            return int(cur.execute(query, params))

    def _rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def _run_many(self, query: str, rows: list[tuple[Any, ...]]) -> None:
        with self._conn.cursor() as cur:  # INSERT … VALUES (%s, …) is sent as multi-row statements
            cur.executemany(query, rows)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._conn.open:
            self._conn.close()

    def begin(self) -> None:
        self._run("BEGIN")
        self._in_txn = True

    def commit(self) -> None:
        self._run("COMMIT")
        self._in_txn = False

    def rollback(self) -> None:
        self._in_txn = False
        # A connection that died has had its transaction rolled back by the server already.
        with contextlib.suppress(pymysql.err.OperationalError, pymysql.err.InterfaceError):
            self._run("ROLLBACK")

    def savepoint(self, name: str) -> None:
        self._run(f"SAVEPOINT {_ident(name)}")

    def rollback_to_savepoint(self, name: str) -> None:
        self._run(f"ROLLBACK TO SAVEPOINT {_ident(name)}")

    def release_savepoint(self, name: str) -> None:
        self._run(f"RELEASE SAVEPOINT {_ident(name)}")

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, pymysql.err.InterfaceError):  # used after the connection closed
            return True
        if isinstance(exc, pymysql.MySQLError) and exc.args and exc.args[0] in _TRANSIENT:
            return True
        return not self._conn.open

    def describe_error(self, exc: BaseException) -> str:
        if isinstance(exc, pymysql.MySQLError) and len(exc.args) >= 2:
            message = " ".join(str(exc.args[1]).split())
            return f"MySQL error {exc.args[0]}: {message or type(exc).__name__}"
        return " ".join(str(exc).split()) or type(exc).__name__

    # -- catalog and DDL -----------------------------------------------------------------------
    def ensure_state(self) -> None:
        for statement in _STATE_DDL:
            self._run(statement.format(s=_ident(self._state), **_STATE_PARTS))

    def describe(self, table: TableId) -> TargetTable | None:
        rows = self._rows(_COLUMNS, (table.schema, table.name))
        old = self._bindings.pop(table, None)
        if old is not None and old.stage is not None:
            self._run(f"DROP TEMPORARY TABLE IF EXISTS {old.stage}")  # no implicit commit
        if not rows:
            return None
        primary = [(_text(name), sub_part) for name, sub_part in self._rows(_PRIMARY_KEY, (table.schema, table.name))]
        key = tuple(name for name, _ in primary)
        columns, definitions, loadable = [], [], True
        for name, column_type, nullable, charset, collation in rows:
            loadable = loadable and (charset is None or _text(charset) in _LOADABLE_CHARSETS)
            column = TargetColumn(_text(name), _text(column_type).lower(), _text(nullable) == "YES")
            columns.append(column)
            # The staging column keeps the original case (ENUM labels) and the collation (key joins).
            spec = f"{_ident(column.name)} {_text(column_type)}"
            if collation is not None:
                spec += f" CHARACTER SET {_text(charset)} COLLATE {_text(collation)}"
            definitions.append(spec + (" NOT NULL" if column.name in key else " NULL"))
        if key:
            parts = (_ident(n) + ("" if sub is None else f"({int(sub)})") for n, sub in primary)
            definitions.append(f"PRIMARY KEY ({', '.join(parts)})")
        described = TargetTable(table, tuple(columns), key)
        others = int(self._rows(_OTHER_UNIQUE, (table.schema, table.name))[0][0])
        self._bindings[table] = _Binding(described, {c.name: converter_for(c.type_name) for c in columns},
                                         {c.name: c.type_name for c in columns}, tuple(definitions),
                                         {c.name: encoder_for(c.type_name) for c in columns}, loadable,
                                         bool(key) and others == 0)
        return described

    def add_column(self, table: TableId, column: str, column_type: ColumnType) -> str:
        if self._in_txn:  # ALTER TABLE commits implicitly: it would split the batch transaction
            raise TargetError(f"add_column({table}.{column}) called inside a transaction")
        type_sql = column_type_sql(column_type)
        default = column_type.default
        simple = isinstance(default, bool | int | float | Decimal | str)  # existing rows get it, as on the source
        try:  # MySQL 8 has no ADD COLUMN IF NOT EXISTS; "duplicate column" means it is there already
            self._run(f"ALTER TABLE {_target(table)} ADD COLUMN {_ident(column)} {type_sql}"
                      + (" DEFAULT %s" if simple else ""), (default,) if simple else ())
        except pymysql.MySQLError as exc:
            if not exc.args or exc.args[0] != ER_DUP_FIELDNAME:
                raise
        return type_sql

    # -- state ---------------------------------------------------------------------------------
    def _state_table(self, name: str) -> str:
        return f"{_ident(self._state)}.{name}"

    def read_offsets(self, partitions: list[Partition]) -> dict[Partition, StoredOffset]:
        if partitions:
            self._run_many(f"INSERT IGNORE INTO {self._state_table('apply_offsets')} (topic, kafka_partition)"
                           " VALUES (%s, %s)", sorted(set(partitions)))
        return self._select_offsets(partitions, lock=False)

    def lock_offsets(self, partitions: list[Partition]) -> dict[Partition, StoredOffset]:
        return self._select_offsets(partitions, lock=True)

    def _select_offsets(self, partitions: list[Partition], *, lock: bool) -> dict[Partition, StoredOffset]:
        # One primary-key range per topic, topics and partitions in sorted order: FOR UPDATE then
        # locks exactly these rows, always in the same order (no deadlock between two appliers).
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(set(partitions)):
            by_topic.setdefault(topic, []).append(partition)
        result: dict[Partition, StoredOffset] = {}
        for topic, numbers in by_topic.items():
            query = (
                "SELECT kafka_partition, next_offset, position_major, position_minor, position_row"
                f" FROM {self._state_table('apply_offsets')} WHERE topic = %s AND kafka_partition IN"
                f" ({', '.join(['%s'] * len(numbers))}) ORDER BY kafka_partition{' FOR UPDATE' if lock else ''}"
            )
            for partition, next_offset, major, minor, row in self._rows(query, (topic, *numbers)):
                position = None if major is None else SourcePosition(int(major), int(minor), int(row))
                result[(topic, int(partition))] = StoredOffset(None if next_offset is None else int(next_offset),
                                                               position)
        return result

    def save_offsets(self, updates: list[OffsetUpdate]) -> None:
        if not updates:
            return
        query = (
            f"UPDATE {self._state_table('apply_offsets')} SET next_offset = %s,"
            " position_major = COALESCE(%s, position_major), position_minor = COALESCE(%s, position_minor),"
            " position_row = COALESCE(%s, position_row), source_ts_ms = COALESCE(%s, source_ts_ms),"
            " applied_at = CURRENT_TIMESTAMP(6) WHERE topic = %s AND kafka_partition = %s"
        )
        self._run_many(query, [(u.next_offset, u.position and u.position.major, u.position and u.position.minor,
                                u.position and u.position.row, u.source_ts_ms, u.topic, u.partition)
                               for u in updates])

    def record_dead_letter(self, letter: DeadLetter) -> None:
        self._run(f"INSERT INTO {self._state_table('dead_letters')} (topic, kafka_partition, kafka_offset,"
                  " source_table, event_key, reason, record) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                  (letter.topic, letter.partition, letter.offset, letter.table, letter.key, letter.reason,
                   letter.record))

    def record_schema_change(self, topic: str, offset: int, database: str, ddl: str, source_ts_ms: int) -> None:
        self._run(f"INSERT IGNORE INTO {self._state_table('schema_changes')} (topic, kafka_offset, database_name,"
                  " ddl, source_ts_ms) VALUES (%s, %s, %s, %s, %s)", (topic, offset, database, ddl, source_ts_ms))

    def record_marks(self, marks: list[tuple[str, int, int, int]]) -> None:
        self._run_many(f"INSERT INTO {self._state_table('reconcile_marks')} (source_table, generation, bucket,"
                       " max_offset) VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE"
                       " max_offset = GREATEST(max_offset, VALUES(max_offset))", sorted(marks))

    def read_marks(self, table: str) -> dict[tuple[int, int], int]:
        rows = self._rows(f"SELECT generation, bucket, max_offset FROM {self._state_table('reconcile_marks')}"
                          " WHERE source_table = %s", (table,))
        return {(int(g), int(b)): int(o) for g, b, o in rows}

    def save_pass(self, table: str, generation: int, text: str, keep: int | None) -> None:
        self.begin()
        try:
            self._run(f"INSERT IGNORE INTO {self._state_table('reconcile_passes')} (source_table, generation, pass)"
                      " VALUES (%s, %s, %s)", (table, generation, text))
            if keep is not None:
                for name in ("reconcile_passes", "reconcile_marks"):
                    self._run(f"DELETE FROM {self._state_table(name)} WHERE source_table = %s AND generation < %s",
                              (table, keep))
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def read_pass(self, table: str) -> tuple[int, str, float] | None:
        rows = self._rows(f"SELECT generation, pass, UNIX_TIMESTAMP(finished_at) FROM"
                          f" {self._state_table('reconcile_passes')} WHERE source_table = %s"
                          " ORDER BY generation DESC LIMIT 1", (table,))
        return None if not rows else (int(rows[0][0]), _text(rows[0][1]), float(rows[0][2]))

    def read_gates(self, *, lock: bool = False) -> dict[str, Gate]:
        rows = self._rows(f"SELECT source_table, state, filter FROM {self._state_table('table_gates')}"
                          + (" LOCK IN SHARE MODE" if lock else ""))
        return {_text(t): Gate(_text(t), _text(s), None if f is None else _text(f)) for t, s, f in rows}

    def write_gate(self, table: str, state: str | None, filter_text: str | None, partitions: list[Partition]) -> None:
        self.read_offsets(partitions)  # the rows exist, so that the lock below locks them
        self.begin()
        try:
            self._select_offsets(partitions, lock=True)  # serialised with every batch of these partitions
            if state is None:
                self._run(f"DELETE FROM {self._state_table('table_gates')} WHERE source_table = %s", (table,))
            else:
                self._run(f"INSERT INTO {self._state_table('table_gates')} (source_table, state, filter)"
                          " VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE state = VALUES(state),"
                          " filter = VALUES(filter), updated_at = CURRENT_TIMESTAMP(6)", (table, state, filter_text))
            self.commit()
        except BaseException:
            self.rollback()
            raise

    # -- rows ----------------------------------------------------------------------------------
    def _binding(self, table: TargetTable) -> _Binding:
        binding = self._bindings.get(table.table)
        if binding is None:  # a table described on an earlier connection
            self.describe(table.table)
            binding = self._bindings[table.table]
        return binding

    def _bind(self, binding: _Binding, columns: tuple[str, ...] | list[str],
              rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        converters = [binding.converters[c] for c in columns]
        return [tuple(None if v is None else f(v) for f, v in zip(converters, row, strict=True)) for row in rows]

    def _stage(self, binding: _Binding, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
        # Before any SQL, so that a bad value fails cleanly: the LOAD DATA file, or the bound rows.
        body = self._file(binding, columns, rows) if self._load_data and binding.loadable else None
        values = self._bind(binding, columns, rows) if body is None else None
        if binding.stage is None:
            binding.stage = _ident(f"replicator_stage_{next(self._stage_numbers)}")
        else:  # emptied by re-creating it: 10x cheaper than DELETE; TRUNCATE would commit
            self._run(f"DROP TEMPORARY TABLE IF EXISTS {binding.stage}")
        self._run(f"CREATE TEMPORARY TABLE {binding.stage} ({', '.join(binding.definitions)}) ENGINE=InnoDB")
        if body is None or not self._load(binding.stage, columns, body, len(rows)):
            cols = ", ".join(map(_ident, columns))
            self._run_many(f"INSERT INTO {binding.stage} ({cols}) VALUES ({', '.join(['%s'] * len(columns))})",
                           values if values is not None else self._bind(binding, columns, rows))
        return binding.stage

    @staticmethod
    def _file(binding: _Binding, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bytes | None:
        """The rows as a LOAD DATA file: each value bound (as `_bind`) and written as the INSERT's
        literal would be, in one pass; None if a value cannot be carried exactly by the file."""
        if not rows:
            return b""
        steps = [(binding.converters[c], binding.encoders[c]) for c in columns]
        try:
            fields = [column_fields(convert, encode, values)
                      for (convert, encode), values in zip(steps, zip(*rows, strict=True), strict=True)]
        except (_UnloadableError, UnicodeEncodeError):
            return None
        return b"\n".join(map(b"\t".join, zip(*fields, strict=True))) + b"\n"

    def _load(self, stage: str, columns: tuple[str, ...], body: bytes, count: int) -> bool:
        """Stage `body` (`count` rows) into the empty `stage` by LOAD DATA LOCAL. True if the stage then
        holds exactly these rows: no warning and every row loaded; otherwise the stage is left empty again."""
        with tempfile.NamedTemporaryFile(dir=_SPOOL, prefix="replicator-stage-", suffix=".tsv") as spool:
            spool.write(body)
            spool.flush()
            try:
                with self._conn.cursor() as cur:
                    loaded = int(cur.execute(
                        f"LOAD DATA LOCAL INFILE %s INTO TABLE {stage} CHARACTER SET binary FIELDS TERMINATED BY"
                        f" '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({', '.join(map(_ident, columns))})",
                        (spool.name,)))
                    warnings = int(cur.warning_count)  # the OK packet's count, as @@warning_count
            except pymysql.MySQLError as exc:
                if self.is_transient(exc):
                    raise
                if exc.args and exc.args[0] in _LOAD_REFUSED:
                    self._load_data = False
                    log.warning("the target refuses LOAD DATA LOCAL (%s): staging by INSERT for this session",
                                self.describe_error(exc))
                loaded, warnings = -1, 0  # any other failure: the INSERT tells what is wrong
        if warnings == 0 and loaded == count:
            return True
        self._run(f"DELETE FROM {stage}")
        return False

    @staticmethod
    def _key_join(table: TargetTable) -> str:
        return " AND ".join(f"t.{_ident(k)} = s.{_ident(k)}" for k in table.key)

    def upsert(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        binding = self._binding(table)
        stage = self._stage(binding, columns, rows)
        target, on = _target(table.table), self._key_join(table)
        others = [c for c in columns if c not in table.key]
        cols = ", ".join(map(_ident, columns))
        picked = ", ".join(f"s.{_ident(c)}" for c in columns)
        if binding.only_primary_unique and others:  # one statement; it can only fire on the primary key
            sets = ", ".join(f"{_ident(c)} = s.{_ident(c)}" for c in others)
            self._run(f"INSERT INTO {target} ({cols}) SELECT {picked} FROM {stage} AS s ON DUPLICATE KEY UPDATE {sets}")
            return
        if others:  # first: rows that exist, matched on the primary key only
            sets = ", ".join(f"t.{_ident(c)} = s.{_ident(c)}" for c in others)
            self._run(f"UPDATE {target} AS t JOIN {stage} AS s ON {on} SET {sets}")
        self._run(f"INSERT INTO {target} ({cols}) SELECT {picked} FROM {stage} AS s"
                  f" WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {on})")

    def update(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        stage = self._stage(self._binding(table), columns, rows)
        others = [c for c in columns if c not in table.key] or list(table.key[:1])
        sets = ", ".join(f"t.{_ident(c)} = s.{_ident(c)}" for c in others)
        return self._run(f"UPDATE {_target(table.table)} AS t JOIN {stage} AS s ON {self._key_join(table)}"
                         f" SET {sets}")  # rows matched, thanks to CLIENT.FOUND_ROWS

    def delete(self, table: TargetTable, keys: list[tuple[Any, ...]]) -> None:
        if not keys:
            return
        if len(table.key) == 1:  # no staging: DELETE … WHERE key IN (…), the key compared as change_key does
            binding = self._binding(table)
            values = [key[0] for key in self._bind(binding, table.key, keys)]
            column, marker = _ident(table.key[0]), _placeholder(binding.types[table.key[0]], exact=False)
            for start in range(0, len(values), _DELETE_CHUNK):
                part = tuple(values[start:start + _DELETE_CHUNK])
                self._run(f"DELETE FROM {_target(table.table)} WHERE {column} IN ({', '.join([marker] * len(part))})",
                          part)
            return
        stage = self._stage(self._binding(table), table.key, keys)
        self._run(f"DELETE t FROM {_target(table.table)} AS t JOIN {stage} AS s ON {self._key_join(table)}")

    def change_key(self, table: TargetTable, old_key: tuple[Any, ...], columns: tuple[str, ...],
                   values: tuple[Any, ...]) -> int:
        binding = self._binding(table)
        sets = ", ".join(f"{_ident(c)} = %s" for c in columns)
        where = " AND ".join(f"{_ident(k)} = {_placeholder(binding.types[k], exact=False)}" for k in table.key)
        params = self._bind(binding, columns, [values])[0] + self._bind(binding, table.key, [old_key])[0]
        return self._run(f"UPDATE {_target(table.table)} SET {sets} WHERE {where}", params)

    def insert_rows(self, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        values = self._bind(self._binding(table), columns, rows)
        cols = ", ".join(map(_ident, columns))
        self._run_many(f"INSERT INTO {_target(table.table)} ({cols}) VALUES ({', '.join(['%s'] * len(columns))})",
                       values)

    def _match_one(self, binding: _Binding, old: Row) -> tuple[str, tuple[Any, ...]]:
        """A condition equal to `old` in every column, NULL-safe (<=>), compared as the column's type."""
        condition = " AND ".join(f"{_ident(c)} <=> {_placeholder(binding.types[c], exact=True)}" for c in old)
        return condition, self._bind(binding, list(old), [tuple(old.values())])[0]

    def update_exact(self, table: TargetTable, old: Row, new: Row) -> int:
        binding = self._binding(table)
        condition, params = self._match_one(binding, old)
        values = self._bind(binding, list(new), [tuple(new.values())])[0]
        sets = ", ".join(f"{_ident(c)} = %s" for c in new)
        return self._run(f"UPDATE {_target(table.table)} SET {sets} WHERE {condition} LIMIT 1", values + params)

    def delete_exact(self, table: TargetTable, old: Row) -> int:
        condition, params = self._match_one(self._binding(table), old)
        return self._run(f"DELETE FROM {_target(table.table)} WHERE {condition} LIMIT 1", params)

    def delete_all(self, table: TargetTable) -> None:
        self._run(f"DELETE FROM {_target(table.table)}")  # TRUNCATE would commit implicitly

    def delete_ranges(self, table: TargetTable, ranges: KeyRanges) -> int:
        deleted = 0
        for low, high in ranges.spans:
            where, params = range_condition(ranges.key, ranges.kinds, low, high)
            deleted += self._run(f"DELETE FROM {_target(table.table)} WHERE {where}", tuple(params))
        return deleted


def _target(table: TableId) -> str:
    return f"{_ident(table.schema)}.{_ident(table.name)}"
