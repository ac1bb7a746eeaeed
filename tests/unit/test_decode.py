"""EnvelopeDecoder against real Debezium 3.0.7 captures (tests/unit/fixtures/debezium, copied from the
shared reference) plus synthetic variants of them for what the captures do not hold."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import math
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.apply import decode as decode_module
from replicator.apply.decode import EnvelopeDecoder
from replicator.apply.logical import codec_for, date_from_days, decimal_from_unscaled, timestamp_from_us
from replicator.errors import DecodeError
from replicator.events import (
    ChangeEvent,
    ColumnType,
    Geometry,
    Heartbeat,
    LogicalMessage,
    Record,
    SchemaChange,
    SourcePosition,
    Tombstone,
    TransactionMarker,
)
from replicator.model import TableId

FIXTURES = Path(__file__).parent / "fixtures" / "debezium"
UTC = dt.UTC
PLACEHOLDER = "__debezium_unavailable_value"


def lines(name: str) -> list[dict[str, Any]]:
    with (FIXTURES / f"{name}.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()  # JsonConverter's own layout


def spaced_out(obj: Any) -> bytes:
    return json.dumps(obj).encode()  # `{"schema": {...}, "payload": ...}`: not the fast path's shape


def binary_mode(name: str) -> str:
    return "hex" if "binary-hex" in name else "base64" if "binary-base64" in name else "bytes"


def decode_line(decoder: EnvelopeDecoder, line: dict[str, Any], offset: int = 0, *, spaced: bool = False) -> Record:
    dump = spaced_out if spaced else compact
    key = None if line["key"] is None else dump(line["key"])
    value = None if line["value"] is None else dump(line["value"])
    headers: list[tuple[str, bytes | None]] | None = None
    if "headers" in line:  # the fixture holds each header as parsed JSON; Kafka carries its text
        headers = [(name, compact(data)) for name, data in line["headers"].items()]
    return decoder.decode(line["topic"], 0, offset, key, value, headers, 1_800_000_000_000)


def decode_file(name: str, **options: Any) -> list[Record]:
    decoder = EnvelopeDecoder(binary_mode=binary_mode(name), **options)
    return [decode_line(decoder, line, offset) for offset, line in enumerate(lines(name))]


def event(name: str, index: int) -> ChangeEvent:
    record = decode_file(name)[index]
    assert isinstance(record, ChangeEvent)
    return record


def after(name: str, index: int) -> dict[str, Any]:
    row = event(name, index).after
    assert row is not None
    return row


def expected_kind(line: dict[str, Any]) -> type:
    if line["value"] is None:
        return Tombstone
    if line["topic"].startswith("__debezium-heartbeat."):
        return Heartbeat
    name = line["value"]["schema"].get("name", "")
    if name.endswith(".TransactionMetadataValue"):
        return TransactionMarker
    if name.endswith(".SchemaChangeValue"):
        return SchemaChange
    if line["value"]["payload"].get("op") == "m":
        return LogicalMessage
    return ChangeEvent


FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.jsonl"))


# --- every captured record ---------------------------------------------------------------------------

def test_all_fixture_files_are_present() -> None:
    assert len(FIXTURE_NAMES) == 17


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_line_decodes_into_its_kind(name: str) -> None:
    records = decode_file(name)
    for line, record in zip(lines(name), records, strict=True):
        assert type(record) is expected_kind(line)
        if isinstance(record, ChangeEvent):
            payload = line["value"]["payload"]
            assert record.op == payload["op"]
            assert record.key == (line["key"] or {}).get("payload")  # fixture keys are ints and strings
            assert record.source_ts_ms == payload["source"]["ts_ms"]
            assert record.kafka_ts_ms == 1_800_000_000_000
            assert record.ref.topic == line["topic"]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_the_fallback_parse_gives_the_same_records(name: str) -> None:
    fast = EnvelopeDecoder(binary_mode=binary_mode(name))
    slow = EnvelopeDecoder(binary_mode=binary_mode(name))
    for offset, line in enumerate(lines(name)):
        # repr, not ==: NaN floats are in there and never equal themselves
        assert repr(decode_line(fast, line, offset)) == repr(decode_line(slow, line, offset, spaced=True))


def test_a_schema_is_compiled_once_per_table() -> None:
    decoder = EnvelopeDecoder()
    line = lines("pg_default_types_stream")[0]
    key, value = compact(line["key"]), compact(line["value"])
    for offset in range(100):
        record = decoder.decode(line["topic"], 0, offset, key, value, None, 1)
        assert isinstance(record, ChangeEvent)
    assert decoder.compiled_schemas == 1
    assert decoder.compiled_key_schemas == 1


def test_the_spaced_layout_is_cached_too() -> None:
    decoder = EnvelopeDecoder()
    line = lines("pg_default_types_stream")[0]
    for offset in range(5):
        decode_line(decoder, line, offset, spaced=True)
    assert decoder.compiled_schemas == 1


def test_a_schema_holding_the_payload_separator_takes_the_safe_path() -> None:
    line = copy.deepcopy(lines("pg_default_types_stream")[0])
    for struct in line["value"]["schema"]["fields"][:2]:
        struct["fields"][1]["parameters"] = {"a": "1", "payload": "trap"}  # `,"payload":` inside the schema
    raw = compact(line["value"])
    assert raw.find(b',"payload":') < raw.rfind(b',"payload":')
    decoder = EnvelopeDecoder()
    for offset in range(3):
        record = decode_line(decoder, line, offset)
        assert isinstance(record, ChangeEvent) and record.after is not None
        assert record.after["c_smallint"] == -32768
        assert record.column_types["c_smallint"].parameter("payload") == "trap"
    assert decoder.compiled_schemas == 1


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_module, "_CACHE_LIMIT", 2)
    decoder = EnvelopeDecoder()
    tables = [line for line in lines("pg_default_snapshot") if line["topic"].endswith(("composite", "evolve", "nopk"))]
    for offset, line in enumerate(tables + tables[:1]):
        decode_line(decoder, line, offset)
    assert decoder.compiled_schemas == 4  # the first schema was evicted and compiled again


# --- PostgreSQL type matrix (reference §5) -----------------------------------------------------------

def test_pg_type_matrix() -> None:
    row = after("pg_default_types_stream", 0)
    assert row == {
        "id": 3, "c_smallint": -32768, "c_integer": 2147483647, "c_bigint": 9223372036854775807, "c_bigserial": 3,
        "c_numeric": Decimal("123456789.125"), "c_numeric_p0": Decimal("12345"),
        "c_numeric_nop": Decimal("3.14159265358979323846264338327950288"),
        "c_real": 1.5, "c_double": 2.718281828459045, "c_bool": True,
        "c_text": 'héllo wörld ✓ "quoted"', "c_varchar": "varchar val", "c_char": "ab   ",
        "c_bytea": bytes.fromhex("deadbeef00ff"), "c_uuid": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "c_json": '{"b": 2, "a": [1, 2.50, null]}', "c_jsonb": '{"a": [1, 2.50, null], "b": 2}',
        "c_date": dt.date(2024, 2, 29), "c_time": dt.timedelta(hours=13, minutes=45, seconds=30, microseconds=123456),
        "c_time3": dt.timedelta(hours=13, minutes=45, seconds=30, milliseconds=123),
        "c_timetz": dt.time(8, 15, 30, 500000, tzinfo=UTC),
        "c_ts": dt.datetime(2024, 2, 29, 13, 45, 30, 123456), "c_ts3": dt.datetime(2024, 2, 29, 13, 45, 30, 123000),
        "c_tstz": dt.datetime(2024, 2, 29, 11, 45, 30, 123456, tzinfo=UTC),
        "c_interval": dt.timedelta(microseconds=37091106789000),
        "c_int_arr": [1, 2, None, 4], "c_text_arr": ["a", "b c", None, "d,e"], "c_enum": "happy",
        "c_inet": "192.168.1.10/24", "c_cidr": "10.0.0.0/8", "c_macaddr": "08:00:2b:01:02:03",
        "c_money": Decimal("1234.56"), "c_bit1": True, "c_bit8": "10100101", "c_varbit": "0000000000001011",
        "c_xml": '<a x="1">text</a>',
        "c_point": Geometry(base64.b64decode("AQEAAAAAAAAAAAD4PwAAAAAAAALA"), None, 1.5, -2.25),
        "c_hstore": '{"a":"1","b c":null}', "c_ltree": "Top.Science.Astronomy", "c_int4range": "[1,10)",
        "c_oid": 12345, "c_notnull": 42, "c_dflt_text": "hello",
    }
    assert type(row["c_tstz"].tzinfo) is dt.timezone
    assert tuple(row) == event("pg_default_types_stream", 0).columns  # schema field order


def test_pg_edge_values() -> None:
    rows = {row["id"]: row for row in (r.after for r in decode_file("pg_default_types_stream")
                                       if isinstance(r, ChangeEvent)) if row is not None}
    assert rows[42]["c_numeric"] == Decimal("-0.001") and str(rows[42]["c_numeric"]) == "-0.001"
    assert rows[42]["c_numeric_p0"] == Decimal("-99999")
    assert str(rows[42]["c_numeric_nop"]) == "-12345678901234567890.000000000000000001"  # beyond 28 digits
    assert rows[42]["c_money"] == Decimal("-0.99")
    assert str(rows[43]["c_numeric"]) == "1.100"  # the scale is kept
    assert str(rows[43]["c_numeric_nop"]) == "100.5"  # VariableScaleDecimal strips trailing zeros
    assert math.isnan(rows[44]["c_real"]) and rows[44]["c_double"] == math.inf
    assert rows[45]["c_real"] == 1.17549435e-38 and rows[45]["c_double"] == -math.inf
    assert (rows[46]["c_date"], rows[46]["c_ts"], rows[46]["c_tstz"]) == ("infinity", "infinity", "-infinity")
    assert rows[47]["c_date"] == dt.date(1900, 1, 1) and rows[47]["c_ts"] == dt.datetime(1, 1, 1)
    assert rows[47]["c_tstz"] == dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert rows[48]["c_date"] == "0044-03-15 BC" and rows[48]["c_ts"] == "0044-03-15 12:00:00 BC"
    assert rows[49]["c_time"] == dt.timedelta(hours=24) and rows[49]["c_timetz"] == dt.time(7, 30, tzinfo=UTC)
    assert rows[50]["c_interval"] == -dt.timedelta(days=1, hours=2)
    assert rows[51]["c_interval"] == dt.timedelta(microseconds=2629800000000)
    assert {k: rows[52][k] for k in ("c_text", "c_bytea", "c_json", "c_jsonb", "c_int_arr", "c_varbit", "c_hstore")} \
        == {"c_text": "", "c_bytea": b"", "c_json": "null", "c_jsonb": "[]", "c_int_arr": [], "c_varbit": "",
            "c_hstore": "{}"}
    assert rows[53]["c_jsonb"] == '{"e": "é\\n", "n": 100}'
    assert rows[55]["c_text_arr"] == ['q"uote', "back\\\\slash", "{brace}"]
    assert rows[56]["c_tstz"] == dt.datetime(2024, 7, 1, 16, tzinfo=UTC) and rows[56]["c_timetz"].hour == 17
    assert rows[57]["c_int_arr"] == [None, None]  # multi-dim arrays: Debezium already lost the data


def test_pg_streaming_bc_and_infinity_variants() -> None:
    rows = {r.after["id"]: r.after for r in decode_file(
        "pg_variant_decimal-double_time-adaptive_time_microseconds_binary-base64") if isinstance(r, ChangeEvent)
        and r.after is not None}
    assert rows[148]["c_tstz"] == "0044-03-15 12:00:00+00 BC"
    assert rows[148]["c_date"] == "0044-03-15 BC"
    assert rows[147]["c_tstz"] == dt.datetime(1, 1, 1, tzinfo=UTC) and rows[147]["c_date"] == dt.date(1, 1, 1)
    assert (rows[149]["c_date"], rows[149]["c_ts"]) == ("-infinity", "-infinity")
    assert rows[47]["c_ts"] == "0001-12-30 00:00:00 BC"  # the snapshot's Julian-calendar value, still readable
    assert rows[48]["c_date"] == dt.date(44, 3, 15)  # the snapshot lost the era: Debezium's doing, kept as sent


def test_pg_decimal_double_time_micro_binary_base64() -> None:
    rows = {r.after["id"]: r.after for r in decode_file(
        "pg_variant_decimal-double_time-adaptive_time_microseconds_binary-base64") if isinstance(r, ChangeEvent)
        and r.after is not None}
    # no source type propagated: a double is a double, a base64 string may be text
    assert rows[1]["c_numeric"] == 123456789.125 and type(rows[1]["c_numeric"]) is float
    assert rows[1]["c_money"] == 1234.56
    assert math.isnan(rows[40]["c_numeric"]) and rows[140]["c_numeric_nop"] == math.inf
    assert rows[1]["c_bytea"] == "3q2+7wD/"
    assert rows[1]["c_time3"] == dt.timedelta(hours=13, minutes=45, seconds=30, milliseconds=123)  # MicroTime
    assert rows[60]["c_varbit"] == "0000000100000010" and rows[60]["c_bit8"] == "00000001"


def test_pg_decimal_string_time_connect_binary_hex_interval_string_hstore_map() -> None:
    name = "pg_variant_decimal-string_time-connect_binary-hex_interval-string_hstore-map"
    rows = {r.after["id"]: r.after for r in decode_file(name) if isinstance(r, ChangeEvent) and r.after is not None}
    assert rows[1]["c_numeric"] == "123456789.125"  # a plain string: without the source type it may be text
    assert rows[1]["c_bytea"] == "deadbeef00ff"
    assert rows[1]["c_time"] == dt.timedelta(hours=13, minutes=45, seconds=30, milliseconds=123)  # connect: ms
    assert rows[1]["c_ts"] == dt.datetime(2024, 2, 29, 13, 45, 30, 123000)
    assert rows[1]["c_date"] == dt.date(2024, 2, 29)
    assert rows[1]["c_interval"] == "P1Y2M3DT4H5M6.789S" and rows[50]["c_interval"] == "P0Y0M-1DT-2H0M0S"
    assert rows[1]["c_hstore"] == {"a": "1", "b c": None}
    assert rows[140]["c_ts"] == "infinity" and rows[149]["c_ts"] == "-infinity"  # the ms sentinels
    assert rows[148]["c_ts"] == "0044-03-15 12:00:00 BC"
    assert rows[49]["c_time"] == dt.timedelta(hours=24)
    column = event(name, 0).column_types["c_hstore"]
    assert (column.connect_type, column.logical) == ("map", None)


def test_pg_propagated_source_types_and_unknown_datatypes() -> None:
    record = event("pg_variant_propagate-source-type_include-unknown-datatypes", 0)
    assert record.after is not None
    assert record.after["c_tsvector"] == "'brown':3 'fox':4 'jump':5 'quick':2"  # bytes holding text
    assert record.after["c_bytea"] == bytes.fromhex("deadbeef00ff")
    assert record.after["c_numeric"] == Decimal("123456789.125")
    column = record.column_types["c_numeric"]
    assert column == ColumnType("bytes", "org.apache.kafka.connect.data.Decimal", True, (
        ("scale", "3"), ("connect.decimal.precision", "12"), ("__debezium.source.column.type", "NUMERIC"),
        ("__debezium.source.column.length", "12"), ("__debezium.source.column.scale", "3"),
        ("__debezium.source.column.name", "c_numeric")))
    assert column.parameter("__debezium.source.column.length") == "12"
    arr = record.column_types["c_int_arr"]
    assert arr.item == ColumnType("int32", None, True) and arr.parameter("__debezium.source.column.type") == "_INT4"
    assert record.column_types["c_real"].connect_type == "float32"
    assert record.column_types["c_double"].connect_type == "float64"
    assert record.column_types["id"].optional is False


# --- MariaDB type matrix (reference §6) --------------------------------------------------------------

def test_mariadb_type_matrix() -> None:
    row = after("my_default_types_stream", 0)
    expected = {
        "c_tinyint": -128, "c_tinyint1": 1, "c_bool": 1, "c_tinyint_u": 255, "c_smallint": -32768,
        "c_smallint_u": 65535, "c_mediumint": -8388608, "c_mediumint_u": 16777215, "c_int": -2147483648,
        "c_int_u": 4294967295, "c_bigint": -9223372036854775808, "c_bigint_u": -1,  # wrapped: no source type
        "c_decimal": Decimal("123456789.125"), "c_decimal0": Decimal("12345"), "c_decimal_u": Decimal("9999.99"),
        "c_float": 1.5, "c_float_p": 123456.7890625, "c_double": 2.718281828459045, "c_bit1": True,
        "c_bit10": "1000000001", "c_bit64": "1" * 64, "c_char": "ab", "c_varchar": "varchar val",
        "c_blob": bytes.fromhex("deadbeef00ff"), "c_binary": b"\x01\x02\x00\x00", "c_varbinary": b"\xca\xfe",
        "c_enum": "happy", "c_set": ["a", "c"], "c_json": '{"b": 2, "a": [1, 2.50, null]}',
        "c_date": dt.date(2024, 2, 29), "c_time": dt.timedelta(hours=13, minutes=45, seconds=30),
        "c_time6": dt.timedelta(hours=13, minutes=45, seconds=30, microseconds=123456),
        "c_datetime": dt.datetime(2024, 2, 29, 13, 45, 30), "c_datetime3": dt.datetime(2024, 2, 29, 13, 45, 30, 123000),
        "c_datetime6": dt.datetime(2024, 2, 29, 13, 45, 30, 123456),
        "c_timestamp": dt.datetime(2024, 2, 29, 13, 45, 30, tzinfo=UTC),
        "c_timestamp6": dt.datetime(2024, 2, 29, 13, 45, 30, 123456, tzinfo=UTC), "c_year": 2024,
        "c_point": Geometry(base64.b64decode("AQEAAAAAAAAAAAD4PwAAAAAAAALA"), None, 1.5, -2.25),
        "c_notnull": 42, "c_dflt_text": "hello", "c_date_nn": dt.date(2000, 1, 1),
        "c_ts_auto": dt.datetime(2024, 1, 1, tzinfo=UTC),
    }
    assert {name: row[name] for name in expected} == expected
    geometry = row["c_geom"]
    assert isinstance(geometry, Geometry) and geometry.srid is None and geometry.wkb[:5] == b"\x01\x02\x00\x00\x00"


def test_mariadb_edge_values() -> None:
    rows = {r.after["id"]: r.after for r in decode_file("my_default_types_stream")
            if isinstance(r, ChangeEvent) and r.after is not None}
    assert rows[40]["c_timestamp"] == dt.datetime(1970, 1, 1, tzinfo=UTC)  # zero TIMESTAMP, as Debezium sends it
    assert rows[43]["c_time"] == -dt.timedelta(hours=12, minutes=30)
    assert rows[43]["c_time6"] == dt.timedelta(hours=838, minutes=59, seconds=59)
    assert rows[44]["c_time"] == -dt.timedelta(hours=838, minutes=59, seconds=59)
    assert rows[44]["c_time6"] == -dt.timedelta(microseconds=500000)
    assert rows[45]["c_bigint_u"] == -9223372036854775808 and rows[45]["c_bool"] == -1
    assert rows[46]["c_bit10"] == "0000000010" and rows[46]["c_bit64"] == "0" * 63 + "1"
    assert rows[47]["c_timestamp6"] == dt.datetime(2024, 7, 1, 7, 0, 0, 500000, tzinfo=UTC)
    assert rows[48]["c_date"] == dt.date(1000, 1, 1) and rows[48]["c_datetime"] == dt.datetime(1000, 1, 1)
    assert rows[48]["c_datetime6"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert rows[48]["c_year"] == 1901 and rows[49]["c_year"] == 2155
    assert rows[49]["c_binary"] == b"\x01\x00\x00\x00" and rows[49]["c_varchar"] == "ab  "
    assert rows[50]["c_set"] == [] and rows[50]["c_blob"] == b"" and rows[50]["c_json"] == "{}"
    assert rows[51]["c_json"] == '{"e": "\\u00e9\\n", "n": 1.0e2, "big": 12345678901234567890}'
    assert rows[52]["c_float_p"] == 0.10000000149011612
    assert rows[53]["c_geom"] == Geometry(base64.b64decode("AQEAAAAAAAAAAAAkQAAAAAAAADRA"), 4326)
    assert rows[53]["c_point"] == Geometry(base64.b64decode("AQEAAAAAAAAAAAAIQAAAAAAAABBA"), 4326, 3.0, 4.0)


def test_mariadb_propagated_source_type_unwraps_bigint_unsigned() -> None:
    row = after("my_variant_propagate-source-type", 0)
    assert row["c_bigint_u"] == 2**64 - 1
    assert row["c_bigint"] == -9223372036854775808  # signed BIGINT stays as it is
    assert row["c_blob"] == bytes.fromhex("deadbeef00ff") and row["c_decimal_u"] == Decimal("9999.99")


def test_mariadb_decimal_string_time_connect_binary_hex_bigint_precise() -> None:
    name = "my_variant_decimal-string_time-connect_binary-hex_bigint-unsigned-precise"
    rows = {r.after["id"]: r.after for r in decode_file(name) if isinstance(r, ChangeEvent) and r.after is not None}
    assert rows[1]["c_bigint_u"] == Decimal(2**64 - 1) and rows[45]["c_bigint_u"] == Decimal(2**63)
    assert rows[1]["c_decimal"] == "123456789.125" and rows[45]["c_decimal"] == "-0.001"
    assert rows[1]["c_blob"] == "deadbeef00ff" and rows[1]["c_binary"] == "01020000"  # text without source type
    assert rows[1]["c_time"] == dt.timedelta(hours=13, minutes=45, seconds=30)
    assert rows[1]["c_time6"] == dt.timedelta(hours=13, minutes=45, seconds=30, milliseconds=123)
    assert rows[1]["c_datetime6"] == dt.datetime(2024, 2, 29, 13, 45, 30, 123000)
    assert rows[43]["c_time"] is None  # connect mode nulls TIMEs outside 0..24h (Debezium's loss)
    assert rows[1]["c_date_nn"] == dt.date(2000, 1, 1)


def test_mariadb_decimal_double_binary_base64() -> None:
    rows = {r.after["id"]: r.after for r in decode_file("my_variant_decimal-double_binary-base64")
            if isinstance(r, ChangeEvent) and r.after is not None}
    assert rows[1]["c_decimal"] == 123456789.125 and rows[45]["c_decimal0"] == -99999.0
    assert rows[1]["c_blob"] == "3q2+7wD/"
    assert rows[47]["c_timestamp6"] == dt.datetime(2024, 7, 1, 7, 0, 0, 500000, tzinfo=UTC)  # snapshot trims


# --- synthetic columns: the connector options the captures lack --------------------------------------

TEMPLATE = lines("pg_default_toast")[0]


def synthetic(columns: list[dict[str, Any]], row: dict[str, Any], *, op: str = "c", snapshot: str = "false",
              **source: Any) -> dict[str, Any]:
    """A pgdef.dbzref.toast_default record whose Value struct is `columns` and whose after is `row`."""
    line = copy.deepcopy(TEMPLATE)
    for struct in line["value"]["schema"]["fields"][:2]:
        struct["fields"] = [{"optional": True, **column} for column in columns]
    line["value"]["payload"].update(op=op, after=row)
    line["value"]["payload"]["source"].update(snapshot=snapshot, **source)
    return line


def decode_synthetic(columns: list[dict[str, Any]], row: dict[str, Any], mode: str = "bytes") -> dict[str, Any]:
    record = decode_line(EnvelopeDecoder(binary_mode=mode), synthetic(columns, row), 7)
    assert isinstance(record, ChangeEvent) and record.after is not None
    return record.after


def sourced(kind: str, column_type: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "parameters": {"__debezium.source.column.type": column_type}, **extra}


def test_decimal_modes_with_a_propagated_source_type() -> None:
    columns = [{"field": "d", **sourced("double", "NUMERIC")}, {"field": "m", **sourced("double", "MONEY")},
               {"field": "n", **sourced("double", "NUMERIC")}, {"field": "s", **sourced("string", "NUMERIC")},
               {"field": "i", **sourced("string", "DECIMAL UNSIGNED")}, {"field": "x", **sourced("string", "NUMERIC")},
               {"field": "f", "type": "double"}]
    row = decode_synthetic(columns, {"d": 0.1, "m": 1234.56, "n": "NaN", "s": "100.500", "i": "POSITIVE_INFINITY",
                                     "x": "NAN", "f": 0.1})
    assert row["d"] == Decimal("0.1") and row["m"] == Decimal("1234.56")
    assert row["n"].is_nan() and row["x"].is_nan() and row["i"] == Decimal("Infinity")
    assert str(row["s"]) == "100.500"
    assert row["f"] == 0.1 and type(row["f"]) is float


@pytest.mark.parametrize(("mode", "text"), [("base64", "3q2+7wD/"), ("hex", "deadbeef00ff")])
def test_binary_modes_decode_binary_source_types_to_bytes(mode: str, text: str) -> None:
    columns = [{"field": "b", **sourced("string", "BYTEA")}, {"field": "v", **sourced("string", "VARBINARY")},
               {"field": "t", **sourced("string", "TEXT")}, {"field": "u", "type": "string"},
               {"field": "a", "type": "array", "items": {"type": "string", "optional": True},
                "parameters": {"__debezium.source.column.type": "_BYTEA"}}]
    row = decode_synthetic(columns, {"b": text, "v": text, "t": text, "u": text, "a": [text, None]}, mode)
    raw = bytes.fromhex("deadbeef00ff")
    assert row == {"b": raw, "v": raw, "t": text, "u": text, "a": [raw, None]}


def test_containers_and_nested_values() -> None:
    columns: list[dict[str, Any]] = [
        {"field": "nested", "type": "array", "items": {"type": "array", "optional": True,
                                                       "items": {"type": "int32", "optional": False}}},
        {"field": "dates", "type": "array", "items": {"type": "int32", "name": "io.debezium.time.Date",
                                                      "optional": True}},
        {"field": "pairs", "type": "map", "keys": {"type": "int32", "optional": False},
         "values": {"type": "bytes", "optional": True}},
        {"field": "ns", "type": "int64", "name": "io.debezium.time.NanoTimestamp"},
        {"field": "nt", "type": "int64", "name": "io.debezium.time.NanoTime"},
        {"field": "point", "type": "struct", "name": "io.debezium.data.geometry.Point", "fields": []},
        {"field": "unknown", "type": "string", "name": "com.example.Fancy"},
        {"field": "flag", "type": "int8", "name": "com.example.Flag"},
    ]
    row = decode_synthetic(columns, {
        "nested": [[1, 2], None, []], "dates": [0, None], "pairs": [[1, "AQI="], [2, None]],
        "ns": 1_000_000_000_123_456_789, "nt": 1_500, "point": {"x": 1, "y": 2.5, "wkb": None, "srid": 3857},
        "unknown": "kept", "flag": 3,
    })
    assert row["nested"] == [[1, 2], None, []] and row["dates"] == [dt.date(1970, 1, 1), None]
    assert row["pairs"] == {1: b"\x01\x02", 2: None}
    assert row["ns"] == dt.datetime(2001, 9, 9, 1, 46, 40, 123456) and row["nt"] == dt.timedelta(microseconds=1)
    assert row["point"] == Geometry(bytes.fromhex("0101000000000000000000f03f0000000000000440"), 3857, 1.0, 2.5)
    assert (row["unknown"], row["flag"]) == ("kept", 3)


def test_a_zoned_timestamp_in_another_offset_and_the_end_of_day_timetz() -> None:
    columns = [{"field": "z", "type": "string", "name": "io.debezium.time.ZonedTimestamp"},
               {"field": "big", "type": "string", "name": "io.debezium.time.ZonedTimestamp"},
               {"field": "t", "type": "string", "name": "io.debezium.time.ZonedTime"}]
    row = decode_synthetic(columns, {"z": "2024-07-01T12:00:00+05:00", "big": "+10000-01-01T00:00:00Z",
                                     "t": "24:00:00Z"})
    assert row["z"] == dt.datetime(2024, 7, 1, 7, tzinfo=UTC) and row["z"].tzinfo is UTC
    assert row["big"] == "10000-01-01 00:00:00+00"
    assert row["t"] == "24:00:00+00"


# --- TOAST placeholders ------------------------------------------------------------------------------

def test_toast_placeholders_are_left_out_of_after() -> None:
    records = decode_file("pg_default_toast")
    first, second, third = records[1], records[2], records[0]
    assert isinstance(first, ChangeEvent) and isinstance(second, ChangeEvent) and isinstance(third, ChangeEvent)
    assert first.unavailable == frozenset({"big_text", "big_bytea", "big_jsonb", "big_arr"})
    assert first.after == {"id": 1, "counter": 1}
    assert second.unavailable == frozenset({"big_bytea", "big_jsonb", "big_arr"})
    assert second.after is not None and second.after["big_text"].startswith("c4ca4238")
    assert third.unavailable == frozenset() and third.after is not None and len(third.after["big_arr"]) > 1
    assert first.columns == ("id", "counter", "big_text", "big_bytea", "big_jsonb", "big_arr")
    full = records[5]
    assert isinstance(full, ChangeEvent) and full.unavailable == frozenset() and full.before is not None


def test_toast_placeholder_in_a_binary_mode_and_a_custom_placeholder() -> None:
    columns = [{"field": "id", "type": "int32"}, {"field": "b", **sourced("string", "BYTEA")},
               {"field": "h", "type": "string"}, {"field": "raw", "type": "bytes"}]
    hexed = PLACEHOLDER.encode().hex()
    raw = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="  # base64 of the placeholder, as a bytea's JSON
    line = synthetic(columns, {"id": 1, "b": hexed, "h": PLACEHOLDER, "raw": raw})
    record = decode_line(EnvelopeDecoder(binary_mode="hex"), line)
    assert isinstance(record, ChangeEvent)
    assert record.unavailable == frozenset({"b", "h", "raw"}) and record.after == {"id": 1}
    custom = synthetic(columns, {"id": 1, "b": None, "h": "??", "raw": None})
    record = decode_line(EnvelopeDecoder(placeholder="??"), custom)
    assert isinstance(record, ChangeEvent) and record.unavailable == frozenset({"h"})
    record = decode_line(EnvelopeDecoder(placeholder="??"), line)
    assert isinstance(record, ChangeEvent) and record.after is not None and record.after["h"] == PLACEHOLDER


# --- keys, PK changes, truncate, no-PK, snapshots ----------------------------------------------------

@pytest.mark.parametrize("name", ["pg_default_identity_pkchange_nopk", "my_default_identity_pkchange_nopk"])
def test_primary_key_change_headers(name: str) -> None:
    records = decode_file(name)
    delete, tombstone, insert = records[3], records[4], records[5]
    assert isinstance(delete, ChangeEvent) and delete.op == "d" and delete.key == {"id": 2}
    assert delete.new_key == {"id": 20} and delete.old_key is None
    assert isinstance(tombstone, Tombstone) and tombstone.new_key == {"id": 20}
    assert isinstance(insert, ChangeEvent) and insert.op == "c" and insert.key == {"id": 20}
    assert insert.old_key == {"id": 2} and insert.new_key is None and insert.before is None
    composite = next(r for r in records if isinstance(r, ChangeEvent) and r.old_key is not None
                     and r.table.name == "composite")
    assert composite.old_key == {"k1": 2, "k2": "b"} and composite.key == {"k1": 2, "k2": "c"}


def test_header_keys_are_typed_by_the_key_schema() -> None:
    line = copy.deepcopy(lines("pg_default_identity_pkchange_nopk")[5])
    line["key"]["schema"]["fields"][0] = {"type": "int32", "optional": False, "name": "io.debezium.time.Date",
                                          "field": "id"}
    record = decode_line(EnvelopeDecoder(), line)
    assert isinstance(record, ChangeEvent)
    assert record.key == {"id": dt.date(1970, 1, 21)} and record.old_key == {"id": dt.date(1970, 1, 3)}


@pytest.mark.parametrize(("name", "index", "table"), [
    ("pg_txmeta_truncate_heartbeat", 58, TableId("dbzref", "trunc_me")),
    ("my_txmeta-ignored_truncate_heartbeat", 26, TableId("dbzref", "trunc_me")),
])
def test_truncate(name: str, index: int, table: TableId) -> None:
    record = event(name, index)
    assert (record.op, record.key, record.before, record.after, record.table) == ("t", None, None, None, table)
    assert record.position is not None and not record.snapshot


def test_tables_without_a_primary_key() -> None:
    records = decode_file("pg_default_identity_pkchange_nopk")
    nopk = [r for r in records if r.ref.topic.endswith(".nopk")]
    assert [type(r).__name__ for r in nopk] == ["ChangeEvent"] * 3 + ["Tombstone"]
    assert all(r.key is None for r in nopk if isinstance(r, ChangeEvent))
    update = nopk[1]
    assert isinstance(update, ChangeEvent) and update.before is not None and update.after is not None  # FULL
    assert isinstance(nopk[3], Tombstone) and nopk[3].new_key is None


def test_pg_delete_before_under_default_identity() -> None:
    record = event("pg_default_types_stream", 2)
    assert record.op == "d" and record.after is None and record.before is not None
    assert record.before["id"] == 3 and record.before["c_notnull"] == 42  # the fake schema default, as sent


@pytest.mark.parametrize("name", ["pg_default_snapshot", "my_default_snapshot"])
def test_snapshot_reads_have_no_position(name: str) -> None:
    reads = [r for r in decode_file(name) if isinstance(r, ChangeEvent)]
    assert reads and all(r.op == "r" and r.snapshot and r.position is None for r in reads)
    assert {r.table.schema for r in reads} == {"dbzref"}


def test_incremental_snapshot_reads_have_no_position_either() -> None:
    line = synthetic([{"field": "id", "type": "int32"}], {"id": 1}, op="r", snapshot="incremental")
    record = decode_line(EnvelopeDecoder(), line)
    assert isinstance(record, ChangeEvent) and record.snapshot and record.position is None


# --- positions ---------------------------------------------------------------------------------------

def test_pg_positions_come_from_the_sequence() -> None:
    records = decode_file("pg_default_types_stream")
    # the first transaction of a connector without offsets has no lastCommitLsn: no known commit order
    assert isinstance(records[0], ChangeEvent) and records[0].position == SourcePosition(0, 24456056, 0)
    assert not records[0].position.ordered and records[1].position is not None and records[1].position.ordered
    assert isinstance(records[1], ChangeEvent) and records[1].position == SourcePosition(24456912, 24456912, 0)
    assert records[0].txid == 775 and records[0].table == TableId("dbzref", "pg_types")
    toast = decode_file("pg_default_toast")[2]
    assert isinstance(toast, ChangeEvent) and toast.position == SourcePosition(24498416, 24509040, 0)
    line = synthetic([{"field": "id", "type": "int32"}], {"id": 1}, sequence=None, lsn=4242)
    record = decode_line(EnvelopeDecoder(), line)
    assert isinstance(record, ChangeEvent) and record.position == SourcePosition(0, 4242, 0)


def test_mysql_positions_are_file_pos_row() -> None:
    records = decode_file("my_default_identity_pkchange_nopk")
    assert [r.position for r in records[20:23] if isinstance(r, ChangeEvent)] == [
        SourcePosition(4, 13325, 0), SourcePosition(4, 13325, 1), SourcePosition(4, 13325, 2)]
    first = records[0]
    assert isinstance(first, ChangeEvent) and first.table == TableId("dbzref", "ri") and first.txid is None
    assert first.before is not None and first.after is not None  # MySQL: full before image on update
    assert SourcePosition(4, 13325, 2) < SourcePosition(5, 0, 0)


# --- the other record kinds --------------------------------------------------------------------------

def test_heartbeats() -> None:
    records = decode_file("pg_txmeta_truncate_heartbeat")
    beat = records[0]
    assert isinstance(beat, Heartbeat) and beat.source_ts_ms == 1795360477473 and beat.kafka_ts_ms == 1_800_000_000_000
    beat = decode_file("my_txmeta-ignored_truncate_heartbeat")[2]
    assert isinstance(beat, Heartbeat) and beat.source_ts_ms == 1795360984672
    # a heartbeat is known by its schema name on any topic, and by its topic prefix when unnamed
    line = copy.deepcopy(lines("pg_txmeta_truncate_heartbeat")[0])
    line["topic"] = "beats.custom"
    assert isinstance(decode_line(EnvelopeDecoder(), line), Heartbeat)
    line["value"]["schema"].pop("name")
    with pytest.raises(DecodeError, match=r"beats\.custom\[0\]@0"):
        decode_line(EnvelopeDecoder(), line)
    assert isinstance(decode_line(EnvelopeDecoder(heartbeat_prefix="beats."), line), Heartbeat)


def test_transaction_markers() -> None:
    records = decode_file("pg_txmeta_truncate_heartbeat")
    begin, end = records[3], records[7]
    assert begin == TransactionMarker(begin.ref, "BEGIN", "778:24457816", 1_800_000_000_000)
    assert isinstance(end, TransactionMarker) and (end.status, end.txid) == ("END", "778:24457952")
    assert sum(isinstance(r, TransactionMarker) for r in records) == 38


def test_pg_logical_messages() -> None:
    records = decode_file("pg_default_message_evolve")
    transactional, plain = records[1], records[2]
    assert isinstance(transactional, LogicalMessage) and isinstance(plain, LogicalMessage)
    assert (transactional.prefix, transactional.content, transactional.txid) == ("myprefix", b"hello tx message", 802)
    assert transactional.position == SourcePosition(24669352, 24669432, 0)
    assert transactional.source_ts_ms == 1795360536703
    assert (plain.content, plain.txid) == (b"hello non-tx message", None)


def test_mysql_schema_changes() -> None:
    records = decode_file("my_default_schema_change_evolve_truncate")
    truncate, alter = records[3], records[4]
    assert isinstance(truncate, SchemaChange) and truncate.ddl == "TRUNCATE TABLE trunc_me"
    assert (truncate.database, truncate.tables, truncate.change_types) == ("dbzref", (), ())
    assert truncate.position == SourcePosition(4, 13520, 2)
    assert isinstance(alter, SchemaChange) and alter.ddl == "ALTER TABLE evolve ADD COLUMN b INT DEFAULT 7"
    assert (alter.tables, alter.change_types) == (('"dbzref"."evolve"',), ("ALTER",))
    assert alter.source_ts_ms == 1795360986000
    snapshot = decode_file("my_default_snapshot")
    assert isinstance(snapshot[0], SchemaChange) and snapshot[0].database == "" and snapshot[0].position is None
    assert isinstance(snapshot[7], SchemaChange) and snapshot[7].tables == ('"shop"."orders"',)


def test_schema_evolution_shows_in_columns() -> None:
    events = [r for r in decode_file("my_default_schema_change_evolve_truncate")
              if isinstance(r, ChangeEvent) and r.table.name == "evolve"]
    assert [e.columns for e in events] == [
        ("id", "a"), ("id", "a", "b"), ("id", "a", "b"), ("id", "c", "a", "b"), ("id", "c", "a2", "b")]
    assert events[2].before == {"id": 1, "a": "before alter", "b": 7}  # an old row shows the new default
    assert events[-1].before == {"id": 3, "c": "cc", "a2": "third", "b": 9}  # renamed in before too


# --- errors ------------------------------------------------------------------------------------------

def broken(column: str, value: Any) -> dict[str, Any]:
    line = copy.deepcopy(lines("pg_default_types_stream")[0])
    line["value"]["payload"]["after"][column] = value
    return line


@pytest.mark.parametrize(("column", "value", "problem"), [
    ("c_bytea", "not base64!", "base64"),
    ("c_numeric", "HL6ZGoU", "base64"),
    ("c_integer", "12", "expected an integer, got a string"),
    ("c_bool", 1, "expected a boolean, got an integer"),
    ("c_real", "1.5", "expected a number"),
    ("c_text", 5, "expected a string"),
    ("id", None, "null in a non-optional field"),
    ("c_uuid", "not-a-uuid", "UUID"),
    ("c_tstz", "yesterday", "ISO-8601"),
    ("c_int_arr", [1, "2"], "array item"),
    ("c_point", {"x": "1", "y": 2.0}, "'x'"),
    ("c_numeric_nop", {"scale": "1", "value": "AQ=="}, "'scale'"),
    ("c_bit8", "//8=", "do not fit BIT(8)"),
])
def test_values_that_do_not_fit_their_schema(column: str, value: Any, problem: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_line(EnvelopeDecoder(), broken(column, value), 17)
    message = str(caught.value)
    assert "pgdef.dbzref.pg_types[0]@17" in message and repr(column) in message and problem in message


def test_a_struct_of_unknown_type_is_refused() -> None:
    columns: list[dict[str, Any]] = [
        {"field": "id", "type": "int32"},
        {"field": "thing", "type": "struct", "name": "com.example.Thing", "fields": [{"field": "a", "type": "int32"}]},
    ]
    with pytest.raises(DecodeError, match=r"toast_default\[0\]@0.*'thing'.*unknown logical type 'com.example.Thing'"):
        decode_line(EnvelopeDecoder(), synthetic(columns, {"id": 1, "thing": None}))


def test_decimal_without_a_scale_is_refused() -> None:
    columns = [{"field": "d", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal"}]
    with pytest.raises(DecodeError, match=r"'d'.*'scale'"):
        decode_line(EnvelopeDecoder(), synthetic(columns, {"d": "AQ=="}))


@pytest.mark.parametrize(("value", "problem"), [
    (b'{"schema":{"type":"struct"},"payload":', "not valid JSON"),
    (b'{"a":1}', "schemas enabled"),
    (b"[1,2]", "schemas enabled"),
])
def test_values_that_are_not_debezium_records(value: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=rf"t\[3\]@9: .*{problem}"):
        EnvelopeDecoder().decode("t", 3, 9, None, value, None, 0)


def test_unknown_ops_and_unknown_records_are_refused() -> None:
    line = copy.deepcopy(lines("pg_default_types_stream")[0])
    line["value"]["payload"]["op"] = "x"
    with pytest.raises(DecodeError, match=r"@0: unknown op 'x'"):
        decode_line(EnvelopeDecoder(), line)
    value = compact({"schema": {"type": "struct", "name": "x.Y", "fields": [{"field": "a", "type": "int32"}]},
                     "payload": {"a": 1}})
    with pytest.raises(DecodeError, match=r"x\[0\]@1: not a Debezium record.*'x.Y'"):
        EnvelopeDecoder().decode("x", 0, 1, None, value, None, 0)


def test_a_fast_path_hit_with_a_broken_payload_is_still_an_error() -> None:
    decoder = EnvelopeDecoder()
    line = lines("pg_default_types_stream")[0]
    decode_line(decoder, line)
    value = compact(line["value"])
    with pytest.raises(DecodeError, match="not valid JSON"):
        decoder.decode(line["topic"], 0, 1, None, value[:-2] + b"}", None, 0)


def test_tombstones() -> None:
    decoder = EnvelopeDecoder()
    for value in (None, b"", b"null"):
        record = decoder.decode("t", 0, 5, b'{"schema":null,"payload":null}', value, None, 11)
        assert record == Tombstone(record.ref, 11)


def test_binary_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="binary_mode"):
        EnvelopeDecoder(binary_mode="utf8")


# --- properties --------------------------------------------------------------------------------------

@given(st.integers(min_value=-(10**40), max_value=10**40), st.integers(min_value=0, max_value=40))
def test_decimal_bytes_round_trip(unscaled: int, scale: int) -> None:
    raw = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
    sign, digits, exponent = decimal_from_unscaled(raw, scale).as_tuple()
    assert exponent == -scale
    # exact: no digit lost to the 28-digit context (Decimal arithmetic would round here)
    assert (-1 if sign else 1) * int("".join(map(str, digits))) == unscaled
    # the per-column converter the decoder compiles for a Decimal field gives the same value
    converter = codec_for({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                           "parameters": {"scale": str(scale)}}, "bytes").convert
    assert converter is not None
    assert converter(base64.b64encode(raw).decode()).as_tuple() == decimal_from_unscaled(raw, scale).as_tuple()


@given(st.integers(min_value=1, max_value=128).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=2**n - 1))))
def test_bits_round_trip(case: tuple[int, int]) -> None:
    length, number = case
    raw = number.to_bytes(max(1, (length + 7) // 8), "little")
    columns = [{"field": "b", "type": "bytes", "name": "io.debezium.data.Bits", "parameters": {"length": str(length)}}]
    text = decode_synthetic(columns, {"b": base64.b64encode(raw).decode()})["b"]
    assert len(text) == length and int(text, 2) == number


@given(st.integers(min_value=-719162, max_value=2932896))
def test_dates_in_pythons_range_match_the_calendar(days: int) -> None:
    assert date_from_days(days) == dt.date(1970, 1, 1) + dt.timedelta(days=days)


@given(st.integers(min_value=-2_000_000, max_value=-719163))
def test_bc_dates_are_postgresql_literals(days: int) -> None:
    literal = date_from_days(days)
    assert isinstance(literal, str)
    date_part, era = literal.rsplit(" ", 1)
    year, month, day = (int(part) for part in date_part.split("-"))
    assert era == "BC" and year >= 1 and 1 <= month <= 12 and 1 <= day <= 31
    # the proleptic Gregorian calendar repeats every 400 years (146097 days): shift into Python's range
    shifted = days + 146097 * ((year + 399) // 400 + 1)
    astronomical = 1 - year + 400 * ((year + 399) // 400 + 1)
    assert dt.date(1970, 1, 1) + dt.timedelta(days=shifted) == dt.date(astronomical, month, day)


def test_timestamps_far_outside_pythons_range() -> None:
    assert timestamp_from_us(-63517780800000000 + 1_500) == "0044-03-15 12:00:00.0015 BC"
    assert timestamp_from_us(253402300800000000) == "10000-01-01 00:00:00"


def test_pgoutput_garbled_column_names_are_repaired() -> None:
    from replicator.apply.decode import repair_pgoutput_name

    garbled = "".join(chr(0xFF00 | b) if b >= 0x80 else chr(b) for b in "ünï ✓".encode())
    assert repair_pgoutput_name(garbled) == "ünï ✓"
    assert repair_pgoutput_name("plain_name") == "plain_name"
    assert repair_pgoutput_name("ünï") == "ünï"  # already right: kept
    assert repair_pgoutput_name(chr(0xFFC3)) == chr(0xFFC3)  # not valid UTF-8 once rebuilt: kept
