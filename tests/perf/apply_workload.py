"""Real-shaped Debezium change events for the apply benchmarks, and the final state they lead to.

The table `bench.w` has 8 columns whose Debezium encodings exercise the decoder:

    column  PostgreSQL          MariaDB            Debezium field (JsonConverter, schemas on)
    id      bigint PK           BIGINT PK          int64
    a       int NOT NULL DEF 0  INT NOT NULL DEF 0 int32, optional false, default 0
    b       bigint              BIGINT             int64
    c       numeric(12,3)       DECIMAL(12,3)      bytes, org.apache.kafka.connect.data.Decimal (base64)
    d       text (~40 chars)    VARCHAR(64)        string
    e       boolean             TINYINT(1)         boolean (PG) / int16 (MariaDB)
    f       timestamp(6)        DATETIME(6)        int64, io.debezium.time.MicroTimestamp
    g       timestamptz         TIMESTAMP(6) NULL  string, io.debezium.time.ZonedTimestamp

Messages are byte-for-byte what Debezium 3.0.7's JsonConverter writes with the settings of this
project's connector templates (connectors/templates/*.json): compact JSON, `{"schema":…,"payload":…}`
for key and value, `column.propagate.source.type=.*` (every value field carries its
`__debezium.source.column.*` parameters), and on PostgreSQL `provide.transaction.metadata=true`
(a `transaction` block on every event). Field order, parameter order and the source blocks follow
the captures in /work/shared/fixtures/debezium. Every `d` is followed by a tombstone with the same key.

PostgreSQL (REPLICA IDENTITY DEFAULT): `u` has `before: null`; `d`'s `before` holds the key and the
schema default of the NOT NULL column (`a: 0`), nulls elsewhere. `source.sequence` is
`["<lastCommitLsn>","<lsn>"]` (strings), LSNs increase, one `txId` per transaction of 1-8 events.
MariaDB (binlog_row_image=FULL): `before` is the full old row on `u` and `d`; `source.file`
"binlog.000001", `pos` increasing, `row` 0, one-second `ts_ms`.

Row values are a pure function of (id, version): version 0 is the seeded row, each update bumps the
version. So the final state needs no copy of the rows: `Workload.final` maps every touched id to its
last version, or None when the id ended deleted.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from array import array
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson

SCHEMA, TABLE = "bench", "w"
COLUMNS = ("id", "a", "b", "c", "d", "e", "f", "g")
FLAVOURS = ("pg", "mariadb")
SHAPES = ("template", "plain")

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1)
_BASE_US = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z; keeps every `g` inside MariaDB's TIMESTAMP range
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
          "kilo", "lima", "mike", "november", "oscar", "papa")

PG_DDL = """
CREATE TABLE {name} (
    id bigint PRIMARY KEY,
    a integer NOT NULL DEFAULT 0,
    b bigint,
    c numeric(12,3),
    d text,
    e boolean,
    f timestamp(6) without time zone,
    g timestamp(6) with time zone
)"""

MARIADB_DDL = """
CREATE TABLE {name} (
    id BIGINT NOT NULL PRIMARY KEY,
    a INT NOT NULL DEFAULT 0,
    b BIGINT NULL,
    c DECIMAL(12,3) NULL,
    d VARCHAR(64) NULL,
    e TINYINT(1) NULL,
    f DATETIME(6) NULL,
    g TIMESTAMP(6) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


# -- row values ------------------------------------------------------------------------------------
def _raw(id_: int, version: int) -> tuple[int, int, int, str, int | None, int, int | None]:
    """(a, b, unscaled c, d, e as 0/1/None, f µs, g µs or None) of row `id_` at `version`."""
    h = (id_ * 2654435761 + version * 40503 + 12345) & 0xFFFFFFFF
    a = h % 2_000_000 - 1_000_000
    b = id_ * 1_000_003 + version
    unscaled = (h * 7919) % 100_000_000_000
    if h % 11 == 0:
        unscaled = -unscaled
    d = f"row {id_:09d} v{version:04d} {_WORDS[h % 16]}-{_WORDS[(h >> 4) % 16]}-{h % 997:03d}"
    e = None if h % 13 == 0 else h & 1
    f_us = _BASE_US + id_ * 1_000_003 + version * 3_600_000_000 + h % 1_000_000
    g_us = None if h % 17 == 0 else _BASE_US - id_ * 999_983 + version * 60_000_000 + (h >> 3) % 1_000_000
    return a, b, unscaled, d, e, f_us, g_us


def python_row(flavour: str, id_: int, version: int) -> tuple[Any, ...]:
    """The row as Python values (what the decoder produces and a driver binds)."""
    a, b, unscaled, d, e, f_us, g_us = _raw(id_, version)
    return (
        id_, a, b, Decimal(unscaled).scaleb(-3), d,
        None if e is None else (bool(e) if flavour == "pg" else e),
        _EPOCH + dt.timedelta(microseconds=f_us),
        None if g_us is None else (_EPOCH + dt.timedelta(microseconds=g_us)).replace(tzinfo=UTC),
    )


def _decimal_b64(unscaled: int) -> str:
    """Connect Decimal: the unscaled value as minimal big-endian two's complement (Java's
    BigInteger.toByteArray), base64 by JsonConverter."""
    size = (unscaled if unscaled >= 0 else ~unscaled).bit_length() // 8 + 1
    return base64.b64encode(unscaled.to_bytes(size, "big", signed=True)).decode("ascii")


def _zoned(us: int) -> str:
    # PostgreSQL and MariaDB streaming both pad the fraction to 6 digits.
    return (_EPOCH + dt.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_row(flavour: str, id_: int, version: int) -> dict[str, Any]:
    a, b, unscaled, d, e, f_us, g_us = _raw(id_, version)
    return {
        "id": id_, "a": a, "b": b, "c": _decimal_b64(unscaled), "d": d,
        "e": None if e is None else (e == 1 if flavour == "pg" else e),
        "f": f_us, "g": None if g_us is None else _zoned(g_us),
    }


def _pg_delete_before(id_: int) -> dict[str, Any]:
    # DEFAULT identity: the key, the NOT NULL column's schema default, nulls elsewhere (reference §3).
    return {"id": id_, "a": 0, "b": None, "c": None, "d": None, "e": None, "f": None, "g": None}


# -- schemas ---------------------------------------------------------------------------------------
def _pg_params(kind: str, length: str, scale: str, column: str) -> dict[str, str]:
    return {"__debezium.source.column.type": kind, "__debezium.source.column.length": length,
            "__debezium.source.column.scale": scale, "__debezium.source.column.name": column}


def _my_params(kind: str, length: str | None, column: str, scale: str | None = None) -> dict[str, str]:
    params = {"__debezium.source.column.type": kind}
    if length is not None:
        params["__debezium.source.column.length"] = length
    if scale is not None:
        params["__debezium.source.column.scale"] = scale
    params["__debezium.source.column.name"] = column
    return params


def _value_fields(flavour: str) -> list[dict[str, Any]]:
    decimal = {"scale": "3", "connect.decimal.precision": "12"}
    if flavour == "pg":
        return [
            {"type": "int64", "optional": False, "parameters": _pg_params("INT8", "19", "0", "id"), "field": "id"},
            {"type": "int32", "optional": False, "parameters": _pg_params("INT4", "10", "0", "a"), "default": 0,
             "field": "a"},
            {"type": "int64", "optional": True, "parameters": _pg_params("INT8", "19", "0", "b"), "field": "b"},
            {"type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
             "parameters": {**decimal, **_pg_params("NUMERIC", "12", "3", "c")}, "field": "c"},
            {"type": "string", "optional": True, "parameters": _pg_params("TEXT", "2147483647", "0", "d"),
             "field": "d"},
            {"type": "boolean", "optional": True, "parameters": _pg_params("BOOL", "1", "0", "e"), "field": "e"},
            {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp", "version": 1,
             "parameters": _pg_params("TIMESTAMP", "29", "6", "f"), "field": "f"},
            {"type": "string", "optional": True, "name": "io.debezium.time.ZonedTimestamp", "version": 1,
             "parameters": _pg_params("TIMESTAMPTZ", "35", "6", "g"), "field": "g"},
        ]
    return [
        {"type": "int64", "optional": False, "parameters": _my_params("BIGINT", "20", "id"), "field": "id"},
        {"type": "int32", "optional": False, "parameters": _my_params("INT", "11", "a"), "default": 0, "field": "a"},
        {"type": "int64", "optional": True, "parameters": _my_params("BIGINT", "20", "b"), "field": "b"},
        {"type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
         "parameters": {**decimal, **_my_params("DECIMAL", "12", "c", "3")}, "field": "c"},
        {"type": "string", "optional": True, "parameters": _my_params("VARCHAR", "64", "d"), "field": "d"},
        {"type": "int16", "optional": True, "parameters": _my_params("TINYINT", "1", "e"), "field": "e"},
        {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp", "version": 1,
         "parameters": _my_params("DATETIME", "6", "f"), "field": "f"},
        {"type": "string", "optional": True, "name": "io.debezium.time.ZonedTimestamp", "version": 1,
         "parameters": _my_params("TIMESTAMP", "6", "g"), "field": "g"},
    ]


_SNAPSHOT_ENUM = {"type": "string", "optional": True, "name": "io.debezium.data.Enum", "version": 1,
                  "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,"
                                            "incremental"},
                  "default": "false", "field": "snapshot"}


def _source_schema(flavour: str) -> dict[str, Any]:
    common = [
        {"type": "string", "optional": False, "field": "version"},
        {"type": "string", "optional": False, "field": "connector"},
        {"type": "string", "optional": False, "field": "name"},
        {"type": "int64", "optional": False, "field": "ts_ms"},
        _SNAPSHOT_ENUM,
        {"type": "string", "optional": False, "field": "db"},
        {"type": "string", "optional": True, "field": "sequence"},
        {"type": "int64", "optional": True, "field": "ts_us"},
        {"type": "int64", "optional": True, "field": "ts_ns"},
    ]
    if flavour == "pg":
        tail = [
            {"type": "string", "optional": False, "field": "schema"},
            {"type": "string", "optional": False, "field": "table"},
            {"type": "int64", "optional": True, "field": "txId"},
            {"type": "int64", "optional": True, "field": "lsn"},
            {"type": "int64", "optional": True, "field": "xmin"},
        ]
        name = "io.debezium.connector.postgresql.Source"
    else:
        tail = [
            {"type": "string", "optional": True, "field": "table"},
            {"type": "int64", "optional": False, "field": "server_id"},
            {"type": "string", "optional": True, "field": "gtid"},
            {"type": "string", "optional": False, "field": "file"},
            {"type": "int64", "optional": False, "field": "pos"},
            {"type": "int32", "optional": False, "field": "row"},
            {"type": "int64", "optional": True, "field": "thread"},
            {"type": "string", "optional": True, "field": "query"},
        ]
        name = "io.debezium.connector.mysql.Source"
    return {"type": "struct", "fields": common + tail, "optional": False, "name": name, "field": "source"}


def _without_propagation(field: dict[str, Any]) -> dict[str, Any]:
    """The field as Debezium writes it without column.propagate.source.type (key order kept)."""
    params = {k: v for k, v in field.get("parameters", {}).items() if not k.startswith("__debezium.source.")}
    out: dict[str, Any] = {}
    for k, v in field.items():
        if k != "parameters":
            out[k] = v
        elif params:
            out[k] = params
    return out


def value_schema(flavour: str, prefix: str, propagate: bool = True) -> dict[str, Any]:
    base = f"{prefix}.{SCHEMA}.{TABLE}"
    fields = _value_fields(flavour)
    if not propagate:
        fields = [_without_propagation(f) for f in fields]
    row = {"type": "struct", "fields": fields, "optional": True, "name": f"{base}.Value"}
    return {
        "type": "struct",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            _source_schema(flavour),
            {"type": "struct", "fields": [
                {"type": "string", "optional": False, "field": "id"},
                {"type": "int64", "optional": False, "field": "total_order"},
                {"type": "int64", "optional": False, "field": "data_collection_order"},
            ], "optional": True, "name": "event.block", "version": 1, "field": "transaction"},
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
            {"type": "int64", "optional": True, "field": "ts_us"},
            {"type": "int64", "optional": True, "field": "ts_ns"},
        ],
        "optional": False,
        "name": f"{base}.Envelope",
        "version": 2,
    }


def key_schema(prefix: str) -> dict[str, Any]:
    return {"type": "struct", "fields": [{"type": "int64", "optional": False, "field": "id"}], "optional": False,
            "name": f"{prefix}.{SCHEMA}.{TABLE}.Key"}


# -- the event stream ------------------------------------------------------------------------------
class Workload:
    """N change events over a table seeded with ids 1..rows: ~60% updates, ~25% inserts of new ids,
    ~15% deletes, chosen uniformly among the live rows. Deterministic for a given seed."""

    def __init__(self, flavour: str, prefix: str, rows: int, events: int, *, seed: int = 20261122,
                 source_database: str = "app", shape: str = "template") -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}")
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}")
        # "template": this project's connector templates (column.propagate.source.type=.*, and on
        # PostgreSQL provide.transaction.metadata=true); "plain": Debezium's defaults (neither).
        self._tx_metadata = shape == "template" and flavour == "pg"
        self.flavour, self.prefix, self.rows, self.events = flavour, prefix, rows, events
        self._random = random.Random(seed)
        self._database = source_database
        capacity = rows + events + 2
        self._live = array("q", range(1, rows + 1))  # ids present now
        self._where = array("q", range(-1, rows))  # id -> index in _live (-1: absent); index 0 unused
        self._where.extend([-1] * (capacity - len(self._where)))
        self._version = array("i", [0]) * capacity
        self._next_id = rows + 1
        self.final: dict[int, int | None] = {}  # touched id -> last version, or None if deleted
        self.counts = {"c": 0, "u": 0, "d": 0}
        self.messages = 0
        schema = value_schema(flavour, prefix, propagate=shape == "template")
        self._value_head = b'{"schema":' + orjson.dumps(schema) + b',"payload":'
        self._key_head = b'{"schema":' + orjson.dumps(key_schema(prefix)) + b',"payload":{"id":'

    # -- choosing the ops --
    def _pick(self) -> int:
        return self._live[self._random.randrange(len(self._live))]

    def _remove(self, id_: int) -> None:
        index = self._where[id_]
        last = self._live.pop()
        if last != id_:
            self._live[index] = last
            self._where[last] = index
        self._where[id_] = -1

    def _ops(self) -> Iterator[tuple[str, int, int]]:
        """(op, id, version before the op) per event."""
        rnd = self._random.random
        for _ in range(self.events):
            draw = rnd()
            if draw < 0.60 and self._live:
                id_ = self._pick()
                old = self._version[id_]
                self._version[id_] = old + 1
                self.final[id_] = old + 1
                yield "u", id_, old
            elif draw < 0.85 or not self._live:
                id_ = self._next_id
                self._next_id += 1
                self._where[id_] = len(self._live)
                self._live.append(id_)
                self.final[id_] = 0
                yield "c", id_, 0
            else:
                id_ = self._pick()
                self._remove(id_)
                self.final[id_] = None
                yield "d", id_, self._version[id_]

    # -- rendering --
    def messages_iter(self) -> Iterator[tuple[bytes, bytes | None]]:
        """(key, value) per Kafka message in topic order; value None for a tombstone."""
        flavour, prefix = self.flavour, self.prefix
        dumps = orjson.dumps
        value_head, key_head = self._value_head, self._key_head
        txn_left = 0
        txid, lsn, last_commit = 880, 0x1F000000, None
        pos = 4
        total_order = 0
        base_ms = 1_795_360_528_000
        for index, (op, id_, version) in enumerate(self._ops()):
            self.counts[op] += 1
            if txn_left == 0:  # a new source transaction
                txn_left = self._random.randint(1, 8)
                txid += 1
                total_order = 0
                if lsn > 0x1F000000:
                    last_commit = lsn + 48  # the previous transaction's commit record
                    lsn += 104
                pos += 65  # MariaDB: GTID + query(BEGIN) events
            txn_left -= 1
            total_order += 1
            lsn += 136 + (id_ & 63)
            pos += 180 + (id_ & 31)
            ts_ms = base_ms + index // 40  # ~40k source changes per second
            after = json_row(flavour, id_, version + (op == "u")) if op != "d" else None
            if flavour == "pg":
                before = _pg_delete_before(id_) if op == "d" else None
                ts_us = ts_ms * 1000 + (index * 37) % 1000
                source: dict[str, Any] = {
                    "version": "3.0.7.Final", "connector": "postgresql", "name": prefix, "ts_ms": ts_ms,
                    "snapshot": "false", "db": self._database,
                    "sequence": dumps([None if last_commit is None else str(last_commit), str(lsn)]).decode(),
                    "ts_us": ts_us, "ts_ns": ts_us * 1000, "schema": SCHEMA, "table": TABLE, "txId": txid,
                    "lsn": lsn, "xmin": None,
                }
                transaction: dict[str, Any] | None = {
                    "id": f"{txid}:{lsn}", "total_order": total_order, "data_collection_order": total_order,
                } if self._tx_metadata else None
            else:
                before = json_row(flavour, id_, version) if op in ("u", "d") else None
                ts_s = ts_ms // 1000 * 1000
                source = {
                    "version": "3.0.7.Final", "connector": "mysql", "name": prefix, "ts_ms": ts_s,
                    "snapshot": "false", "db": SCHEMA, "sequence": None, "ts_us": ts_s * 1000,
                    "ts_ns": ts_s * 1_000_000, "table": TABLE, "server_id": 1, "gtid": None,
                    "file": "binlog.000001", "pos": pos, "row": 0, "thread": None, "query": None,
                }
                transaction = None
            emitted_ms = ts_ms + 250
            emitted_us = emitted_ms * 1000 + (index * 53) % 1000
            payload = {"before": before, "after": after, "source": source, "transaction": transaction, "op": op,
                       "ts_ms": emitted_ms, "ts_us": emitted_us, "ts_ns": emitted_us * 1000 + index % 1000}
            key = key_head + str(id_).encode() + b"}}"
            self.messages += 1
            yield key, value_head + dumps(payload) + b"}"
            if op == "d":
                self.messages += 1
                yield key, None

    # -- the expected result --
    def final_rows(self) -> tuple[list[tuple[Any, ...]], list[int]]:
        """(rows to upsert, ids to delete): the net effect of every event on the touched ids."""
        upserts = [python_row(self.flavour, id_, v) for id_, v in self.final.items() if v is not None]
        deletes = [id_ for id_, v in self.final.items() if v is None]
        return upserts, deletes

    def expected_count(self) -> int:
        return len(self._live)
