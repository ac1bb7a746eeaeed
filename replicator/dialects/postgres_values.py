"""PostgreSQL rows read as the applier's decoder yields them from Debezium's events of the same rows.

A repair (`reconcile --repair`) writes source rows through the applier's writer, whose converters
take the values of decoded events (replicator.apply.logical, with the connector settings of
connectors/templates/postgres.json), not psycopg's: psycopg reads json as dicts, inet as ipaddress
objects, ranges as Range objects, time as `datetime.time`, and fails on infinity, BC dates, 24:00
and ISO 8601 intervals. Here each type reads as the decoder's value instead:

  json, jsonb, interval (ISO 8601 text, interval.handling.mode=string), inet, cidr, ranges → their
  text; date → date, timestamp → naive datetime, timestamptz → UTC datetime, each else PostgreSQL's
  text (infinity, BC, years past 9999); time → timedelta (24:00:00 included); timetz → time in UTC;
  bit(1) → bool; money → Decimal (read as numeric); hstore → its JSON text (hstore.handling.mode=json).
Everything else already reads as the decoder's value (ints, Decimal, float with NaN, bool, str,
bytes, UUID, arrays of these).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Loader

_UTC = dt.UTC


class _Text(Loader):
    def load(self, data: Buffer) -> Any:
        return bytes(data).decode()


class _Date(Loader):
    def load(self, data: Buffer) -> Any:
        text = bytes(data).decode()
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            return text  # 'infinity', '-infinity', '0044-03-15 BC', '10000-01-01'


class _Timestamp(Loader):
    def load(self, data: Buffer) -> Any:
        text = bytes(data).decode()
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            return text
        return value if value.tzinfo is None else value.astimezone(_UTC)


class _Time(Loader):
    def load(self, data: Buffer) -> Any:
        hours, minutes, seconds = bytes(data).decode().split(":")
        whole, _, fraction = seconds.partition(".")
        return dt.timedelta(hours=int(hours), minutes=int(minutes), seconds=int(whole),
                            microseconds=int((fraction + "000000")[:6]))


class _TimeTz(Loader):
    def load(self, data: Buffer) -> Any:
        text = bytes(data).decode()
        if text.startswith("24:00:00"):  # end of day: as the decoder keeps it
            return "24:00:00" + text[8:]
        value = dt.time.fromisoformat(text)
        moment = dt.datetime.combine(dt.date(2000, 1, 1), value).astimezone(_UTC)
        return moment.timetz()


_LOADERS: dict[str, type[Loader]] = {
    **dict.fromkeys(("json", "jsonb", "interval", "inet", "cidr", "int4range", "int8range", "numrange",
                     "tsrange", "tstzrange", "daterange"), _Text),
    "date": _Date, "timestamp": _Timestamp, "timestamptz": _Timestamp, "time": _Time, "timetz": _TimeTz,
}


def event_cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    """A cursor of `conn` whose loaders give the decoder's values (see the module docstring)."""
    cursor = conn.cursor()
    for name, loader in _LOADERS.items():
        cursor.adapters.register_loader(name, loader)
    return cursor


def event_expression(column: str, type_name: str) -> sql.Composable:
    """The select-list expression of a column read as the decoder's value."""
    ident = sql.Identifier(column)
    base = type_name.split("(", maxsplit=1)[0].strip()
    if base == "money":
        return sql.SQL("{}::numeric").format(ident)
    if base.rpartition(".")[2] == "hstore":
        return sql.SQL("hstore_to_json({})::text").format(ident)
    if type_name in ("bit(1)", "bit"):  # Debezium sends bit(1) as a boolean
        return sql.SQL("({} = B'1')").format(ident)
    return ident


__all__ = ["event_cursor", "event_expression"]
