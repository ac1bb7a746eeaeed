"""MySQL/MariaDB rows read as the applier's decoder yields them from Debezium's events of the same rows.

A repair (`reconcile --repair`) writes source rows through the applier's writer, whose converters
take the values of decoded events (replicator.apply.logical, with the connector settings of
connectors/templates/mysql.json), not PyMySQL's. Where the two differ, the value is converted here:

  BIT(1) → bool (PyMySQL: b'\\x01'); BIT(n) → its n-digit '0'/'1' text (io.debezium.data.Bits);
  TIMESTAMP → a UTC datetime (the session's time_zone is UTC; ZonedTimestamp); spatial types →
  `Geometry` (MySQL's 4-byte SRID prefix split off the WKB; a POINT with its x and y; SRID 0 → None).
Every other type already reads as the decoder's value (ints, unsigned included, Decimal, float, str
for text, ENUM, SET and JSON, bytes, date, naive datetime for DATETIME, timedelta for TIME).
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from typing import Any

from replicator.dialects.mysql_snapshot import SPATIAL_TYPES
from replicator.events import Geometry

Converter = Callable[[Any], Any]


def _bit(width: int) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, bytes | bytearray):
            return value
        number = int.from_bytes(value, "big")
        return number != 0 if width == 1 else format(number, f"0{width}b")
    return convert


def _utc(value: Any) -> Any:
    return value.replace(tzinfo=dt.UTC) if isinstance(value, dt.datetime) and value.tzinfo is None else value


def _geometry(point: bool) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, bytes | bytearray) or len(value) < 9:
            return value
        srid, wkb = int.from_bytes(value[:4], "little"), bytes(value[4:])
        if point and len(wkb) == 21:
            x, y = struct.unpack("<dd" if wkb[0] == 1 else ">dd", wkb[5:21])
            return Geometry(wkb, srid or None, x, y)
        return Geometry(wkb, srid or None)
    return convert


def event_converter(type_name: str) -> Converter | None:
    """How a value PyMySQL read from a column of this type becomes the decoder's (None: as it is).
    `type_name` as information_schema's COLUMN_TYPE spells it."""
    lowered = type_name.lower()
    base = lowered.split("(", maxsplit=1)[0].strip()
    if base == "bit":
        width = int(lowered[lowered.index("(") + 1:lowered.index(")")]) if "(" in lowered else 1
        return _bit(width)
    if base == "timestamp":
        return _utc
    if base in SPATIAL_TYPES:
        return _geometry(base == "point")
    return None


__all__ = ["event_converter"]
