"""One Connect field schema → one converter: Debezium's logical types as plain Python values.

Owns the mapping from a field's schema (`type`, `name`, `parameters`) to a `Codec`; `decode` compiles
each event schema into codecs once and runs them per message. The decoder is chosen from the schema
alone, never from the JSON value (a float field may hold the string "NaN", a decimal is base64 text).

Values produced (see the reference of real Debezium events in the shared docs):
  int8..int64 → int (a propagated `BIGINT UNSIGNED` source type undoes the int64 wrap-around);
  float/double → float ("NaN"/"Infinity"/"-Infinity" strings included), or Decimal when the
  propagated source type is NUMERIC/DECIMAL/MONEY (decimal.handling.mode=double);
  Decimal / VariableScaleDecimal → Decimal, exact from the unscaled integer (never through float), and
  so is a string of a NUMERIC source type (mode string); bytes → bytes; Bits → '0'/'1' text; Uuid → UUID;
  EnumSet → list[str]; Date → date; Time/MicroTime/NanoTime → timedelta (MySQL TIME may be
  negative or ≥ 24h); Timestamp/MicroTimestamp/NanoTimestamp → naive datetime; ZonedTimestamp →
  aware UTC datetime; ZonedTime → time with tzinfo UTC; MicroDuration → timedelta; geometry →
  `Geometry`; array → list; map → dict; everything string-like → str, verbatim.
Values Python cannot hold — PostgreSQL's ±infinity dates/timestamps and years outside 1..9999 — come out
as PostgreSQL literals (`"infinity"`, `"0044-03-15 BC"`), dates on the proleptic Gregorian calendar.

Invariant: a converter receives a non-null JSON value of the codec's `expect` type (or, through
`other`, of any other type) and either returns the Python value or raises a `ValueError` subclass
whose text says what was wrong; the caller adds topic/partition/offset and the column.
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

from replicator.events import ColumnType, Geometry

Converter = Callable[[Any], Any]

SOURCE_TYPE = "__debezium.source.column.type"
# Source column types whose values are binary strings; with binary.handling.mode=base64|hex their
# fields are Connect strings and only this propagated parameter tells them apart from text.
BINARY_SOURCE_TYPES = frozenset({"BYTEA", "BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB", "BINARY", "VARBINARY"})
DECIMAL_SOURCE_TYPES = frozenset({"NUMERIC", "DECIMAL", "DEC", "FIXED", "MONEY"})
INT_TYPES = frozenset({"int8", "int16", "int32", "int64"})
# JsonConverter spells float32/float64 as float/double; ColumnType uses Connect's own names.
CONNECT_TYPE_NAMES = {"float": "float32", "double": "float64"}
JSON_NAMES: dict[type, str] = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
                               list: "an array", dict: "an object", type(None): "null"}

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()
_DATE_MIN_DAYS, _DATE_MAX_DAYS = -719162, 2932896  # 0001-01-01 and 9999-12-31
# PostgreSQL ±infinity as the pgoutput stream carries them (garbage sentinels, see the reference §5).
_DATE_INFINITY = {-2147472692: "infinity", -2147472691: "-infinity"}
_TS_INFINITY_US = {9223372036825200000: "infinity", -9223372036832400000: "-infinity"}
_TS_INFINITY_MS = {micros // 1000: text for micros, text in _TS_INFINITY_US.items()}
# Scaling by a power of ten under this context never rounds (Decimal.scaleb rounds to the context's
# precision, 28 digits by default): an exact decimal from an unscaled integer without going through text.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
_TIMEDELTA = dt.timedelta
_FLOAT_WORDS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_DECIMAL_WORDS = {"NAN": Decimal("NaN"), "POSITIVE_INFINITY": Decimal("Infinity"),
                  "NEGATIVE_INFINITY": Decimal("-Infinity"), "NaN": Decimal("NaN"),
                  "Infinity": Decimal("Infinity"), "-Infinity": Decimal("-Infinity")}
_ISO_TIMESTAMP = re.compile(r"([+-]?)(\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")


class ColumnValueError(ValueError):
    """A JSON value does not fit its field's schema."""


class ColumnSchemaError(ValueError):
    """A field schema this decoder cannot turn into values (e.g. a struct of unknown logical type)."""


@dataclass(frozen=True, slots=True)
class Codec:
    """How one field's non-null JSON values become Python values.

    `expect` is the JSON type of the normal form: values of exactly that type go through `convert`
    (None = kept as is, the free case of int/str/bool columns); any other type goes to `other`, or is
    a type error when `other` is None.
    """

    expect: type
    convert: Converter | None = None
    other: Converter | None = None


def json_type(value: object) -> str:
    return JSON_NAMES.get(type(value), type(value).__name__)


def source_type(schema: Mapping[str, Any]) -> str | None:
    """The first word of the propagated source column type ("BIGINT" of "BIGINT UNSIGNED"), upper case."""
    parameters = schema.get("parameters") or {}
    text = parameters.get(SOURCE_TYPE)
    return text.split()[0].upper() if isinstance(text, str) and text.strip() else None


def column_type(schema: Mapping[str, Any]) -> ColumnType:
    ctype = str(schema.get("type"))
    parameters = tuple((str(k), str(v)) for k, v in (schema.get("parameters") or {}).items())
    items = schema.get("items")
    item = column_type(items) if ctype == "array" and isinstance(items, Mapping) else None
    default: Any = None
    if schema.get("default") is not None:
        try:
            codec = codec_for(schema, "bytes")
            raw = schema["default"]
            convert = codec.convert if isinstance(raw, codec.expect) else codec.other
            default = convert(raw) if convert is not None else raw
        except Exception:
            default = None
    return ColumnType(CONNECT_TYPE_NAMES.get(ctype, ctype), schema.get("name"), bool(schema.get("optional")),
                      parameters, item, default)


def codec_for(schema: Mapping[str, Any], binary_mode: str) -> Codec:
    """The codec of one field schema; raises ColumnSchemaError for what cannot be decoded at all."""
    ctype = schema.get("type")
    name = schema.get("name")
    if ctype in INT_TYPES:
        return _int_codec(name, schema)
    if ctype in ("float", "double"):
        if source_type(schema) in DECIMAL_SOURCE_TYPES:  # decimal.handling.mode=double
            return Codec(float, _decimal_from_double, _decimal_from_other)
        return Codec(float, None, _float_from_other)
    if ctype == "boolean":
        return Codec(bool)
    if ctype == "string":
        return _string_codec(name, schema, binary_mode)
    if ctype == "bytes":
        return _bytes_codec(name, schema)
    if ctype == "array":
        return _array_codec(schema, binary_mode)
    if ctype == "map":
        return _map_codec(schema, binary_mode)
    if ctype == "struct":
        return _struct_codec(name)
    raise ColumnSchemaError(f"unknown Connect type {ctype!r}")


def checked(codec: Codec, optional: bool, what: str) -> Converter:
    """A converter for nested values (array items, map values) that also checks null and type."""
    expect, convert, other = codec.expect, codec.convert, codec.other

    def check(value: Any) -> Any:
        if value is None:
            if optional:
                return None
            raise ColumnValueError(f"null {what} where the schema does not allow null")
        if type(value) is expect:
            return value if convert is None else convert(value)
        if other is not None:
            return other(value)
        raise ColumnValueError(f"{what}: expected {JSON_NAMES[expect]}, got {json_type(value)}")

    return check


# --- integers, dates and times -------------------------------------------------------------------

def _int_codec(name: str | None, schema: Mapping[str, Any]) -> Codec:
    if name in ("io.debezium.time.Date", "org.apache.kafka.connect.data.Date"):
        return Codec(int, date_from_days)
    if name in ("io.debezium.time.Time", "org.apache.kafka.connect.data.Time"):
        return Codec(int, lambda ms: dt.timedelta(microseconds=ms * 1000))
    if name in ("io.debezium.time.MicroTime", "io.debezium.time.MicroDuration"):
        return Codec(int, lambda us: dt.timedelta(microseconds=us))
    if name in ("io.debezium.time.NanoTime", "io.debezium.time.NanoDuration"):
        return Codec(int, lambda ns: dt.timedelta(microseconds=ns // 1000))  # Python holds µs, not ns
    if name in ("io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp"):
        return Codec(int, timestamp_from_ms)
    if name == "io.debezium.time.MicroTimestamp":
        return Codec(int, timestamp_from_us)
    if name == "io.debezium.time.NanoTimestamp":
        return Codec(int, lambda ns: timestamp_from_us(ns // 1000))
    text = (schema.get("parameters") or {}).get(SOURCE_TYPE)
    if isinstance(text, str) and text.upper().startswith("BIGINT UNSIGNED"):
        return Codec(int, _unsigned_64)
    return Codec(int)  # io.debezium.time.Year and unknown names: the integer itself


def _unsigned_64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """(astronomical year, month, day) on the proleptic Gregorian calendar, for any day count."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _date_literal(days: int) -> tuple[str, str]:
    """PostgreSQL's text of a date outside Python's range, split as (date, era suffix)."""
    year, month, day = _civil_from_days(days)
    if year <= 0:  # astronomical year 0 is 1 BC
        return f"{1 - year:04d}-{month:02d}-{day:02d}", " BC"
    return f"{year:04d}-{month:02d}-{day:02d}", ""


def date_from_days(days: int) -> dt.date | str:
    special = _DATE_INFINITY.get(days)
    if special is not None:
        return special
    if _DATE_MIN_DAYS <= days <= _DATE_MAX_DAYS:
        return dt.date.fromordinal(days + _EPOCH_ORDINAL)
    date, era = _date_literal(days)
    return date + era


def timestamp_from_us(micros: int) -> dt.datetime | str:
    special = _TS_INFINITY_US.get(micros)
    if special is not None:
        return special
    try:
        return _EPOCH + _TIMEDELTA(0, 0, micros)  # (days, seconds, microseconds): positional is faster
    except OverflowError:
        days, rest = divmod(micros, 86_400_000_000)
        date, era = _date_literal(days)
        seconds, fraction = divmod(rest, 1_000_000)
        text = f"{date} {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return text + (f".{fraction:06d}".rstrip("0") if fraction else "") + era


def timestamp_from_ms(millis: int) -> dt.datetime | str:
    special = _TS_INFINITY_MS.get(millis)
    return special if special is not None else timestamp_from_us(millis * 1000)


def zoned_timestamp(text: str) -> dt.datetime | str:
    if text in ("infinity", "-infinity"):
        return text
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return _zoned_literal(text)
    if value.tzinfo is None:
        raise ColumnValueError(f"timestamp {text!r} has no zone")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _zoned_literal(text: str) -> str:
    """PostgreSQL's text of a timestamptz whose year Python cannot hold: '-0043-…' → '0044-… BC'."""
    match = _ISO_TIMESTAMP.fullmatch(text)
    if match is None:
        raise ColumnValueError(f"not an ISO-8601 timestamp: {text!r}")
    sign, year_text, month, day, hour, minute, second, fraction, zone = match.groups()
    year = -int(year_text) if sign == "-" else int(year_text)
    if 1 <= year <= 9999:
        raise ColumnValueError(f"not a valid timestamp: {text!r}")
    fraction = (fraction or "").rstrip("0").rstrip(".")
    zone = "+00" if zone == "Z" else zone
    era_year, era = (1 - year, " BC") if year <= 0 else (year, "")
    return f"{era_year:04d}-{month}-{day} {hour}:{minute}:{second}{fraction}{zone}{era}"


def zoned_time(text: str) -> dt.time | str:
    try:
        value = dt.time.fromisoformat(text)
    except ValueError:
        if text.startswith("24:00:00"):  # PostgreSQL's end-of-day, which Python's time cannot hold
            return "24:00:00" + text[8:].replace("Z", "+00")
        raise ColumnValueError(f"not an ISO-8601 time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- numbers -------------------------------------------------------------------------------------

def _float_from_other(value: Any) -> float:
    if type(value) is int:
        return float(value)
    if type(value) is str and value in _FLOAT_WORDS:
        return _FLOAT_WORDS[value]
    raise ColumnValueError(f"expected a number, got {json_type(value)}")


def _decimal_from_double(value: float) -> Decimal:
    return Decimal(repr(value))  # the shortest text of the double: what the connector computed


def _decimal_from_other(value: Any) -> Decimal:
    if type(value) is int:
        return Decimal(value)
    if type(value) is str and value in _DECIMAL_WORDS:
        return _DECIMAL_WORDS[value]
    raise ColumnValueError(f"expected a number, got {json_type(value)}")


def decimal_from_text(text: str) -> Decimal:
    special = _DECIMAL_WORDS.get(text)
    if special is not None:
        return special
    try:
        return Decimal(text)
    except ArithmeticError:
        raise ColumnValueError(f"not a decimal number: {text[:40]!r}") from None


def decimal_from_unscaled(raw: bytes, scale: int) -> Decimal:
    """Exact: the unscaled big-endian two's-complement integer, scaled by 10**-scale under a context
    that never rounds (`_EXACT`; the default context would round to 28 digits)."""
    if not raw:
        raise ColumnValueError("empty bytes are not a decimal")
    return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale, _EXACT)


def _decimal_converter(scale: int) -> Converter:
    """Debezium's Decimal (base64 of the unscaled integer) with a fixed scale: the hot path of
    `decimal_from_unscaled`, one call instead of three."""
    exponent = -scale
    a2b, from_bytes, exact = binascii.a2b_base64, int.from_bytes, _EXACT

    def convert(text: str) -> Decimal:
        try:
            raw = a2b(text, strict_mode=True)
        except ValueError as exc:
            raise ColumnValueError(f"invalid base64 ({exc})") from None
        if not raw:
            raise ColumnValueError("empty bytes are not a decimal")
        return Decimal(from_bytes(raw, "big", signed=True)).scaleb(exponent, exact)

    return convert


def _int_parameter(schema: Mapping[str, Any], name: str, logical: str) -> int:
    value = (schema.get("parameters") or {}).get(name)
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise ColumnSchemaError(f"{logical} without a valid {name!r} parameter: {value!r}") from None


# --- strings and bytes ---------------------------------------------------------------------------

def base64_bytes(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except ValueError as exc:
        raise ColumnValueError(f"invalid base64 ({exc})") from None


def _hex_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ColumnValueError("invalid hex") from None


def _string_codec(name: str | None, schema: Mapping[str, Any], binary_mode: str) -> Codec:
    if name == "io.debezium.data.Uuid":
        return Codec(str, uuid.UUID)
    if name == "io.debezium.data.EnumSet":
        return Codec(str, lambda text: text.split(",") if text else [])
    if name == "io.debezium.time.ZonedTimestamp":
        return Codec(str, zoned_timestamp)
    if name == "io.debezium.time.ZonedTime":
        return Codec(str, zoned_time)
    if name is None:
        kind = source_type(schema)
        if kind in DECIMAL_SOURCE_TYPES:  # decimal.handling.mode=string
            return Codec(str, decimal_from_text)
        if kind in BINARY_SOURCE_TYPES and binary_mode == "base64":
            return Codec(str, base64_bytes)
        if kind in BINARY_SOURCE_TYPES and binary_mode == "hex":
            return Codec(str, _hex_bytes)
    return Codec(str)  # Json (verbatim text), Xml, Enum, Ltree, Interval, inet, ranges...


def _bytes_codec(name: str | None, schema: Mapping[str, Any]) -> Codec:
    if name == "org.apache.kafka.connect.data.Decimal":
        return Codec(str, _decimal_converter(_int_parameter(schema, "scale", "Decimal")))
    if name == "io.debezium.data.Bits":
        fixed = source_type(schema) == "BIT"  # needs column.propagate.source.type (our templates set it)
        return Codec(str, _bits_converter(_int_parameter(schema, "length", "Bits"), fixed))
    kind = source_type(schema)
    if kind is not None and kind not in BINARY_SOURCE_TYPES:
        # include.unknown.datatypes: e.g. a tsvector arrives as bytes holding its text form
        return Codec(str, lambda text: base64_bytes(text).decode("utf-8"))
    return Codec(str, base64_bytes)


def _bits_converter(length: int, fixed: bool) -> Converter:
    """Bits as '0'/'1' text of `length` digits. Debezium drops the real length of a varbit (its
    bytes hold the value only): a varbit comes out padded to its maximum length, and an empty one
    as ''; a fixed bit(n) of all zeros arrives as no bytes at all and comes out as n zeros."""

    def bits(text: str) -> str:
        raw = base64_bytes(text)
        if not raw and not fixed:
            return ""  # a zero-length varbit
        number = int.from_bytes(raw, "little")  # Debezium's Bits are little-endian
        if number.bit_length() > length:
            raise ColumnValueError(f"{number.bit_length()} bits do not fit BIT({length})")
        return format(number, f"0{length}b")

    return bits


# --- containers and structs ----------------------------------------------------------------------

def _array_codec(schema: Mapping[str, Any], binary_mode: str) -> Codec:
    items = schema.get("items")
    if not isinstance(items, Mapping):
        raise ColumnSchemaError("array without an items schema")
    text = (schema.get("parameters") or {}).get(SOURCE_TYPE)
    if isinstance(text, str) and text.startswith("_") and not items.get("parameters"):
        # PostgreSQL names an array type `_<element>`: let the items know their source type
        items = {**items, "parameters": {SOURCE_TYPE: text[1:]}}
    item = checked(codec_for(items, binary_mode), bool(items.get("optional")), "array item")
    return Codec(list, lambda values: [item(value) for value in values])


def _map_codec(schema: Mapping[str, Any], binary_mode: str) -> Codec:
    keys, values = schema.get("keys"), schema.get("values")
    if not isinstance(keys, Mapping) or not isinstance(values, Mapping):
        raise ColumnSchemaError("map without keys/values schemas")
    key = checked(codec_for(keys, binary_mode), False, "map key")
    value = checked(codec_for(values, binary_mode), bool(values.get("optional")), "map value")

    def pairs(entries: Any) -> dict[Any, Any]:
        # JsonConverter writes a map whose keys are not strings as an array of [key, value] pairs
        if type(entries) is not list or not all(type(entry) is list and len(entry) == 2 for entry in entries):
            raise ColumnValueError(f"expected an object or [key, value] pairs, got {json_type(entries)}")
        return {key(k): value(v) for k, v in entries}

    return Codec(dict, lambda obj: {k: value(v) for k, v in obj.items()}, pairs)


def _struct_codec(name: str | None) -> Codec:
    if name == "io.debezium.data.VariableScaleDecimal":
        return Codec(dict, _variable_scale_decimal)
    if name in ("io.debezium.data.geometry.Geometry", "io.debezium.data.geometry.Geography"):
        return Codec(dict, _geometry)
    if name == "io.debezium.data.geometry.Point":
        return Codec(dict, _point)
    raise ColumnSchemaError(f"struct of unknown logical type {name!r}")


def _member(obj: Mapping[str, Any], name: str, kinds: tuple[type, ...], optional: bool = False) -> Any:
    value = obj.get(name)
    if value is None and optional:
        return None
    if type(value) not in kinds:
        raise ColumnValueError(f"struct member {name!r}: expected {JSON_NAMES[kinds[0]]}, got {json_type(value)}")
    return value


def _variable_scale_decimal(obj: Mapping[str, Any]) -> Decimal:
    return decimal_from_unscaled(base64_bytes(_member(obj, "value", (str,))), _member(obj, "scale", (int,)))


def _geometry(obj: Mapping[str, Any]) -> Geometry:
    return Geometry(base64_bytes(_member(obj, "wkb", (str,))), _member(obj, "srid", (int,), optional=True))


def _point(obj: Mapping[str, Any]) -> Geometry:
    x = float(_member(obj, "x", (float, int)))
    y = float(_member(obj, "y", (float, int)))
    wkb = _member(obj, "wkb", (str,), optional=True)
    # Without a WKB, build the standard one: little-endian byte order (1), geometry type Point (1)
    raw = base64_bytes(wkb) if wkb is not None else struct.pack("<BIdd", 1, 1, x, y)
    return Geometry(raw, _member(obj, "srid", (int,), optional=True), x, y)
