"""Kafka record bytes → one `Record` (replicator.events): the hot path of the apply stage.

Owns: telling the record kinds apart (tombstone, heartbeat, transaction marker, MySQL schema change, PG
logical message, row change), the envelope fields (op, key, before/after, TOAST placeholders, source
position, snapshot flag, primary-key-change headers) and, through `logical`, every column value.
Anything it does not understand raises `DecodeError` naming topic[partition]@offset, the column and the
problem; it never guesses and never returns None for a value it could not read.

Cache design. JsonConverter writes `{"schema":{...},"payload":{...}}`, schema first, and the schema is
most of the bytes and identical for every event of a table. So the raw value is split at the first
`,"payload":` after the leading `{"schema":`; the schema bytes are the key of a dict of compiled
decoders, and on a hit only the payload slice is parsed. A compiled decoder holds, per column, a tuple
(name, expected JSON type, converter or None, fallback, optional, TOAST markers), so identity columns
(int, str, bool) cost one type check. Keys have their own cache. Both are bounded (cleared when full).

Why the split is safe. A literal `,"payload":` can only occur outside JSON strings (inside one, the
quotes are escaped), i.e. where a member named "payload" follows another member. A cache key is
stored only after a full parse showed that the bytes before the split parse, alone, to exactly the
message's schema; a complete JSON value cannot be a proper prefix of another, so any later message
starting `{"schema":<those bytes>,"payload":` has exactly that schema, and its payload is the slice
up to the final `}` (which orjson then parses completely, or we fall back). A schema that itself
contains `,"payload":`, or bytes of any other shape (whitespace, key order), take the slow path: a full
parse, cached under the re-serialised schema, so it is still correct, only slower.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from replicator.apply.logical import (
    JSON_NAMES,
    ColumnSchemaError,
    ColumnValueError,
    Converter,
    base64_bytes,
    codec_for,
    column_type,
    json_type,
)
from replicator.errors import DecodeError
from replicator.events import (
    ChangeEvent,
    ColumnType,
    Heartbeat,
    LogicalMessage,
    Record,
    RecordRef,
    Row,
    SchemaChange,
    SourcePosition,
    Tombstone,
    TransactionMarker,
)
from replicator.model import TableId

_SCHEMA_PREFIX = b'{"schema":'
_PAYLOAD_SEPARATOR = b',"payload":'
_CACHE_LIMIT = 1024
_ROW_OPS = frozenset({"c", "r", "u", "d", "t"})
_NEEDS_AFTER = frozenset({"c", "r", "u"})
_NO_COLUMNS: frozenset[str] = frozenset()
_OLD_KEY, _NEW_KEY = "__debezium.oldkey", "__debezium.newkey"
_MISSING: Any = object()
_CONVERSION_ERRORS = (ValueError, TypeError, ArithmeticError, KeyError, OverflowError)
_POSITION_ERRORS = (*_CONVERSION_ERRORS, AttributeError, orjson.JSONDecodeError)

_ROW, _MESSAGE, _SCHEMA_CHANGE, _TRANSACTION, _HEARTBEAT, _UNKNOWN = range(6)
_PG, _BINLOG = "pg", "binlog"

# One column of a compiled row: (name, expected JSON type, converter, fallback, optional, TOAST markers)
_Column = tuple[str, type, Converter | None, Converter | None, bool, tuple[Any, ...] | None]
_T = TypeVar("_T")
# NamedTuple classes get a `__new__` written in Python; `tuple.__new__(cls, (…))` builds the same
# object without that frame (one RecordRef and one SourcePosition per event).
_tuple_new = tuple.__new__


class RowDecoder:
    """A compiled struct schema (a table's Value or Key): raw payload dict → Row."""

    __slots__ = ("column_types", "columns", "fields", "renames")

    def __init__(self, fields: list[_Column], column_types: dict[str, ColumnType]) -> None:
        self.fields = tuple(fields)
        # Names as the source has them (see repair_pgoutput_name); None when none needed repair.
        renames = {f[0]: repair_pgoutput_name(f[0]) for f in fields}
        self.renames = {k: v for k, v in renames.items() if k != v} or None
        self.columns = tuple(renames[field[0]] for field in fields)
        self.column_types = {renames.get(k, k): v for k, v in column_types.items()}  # shared: read-only

    def decode(self, raw: Any, ref: RecordRef, what: str) -> tuple[Row, list[str] | None]:
        """The row, and the names of columns that held a TOAST placeholder (left out of the row)."""
        if type(raw) is not dict:
            raise DecodeError(f"cannot decode {ref}: {what} is {json_type(raw)}, expected an object")
        row: Row = {}
        unavailable: list[str] | None = None
        get = raw.get
        name = ""
        try:
            for name, expect, convert, other, optional, markers in self.fields:
                value = get(name)
                if value is None:
                    if not optional:
                        raise ColumnValueError("null in a non-optional field" if name in raw else "missing")
                    row[name] = None
                elif markers is not None and value in markers:
                    if unavailable is None:
                        unavailable = [name]
                    else:
                        unavailable.append(name)
                elif type(value) is expect:
                    row[name] = value if convert is None else convert(value)
                elif other is not None:
                    row[name] = other(value)
                else:
                    raise ColumnValueError(f"expected {JSON_NAMES[expect]}, got {json_type(value)}")
        except _CONVERSION_ERRORS as exc:
            raise DecodeError(f"cannot decode {ref}: {what} column {name!r}: {exc}") from exc
        if self.renames is not None:
            return self._renamed(row, unavailable)
        return row, unavailable

    def _renamed(self, row: Row, unavailable: list[str] | None) -> tuple[Row, list[str] | None]:
        renames = self.renames or {}
        return ({renames.get(k, k): v for k, v in row.items()},
                None if unavailable is None else [renames.get(k, k) for k in unavailable])


def repair_pgoutput_name(name: str) -> str:
    """Undo Debezium's pgoutput name garbling: its relation-message reader turns each UTF-8 byte of a
    non-ASCII column name into one char, sign-extended (byte 0xC3 -> U+FFC3). A name whose non-ASCII
    chars all lie in U+FF80..U+FFFF and whose bytes form valid UTF-8 is rebuilt; others are kept."""
    if name.isascii() or not all(ord(ch) < 0x80 or 0xFF80 <= ord(ch) <= 0xFFFF for ch in name):
        return name
    try:
        return bytes(ord(ch) & 0xFF for ch in name).decode("utf-8")
    except UnicodeDecodeError:
        return name


@dataclass(frozen=True, slots=True)
class _ValueSchema:
    """A compiled value schema: which kind of record it carries and, for rows, the row decoders."""

    kind: int
    flavour: str | None = None  # position source: "pg" (sequence/lsn) or "binlog" (file/pos/row)
    before: RowDecoder | None = None
    after: RowDecoder | None = None
    name: str | None = None  # the schema's name, for errors


class EnvelopeDecoder:
    """Decodes the records of Debezium topics written by JsonConverter with schemas enabled."""

    def __init__(self, *, placeholder: str = "__debezium_unavailable_value", binary_mode: str = "bytes",
                 heartbeat_prefix: str = "__debezium-heartbeat.") -> None:
        if binary_mode not in ("bytes", "base64", "hex"):
            raise ValueError(f"binary_mode must be bytes, base64 or hex, not {binary_mode!r}")
        self._binary_mode = binary_mode
        self._heartbeat_prefix = heartbeat_prefix
        encoded = placeholder.encode()
        b64 = base64.b64encode(encoded).decode("ascii")
        text_forms: tuple[Any, ...] = (placeholder,)
        if binary_mode != "bytes":  # a bytea's placeholder then arrives as a string in that encoding
            text_forms += (b64 if binary_mode == "base64" else encoded.hex(),)
        self._markers: dict[str, tuple[Any, ...]] = {
            "string": text_forms,
            "bytes": (b64,),
            "array": (*([form] for form in text_forms), [b64]),
        }
        self._values: dict[bytes, _ValueSchema] = {}
        self._keys: dict[bytes, RowDecoder] = {}
        self._tables: dict[tuple[Any, Any], TableId] = {}  # (schema or db, table) as the source names them
        self.compiled_schemas = 0  # value schemas compiled so far (a cache miss each)
        # Per kind: the last schema bytes that hit, and their compiled decoder (see `_repeat_of_last`).
        self._last_value: tuple[bytes, _ValueSchema] | None = None
        self._last_key: tuple[bytes, RowDecoder] | None = None
        self.compiled_key_schemas = 0

    def decode(  # noqa: PLR0917 - the fields of a confluent-kafka Message, in its order
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None, timestamp_ms: int,
    ) -> Record:
        ref: RecordRef = _tuple_new(RecordRef, (topic, partition, offset))
        if not value or value == b"null":
            new_key = self._header_key(ref, key, headers, _NEW_KEY) if headers else None
            return Tombstone(ref, timestamp_ms, new_key)
        # The fast path of `_lookup`, inlined (see `_repeat_of_last`): the value schema of the last one.
        last = self._last_value
        payload: Any = _MISSING
        if last is not None and value.startswith(_SCHEMA_PREFIX) and value[-1:] == b"}":
            schema, compiled = last
            end = 10 + len(schema)
            if value.startswith(schema, 10) and value.startswith(_PAYLOAD_SEPARATOR, end):
                try:  # noqa: SIM105 - suppress() would cost a context manager per event
                    payload = orjson.loads(value[end + 11 : -1])
                except orjson.JSONDecodeError:
                    pass  # the full parse says what is wrong
        if payload is _MISSING:
            compiled, payload = self._lookup(ref, value, self._values, self._compile_value, "value")
        if type(payload) is not dict:
            raise DecodeError(f"cannot decode {ref}: the value payload is {json_type(payload)}, expected an object")
        kind = compiled.kind
        if kind == _ROW:
            return self._change(ref, compiled, payload, key, headers=headers, timestamp_ms=timestamp_ms)
        if kind == _HEARTBEAT or (kind == _UNKNOWN and topic.startswith(self._heartbeat_prefix)):
            return Heartbeat(ref, _int(ref, payload, "ts_ms"), timestamp_ms)
        if kind == _TRANSACTION or (kind == _UNKNOWN and topic.endswith(".transaction") and "status" in payload):
            return TransactionMarker(ref, _str(ref, payload, "status"), _str(ref, payload, "id"), timestamp_ms)
        if kind == _MESSAGE:
            return self._message(ref, compiled, payload, timestamp_ms)
        if kind == _SCHEMA_CHANGE:
            return self._schema_change(ref, compiled, payload, timestamp_ms)
        raise DecodeError(f"cannot decode {ref}: not a Debezium record this decoder knows (value schema "
                          f"{compiled.name!r})")

    # --- the row change: the hot path --------------------------------------------------------------

    def _change(self, ref: RecordRef, compiled: _ValueSchema, payload: dict[str, Any], key: bytes | None, *,
                headers: list[tuple[str, bytes | None]] | None, timestamp_ms: int) -> ChangeEvent:
        # Per event: kept to few Python calls (the cache hits of `_table`, `_position` and `_int` are
        # inlined; each of them is called on a miss or to raise its error).
        op = payload.get("op")
        if op not in _ROW_OPS:
            raise DecodeError(f"cannot decode {ref}: unknown op {op!r}")
        source = payload.get("source")
        if type(source) is not dict:
            raise DecodeError(f"cannot decode {ref}: the event has no source block")
        after_decoder, before_decoder = compiled.after, compiled.before
        assert after_decoder is not None and before_decoder is not None  # set for every _ROW schema
        raw = payload.get("after")
        after, unavailable = (None, None) if raw is None else after_decoder.decode(raw, ref, "after")
        if after is None and op in _NEEDS_AFTER:
            raise DecodeError(f"cannot decode {ref}: op {op!r} without an 'after' row")
        raw = payload.get("before")
        # Placeholders in `before` are dropped too; only its key columns matter under DEFAULT identity.
        before = None if raw is None else before_decoder.decode(raw, ref, "before")[0]
        snapshot = source.get("snapshot")
        streaming = snapshot is None or snapshot == "false"
        txid = source.get("txId")
        if txid is not None and type(txid) is not int:
            raise DecodeError(f"cannot decode {ref}: source 'txId' is {json_type(txid)}, expected an integer")
        key_decoder, key_row = self._key(ref, key)
        flavour = compiled.flavour
        table = self._tables.get((source.get("schema") if flavour == _PG else source.get("db"), source.get("table")))
        if table is None:
            table = self._table(ref, compiled, source)
        position: SourcePosition | None = None
        if streaming:
            try:
                if flavour == _PG:
                    last_commit, lsn = orjson.loads(source["sequence"])
                    position = _tuple_new(SourcePosition, (int(last_commit or 0), int(lsn), 0))
                else:
                    position = _tuple_new(SourcePosition, (int(source["file"].rpartition(".")[2]),
                                                           int(source["pos"]), int(source.get("row") or 0)))
            except _POSITION_ERRORS:
                position = self._position(ref, flavour, source)  # the other forms, or the error
        ts_ms = source.get("ts_ms")
        if type(ts_ms) is not int:
            ts_ms = _int(ref, source, "ts_ms")
        event = ChangeEvent(
            ref, op, table, key_row, before, after,
            frozenset(unavailable) if unavailable else _NO_COLUMNS,
            position, ts_ms, timestamp_ms, txid, None, None, not streaming,
            after_decoder.columns, after_decoder.column_types,
        )
        if headers:
            event.old_key = self._header_key(ref, key, headers, _OLD_KEY, key_decoder)
            event.new_key = self._header_key(ref, key, headers, _NEW_KEY, key_decoder)
        return event

    def _table(self, ref: RecordRef, compiled: _ValueSchema, source: dict[str, Any]) -> TableId:
        schema = source.get("schema") if compiled.flavour == _PG else source.get("db")
        name = source.get("table")
        found = self._tables.get((schema, name))  # their types are checked on a miss, below
        if found is None:
            if type(schema) is not str or type(name) is not str:
                raise DecodeError(f"cannot decode {ref}: source block names no table ({schema!r}, {name!r})")
            if len(self._tables) >= _CACHE_LIMIT:
                self._tables.clear()
            found = self._tables[(schema, name)] = TableId(schema, name)
        return found

    def _position(self, ref: RecordRef, flavour: str | None, source: dict[str, Any]) -> SourcePosition:
        """The event's place in the source's order. PostgreSQL: `sequence` is
        '["<lastCommitLsn>","<lsn>"]'; the first is null for the first transaction of a connector that
        starts without offsets, and then the position has major 0, i.e. no known commit order
        (`SourcePosition.ordered` is False): see the applier for what that means."""
        try:
            if flavour == _PG:
                sequence = source.get("sequence")
                if sequence is None:
                    return SourcePosition(0, int(source["lsn"]), 0)
                last_commit, lsn = orjson.loads(sequence)
                return SourcePosition(int(last_commit or 0), int(lsn), 0)
            # binlog: "binlog.000004" → 4, then the event's position and its row inside the event
            file_number = int(source["file"].rpartition(".")[2])
            return SourcePosition(file_number, int(source["pos"]), int(source.get("row") or 0))
        except _POSITION_ERRORS as exc:
            raise DecodeError(f"cannot decode {ref}: no source position in {_position_fields(source)}: "
                              f"{exc!r}") from exc

    # --- keys --------------------------------------------------------------------------------------

    def _key(self, ref: RecordRef, key: bytes | None) -> tuple[RowDecoder | None, Row | None]:
        if not key or key == b"null":
            return None, None  # a table without a primary key, or a truncate
        last = self._last_key  # the fast path of `_lookup`, inlined (see `_repeat_of_last`)
        payload: Any = _MISSING
        if last is not None and key.startswith(_SCHEMA_PREFIX) and key[-1:] == b"}":
            schema, decoder = last
            end = 10 + len(schema)
            if key.startswith(schema, 10) and key.startswith(_PAYLOAD_SEPARATOR, end):
                try:  # noqa: SIM105 - suppress() would cost a context manager per event
                    payload = orjson.loads(key[end + 11 : -1])
                except orjson.JSONDecodeError:
                    pass  # the full parse says what is wrong
        if payload is _MISSING:
            decoder, payload = self._lookup(ref, key, self._keys, self._compile_key, "key")
        if payload is None:
            return decoder, None
        return decoder, decoder.decode(payload, ref, "key")[0]

    def _header_key(self, ref: RecordRef, key: bytes | None, headers: list[tuple[str, bytes | None]],
                    header: str, decoder: RowDecoder | None = None) -> Row | None:
        """A PK change's `__debezium.oldkey`/`newkey` header: plain JSON, typed by the key's schema."""
        data = next((data for name, data in headers if name == header), None)
        if data is None:
            return None
        if decoder is None:
            decoder = self._key(ref, key)[0]
            if decoder is None:
                raise DecodeError(f"cannot decode {ref}: header {header} on a record without a key schema")
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"cannot decode {ref}: header {header} is not JSON: {exc}") from exc
        if type(raw) is dict and raw.keys() == {"schema", "payload"} and "schema" not in decoder.columns:
            raw = raw["payload"]  # tolerate a header converter that wrapped it like a record
        return decoder.decode(raw, ref, f"header {header}")[0]

    # --- the other record kinds --------------------------------------------------------------------

    def _message(self, ref: RecordRef, compiled: _ValueSchema, payload: dict[str, Any],
                 timestamp_ms: int) -> LogicalMessage:
        source, message = payload.get("source"), payload.get("message")
        if payload.get("op") != "m" or type(source) is not dict or type(message) is not dict:
            raise DecodeError(f"cannot decode {ref}: a logical message needs op 'm', a source and a message")
        content = message.get("content")
        try:
            data = b"" if content is None else base64_bytes(content)
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"cannot decode {ref}: message column 'content': {exc}") from exc
        snapshot = source.get("snapshot")
        position = self._position(ref, compiled.flavour, source) if snapshot in (None, "false") else None
        prefix = message.get("prefix")
        return LogicalMessage(ref, prefix if type(prefix) is str else "", data, position,
                              _int(ref, source, "ts_ms"), timestamp_ms, source.get("txId"))

    def _schema_change(self, ref: RecordRef, compiled: _ValueSchema, payload: dict[str, Any],
                       timestamp_ms: int) -> SchemaChange:
        source, changes = payload.get("source"), payload.get("tableChanges") or []
        if type(source) is not dict or type(changes) is not list or not all(type(c) is dict for c in changes):
            raise DecodeError(f"cannot decode {ref}: a schema change needs a source and a tableChanges list")
        position = self._position(ref, compiled.flavour, source) if source.get("snapshot") in (None, "false") else None
        return SchemaChange(
            ref, payload.get("databaseName") or "", payload.get("ddl") or "",
            tuple(str(change.get("id")) for change in changes), tuple(str(change.get("type")) for change in changes),
            position, _int(ref, source, "ts_ms"), timestamp_ms,
        )

    # --- parsing and the compiled-schema caches ----------------------------------------------------

    def _repeat_of_last(self, data: bytes, what: str) -> tuple[Any, Any] | None:
        """Fastest path: the same schema bytes as the previous record of this kind (records come
        grouped by partition, so nearly always): a compare, no search, no hash of ~6 kB."""
        last: tuple[bytes, Any] | None = self._last_value if what == "value" else self._last_key
        if last is None or not data.startswith(last[0], 10):
            return None
        end = 10 + len(last[0])
        if not data.startswith(_PAYLOAD_SEPARATOR, end):
            return None
        try:
            return last[1], orjson.loads(data[end + 11 : -1])
        except orjson.JSONDecodeError:
            return None  # the full parse says what is wrong

    def _remember(self, what: str, schema: bytes, compiled: Any) -> None:
        if what == "value":
            self._last_value = (schema, compiled)
        else:
            self._last_key = (schema, compiled)

    def _lookup(self, ref: RecordRef, data: bytes, cache: dict[bytes, _T],
                compile_schema: Callable[[RecordRef, Any], _T], what: str) -> tuple[_T, Any]:
        split = -1
        if data[:10] == _SCHEMA_PREFIX and data[-1:] == b"}":
            repeated = self._repeat_of_last(data, what)
            if repeated is not None:
                return repeated  # the decoder of the same kind (key or value) as this cache holds
            split = data.find(_PAYLOAD_SEPARATOR, 10)
            if split > 0:
                compiled = cache.get(data[10:split])
                if compiled is not None:
                    try:
                        payload = orjson.loads(data[split + 11 : -1])
                    except orjson.JSONDecodeError:
                        pass  # the full parse below says what is wrong
                    else:
                        self._remember(what, data[10:split], compiled)
                        return compiled, payload
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"cannot decode {ref}: the {what} is not valid JSON: {exc}") from exc
        if type(document) is not dict or document.keys() != {"schema", "payload"}:
            raise DecodeError(f"cannot decode {ref}: the {what} is not a JsonConverter record with schemas "
                              f"enabled ({{\"schema\", \"payload\"}})")
        schema = document["schema"]
        cache_key = data[10:split] if split > 0 else b""
        if not cache_key or _loads_or_none(cache_key) != schema:
            cache_key = b"\0" + orjson.dumps(schema)  # not JsonConverter's compact layout: keyed on content
        compiled = cache.get(cache_key)
        if compiled is None:
            compiled = compile_schema(ref, schema)
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[cache_key] = compiled
        return compiled, document["payload"]

    def _compile_value(self, ref: RecordRef, schema: Any) -> _ValueSchema:
        self.compiled_schemas += 1
        if type(schema) is not dict:
            raise DecodeError(f"cannot decode {ref}: the value schema is {json_type(schema)}, expected a struct")
        name = schema.get("name")
        fields = {f.get("field"): f for f in schema.get("fields") or () if type(f) is dict}
        source = fields.get("source")
        source_fields = {f.get("field") for f in (source or {}).get("fields") or () if type(f) is dict}
        flavour = _BINLOG if "file" in source_fields else _PG if "lsn" in source_fields else None
        if name == "io.debezium.connector.common.Heartbeat":
            return _ValueSchema(_HEARTBEAT)
        if name == "io.debezium.connector.common.TransactionMetadataValue":
            return _ValueSchema(_TRANSACTION)
        if "source" in fields and flavour is None:
            raise DecodeError(f"cannot decode {ref}: unsupported source connector ({source and source.get('name')})")
        if name == "io.debezium.connector.mysql.SchemaChangeValue":
            return _ValueSchema(_SCHEMA_CHANGE, flavour)
        if "op" in fields and "message" in fields:
            return _ValueSchema(_MESSAGE, flavour)
        if "op" in fields and flavour is not None and ("after" in fields or "before" in fields):
            after_schema = fields.get("after") or fields["before"]
            before_schema = fields.get("before") or after_schema
            after = self._compile_row(ref, after_schema, "after")
            before = after if before_schema == after_schema else self._compile_row(ref, before_schema, "before")
            return _ValueSchema(_ROW, flavour, before, after)
        return _ValueSchema(_UNKNOWN, name=name)

    def _compile_key(self, ref: RecordRef, schema: Any) -> RowDecoder:
        self.compiled_key_schemas += 1
        return self._compile_row(ref, schema, "key")

    def _compile_row(self, ref: RecordRef, schema: Any, what: str) -> RowDecoder:
        if type(schema) is not dict or schema.get("type") != "struct":
            raise DecodeError(f"cannot decode {ref}: the {what} schema is not a struct")
        fields: list[_Column] = []
        column_types: dict[str, ColumnType] = {}
        for field in schema.get("fields") or ():
            name = field.get("field") if type(field) is dict else None
            if type(name) is not str:
                raise DecodeError(f"cannot decode {ref}: the {what} schema has a field without a name")
            try:
                codec = codec_for(field, self._binary_mode)
            except ColumnSchemaError as exc:
                raise DecodeError(f"cannot decode {ref}: {what} column {name!r}: {exc}") from exc
            markers = self._markers.get(field.get("type", "")) if what != "key" else None
            fields.append((name, codec.expect, codec.convert, codec.other, bool(field.get("optional")), markers))
            column_types[name] = column_type(field)
        return RowDecoder(fields, column_types)


def _loads_or_none(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _int(ref: RecordRef, obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name)
    if type(value) is not int:
        raise DecodeError(f"cannot decode {ref}: {name!r} is {json_type(value)}, expected an integer")
    return value


def _str(ref: RecordRef, obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if type(value) is not str:
        raise DecodeError(f"cannot decode {ref}: {name!r} is {json_type(value)}, expected a string")
    return value


def _position_fields(source: Mapping[str, Any]) -> dict[str, Any]:
    return {name: source.get(name) for name in ("sequence", "lsn", "file", "pos", "row") if name in source}
