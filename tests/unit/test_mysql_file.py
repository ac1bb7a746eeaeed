"""The MariaDB/MySQL writer's LOAD DATA file, column by column (`column_fields`), against the value by
value definition: `_field(converter(value))` per value, `\\N` for NULL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.dialects import mysql_target
from replicator.dialects.mysql_target import _CONVERTER_NAMES, _NULL, column_fields, encoder_for

CONVERTERS = list(_CONVERTER_NAMES)
ENCODERS = [encoder_for("varchar(10)"), encoder_for("bit(8)")]

naive = st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9998, 1, 1))
values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.text(alphabet=st.sampled_from("ab\t\n\r\\\x00é€"), max_size=6),
    st.decimals(allow_nan=True, allow_infinity=True, places=3),
    naive,
    naive.map(lambda v: v.replace(tzinfo=dt.UTC)),
    naive.map(lambda v: v.replace(tzinfo=dt.timezone(dt.timedelta(hours=-5)))),
    st.floats(allow_nan=True),
)


def one_by_one(convert: Any, encode: Any, column: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return "ok", [_NULL if v is None else encode(convert(v)) for v in column]
    except Exception as exc:
        return "error", type(exc)


def by_column(convert: Any, encode: Any, column: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return "ok", column_fields(convert, encode, column)
    except Exception as exc:
        return "error", type(exc)


@settings(max_examples=400)
@given(st.sampled_from(CONVERTERS), st.sampled_from(ENCODERS),
       st.one_of(st.lists(values, max_size=8),  # mixed types: the value-by-value path
                 values.flatmap(lambda v: st.lists(st.just(v) | st.none(), max_size=8))))  # one type: fast
def test_column_fields_equal_the_value_by_value_encoding(convert: Any, encode: Any, column: list[Any]) -> None:
    assert by_column(convert, encode, tuple(column)) == one_by_one(convert, encode, tuple(column))


@settings(max_examples=200)
@given(st.sampled_from(CONVERTERS), st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=4),
                                                         st.decimals(places=2, allow_nan=False), naive), max_size=6))
def test_single_type_columns(convert: Any, column: list[Any]) -> None:
    for kind in (int, str, Decimal, dt.datetime):
        same = tuple(v for v in column if v is None or type(v) is kind)
        assert by_column(convert, mysql_target._field, same) == one_by_one(convert, mysql_target._field, same)
