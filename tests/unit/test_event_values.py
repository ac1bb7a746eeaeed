"""Source rows read for a repair take the values the applier's decoder gives for the same columns."""

from __future__ import annotations

import datetime as dt
import struct

from psycopg import sql

from replicator.dialects.mysql_values import event_converter
from replicator.dialects.postgres_values import event_expression
from replicator.events import Geometry


def test_mysql_bits_read_as_debezium_sends_them() -> None:
    one = event_converter("bit(1)")
    ten = event_converter("bit(10)")
    assert one is not None and ten is not None
    assert one(b"\x01") is True and one(b"\x00") is False
    assert ten(b"\x02\x01") == "1000000001" and ten(b"\x00\x00") == "0000000000"


def test_mysql_timestamp_reads_as_utc_and_datetime_stays_naive() -> None:
    convert = event_converter("timestamp(6)")
    assert convert is not None
    naive = dt.datetime(2024, 2, 29, 13, 45, 30, 123456)
    assert convert(naive) == naive.replace(tzinfo=dt.UTC)
    assert event_converter("datetime(6)") is None and event_converter("int(11) unsigned") is None


def test_mysql_geometry_splits_the_srid_off_and_a_point_keeps_x_and_y() -> None:
    wkb = struct.pack("<BIdd", 1, 1, 1.5, -2.25)
    point = event_converter("point")
    geometry = event_converter("geometry")
    assert point is not None and geometry is not None
    assert point(b"\x00\x00\x00\x00" + wkb) == Geometry(wkb, None, 1.5, -2.25)
    assert geometry(struct.pack("<I", 4326) + wkb) == Geometry(wkb, 4326)


def test_postgres_money_bit1_and_hstore_are_read_through_an_expression() -> None:
    def text(expression: sql.Composable) -> str:
        return repr(expression)

    assert "numeric" in text(event_expression("m", "money"))
    assert "B'1'" in text(event_expression("b", "bit(1)"))
    assert "hstore_to_json" in text(event_expression("h", "public.hstore"))
    assert event_expression("x", "bit(8)") == sql.Identifier("x")
