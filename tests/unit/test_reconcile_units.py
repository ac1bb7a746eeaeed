"""The reconciler's pure parts: how column types pair into families, the canonical row text, the
reconcile gates the applier reads, a cut's decisions, and the checksum arithmetic across engines."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.apply.gate import Cut, reconcile_gate, reconcile_gate_name, reconcile_gate_text
from replicator.canonical import HASH_MODULUS, PREFIXED, Checksum, Family, join_row, resolve
from replicator.dialects import mysql_hash, postgres_hash
from replicator.events import SourcePosition
from replicator.reconcile.checker import _RETRY, _Balance, _owner, _piece_rows, key_kind, same_text
from tests.unit.test_gate import ev, pg_event

# (source engine, source type, target type) → the family the pair compares as; None: not comparable
PAIRS: list[tuple[str, str, str, Family | None]] = [
    ("mysql", "tinyint(1)", "boolean", Family.BOOL),
    ("mysql", "bit(1)", "boolean", Family.BOOL),
    ("mysql", "bigint(20) unsigned", "numeric(20,0)", Family.DECIMAL),
    ("mysql", "time(6)", "interval", Family.TIME),
    ("mysql", "float", "real", Family.FLOAT4),
    ("mysql", "double", "double precision", Family.FLOAT8),
    ("mysql", "enum('a','b')", "text", Family.TEXT),
    ("mysql", "set('a','b')", "text", Family.TEXT),
    ("mysql", "char(5)", "character(5)", Family.CHAR),
    ("mysql", "json", "jsonb", Family.JSON),
    ("mysql", "timestamp(6)", "timestamp(6) with time zone", Family.TIMESTAMP),
    ("mysql", "datetime", "timestamp without time zone", Family.TIMESTAMP),
    ("mysql", "year(4)", "smallint", Family.INT),
    ("mysql", "point", "point", Family.POINT),
    ("mysql", "blob", "bytea", Family.BYTES),
    ("mysql", "bit(10)", "bit(10)", Family.BITS),
    ("postgres", "time with time zone", "time(6)", Family.TIME),
    ("postgres", "interval", "varchar(64)", Family.INTERVAL),
    ("postgres", "integer[]", "json", Family.JSON),
    ("postgres", "uuid", "char(36)", Family.UUID),
    ("postgres", "bit varying(16)", "varchar(16)", Family.BITS),
    ("postgres", "money", "decimal(19,2)", Family.DECIMAL),
    ("postgres", "inet", "varchar(43)", Family.TEXT),
    ("postgres", "s.mood", "varchar(10)", Family.TEXT),
    ("postgres", "boolean", "tinyint(1)", Family.BOOL),
    ("postgres", "bytea", "varchar(10)", None),
    ("postgres", "timestamp with time zone", "date", None),
]


@pytest.mark.parametrize(("engine", "source", "target", "family"), PAIRS)
def test_column_type_pairs_resolve_to_their_family(engine: str, source: str, target: str,
                                                   family: Family | None) -> None:
    mine, other = (mysql_hash, postgres_hash) if engine == "mysql" else (postgres_hash, mysql_hash)
    assert resolve(mine.family_of(source), other.family_of(target)) is family


def test_same_types_on_one_engine_compare_as_themselves() -> None:
    for type_name in ("integer[]", "tsvector", "int4range", "s.mood", "xml", "timestamp(3) without time zone"):
        family = postgres_hash.family_of(type_name)
        assert resolve(family, family) is family


def test_key_columns_order_ranges_only_as_integers_or_text() -> None:
    assert key_kind(Family.INT, Family.INT) == "int"
    assert key_kind(Family.INT, Family.DECIMAL) == "int"  # BIGINT UNSIGNED → numeric(20)
    assert key_kind(Family.TEXT, Family.TEXT) == "text"
    assert key_kind(Family.CHAR, Family.CHAR) is None  # padding semantics: sorted by canonical text
    assert key_kind(Family.UUID, Family.UUID) is None


def test_row_text_separates_null_empty_and_text_that_looks_like_a_separator() -> None:
    families = [Family.INT, Family.TEXT, Family.TEXT]
    assert join_row(["1", None, ""], families) == "1,~,0:"
    assert join_row(["1", "~", ","], families) == "1,1:~,1:,"
    # the texts "a,1:b" + "c" and "a" + "1:b,c" cannot produce the same row text
    assert join_row(["1", "a,1:b", "c"], families) != join_row(["1", "a", "1:b,c"], families)


@given(st.lists(st.one_of(st.none(), st.text()), min_size=3, max_size=3),
       st.lists(st.one_of(st.none(), st.text()), min_size=3, max_size=3))
def test_row_text_is_injective_over_free_text(a: list[str | None], b: list[str | None]) -> None:
    families = [Family.TEXT, Family.JSON, Family.CHAR]
    assert all(f in PREFIXED for f in families)
    assert (join_row(a, families) == join_row(b, families)) == (a == b)


@given(st.lists(st.integers(0, HASH_MODULUS - 1), max_size=50))
def test_checksums_of_signed_and_unsigned_slices_agree_modulo_2_64(hashes: list[int]) -> None:
    """PostgreSQL reads the 64-bit slice as a signed bigint, MySQL as unsigned: same sum modulo 2^64."""
    signed = [h - HASH_MODULUS if h >= 1 << 63 else h for h in hashes]
    assert Checksum.of(len(hashes), sum(signed)) == Checksum.of(len(hashes), sum(hashes))
    assert Checksum.of(1, "18446744073709551615") == Checksum.of(1, -1)
    assert Checksum.of(0, None) == Checksum(0, 0)


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=20))
def test_the_checksums_of_pieces_add_up_to_the_checksum_of_their_union(pieces: list[tuple[int, int]]) -> None:
    parts = [Checksum.of(1, a) for a, _ in pieces] + [Checksum.of(1, b) for _, b in pieces]
    whole = Checksum.of(len(parts), sum(a + b for a, b in pieces))
    assert Checksum.add(parts) == whole
    assert Checksum.add([]) == Checksum(0, 0)


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=30, unique=True), st.integers(-1100, 1100))
def test_a_sort_key_belongs_to_the_last_range_starting_at_or_below_it(starts: list[int], key: int) -> None:
    lows: list[tuple[Any, ...] | None] = [None, *[(s,) for s in sorted(starts)]]
    at = _owner(lows, (key,))
    assert at == 0 or lows[at] <= (key,)  # type: ignore[operator]
    assert at == len(lows) - 1 or (key,) < lows[at + 1]  # type: ignore[operator]


def test_text_ranges_are_found_in_code_point_order() -> None:
    lows: list[tuple[Any, ...] | None] = [("A",), ("a",), ("é",)]
    assert [_owner(lows, (k,)) for k in ("A", "Z", "a", "z", "é", "😀")] == [0, 0, 1, 1, 2, 2]
    assert _piece_rows(2000) == 125 and _piece_rows(1) == 1


def test_json_compares_as_values_when_its_text_differs() -> None:
    assert same_text(Family.JSON, '{"a":"\\u00e9"}', '{"a":"é"}')
    assert same_text(Family.JSON, '{"a":2.50}', '{"a":2.5}')
    assert not same_text(Family.JSON, '{"a":1}', '{"a":2}')
    assert not same_text(Family.TEXT, "a", "a ")
    assert not same_text(Family.TEXT, None, "")


# -- reconcile gates and cuts ---------------------------------------------------------------------------

def test_reconcile_gates_are_recognised_by_their_json_not_their_name() -> None:
    assert reconcile_gate_name("shop", "orders") == "reconcile:shop.orders"
    text = reconcile_gate_text("we.ird", "t,1", {"mysql": {"file": 3, "pos": 40}})
    assert reconcile_gate(text) == ("we.ird", "t,1", {"mysql": {"file": 3, "pos": 40}})
    assert reconcile_gate(reconcile_gate_text("s", "t", None)) == ("s", "t", None)
    # a snapshot gate (hold: no JSON; filter: chunks) is never taken for one
    assert reconcile_gate(None) is None
    assert reconcile_gate('{"chunks": [{"low": null, "high": null, "mysql": {"file": 1, "pos": 4}}]}') is None


def test_a_postgres_cut_applies_visible_events_and_says_which_stop_is_exact() -> None:
    cut = Cut.of({"postgres": {"xmin": 100, "xmax": 110, "xip": [105], "lsn": 5000}}, "shop.orders")
    visible, in_progress, later = pg_event(4000, 101), pg_event(4500, 105), pg_event(5000, 111)
    assert cut.applies(visible)
    assert not cut.applies(in_progress) and not cut.beyond(in_progress)  # below the LSN: says nothing
    assert not cut.applies(later) and cut.beyond(later)  # at or past the LSN: every visible one is before


def test_a_mysql_cut_is_a_binlog_position() -> None:
    cut = Cut.of({"mysql": {"file": 2, "pos": 900}}, "shop.orders")
    before, at, next_file = (ev(SourcePosition(2, 899, 0)), ev(SourcePosition(2, 900, 0)),
                             ev(SourcePosition(3, 4, 0)))
    assert cut.applies(before) and not cut.beyond(before)
    assert not cut.applies(at) and cut.beyond(at)
    assert not cut.applies(next_file) and cut.beyond(next_file)


def test_an_event_without_a_position_is_never_in_a_cut() -> None:
    cut: Any = Cut.of({"mysql": {"file": 2, "pos": 900}}, "shop.orders")
    assert not cut.applies(ev(None)) and not cut.beyond(ev(None))


class _Side:
    """A hash side that records how it was told to run."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def one_process(self, on: bool) -> None:
        self.calls.append(on)


def _run(balance: _Balance, side: _Side, rate: dict[bool, float], other_s: float, chunks: int) -> list[bool]:
    """Chunks of 100k rows: this side's time at its way's rate, the other side's `other_s`; the chunk
    takes the longer of the two. Returns whether each chunk ran parallel."""
    ways = []
    for _ in range(chunks):
        parallel = not side.calls[-1]
        ways.append(parallel)
        mine = 100_000 / rate[parallel]
        balance.record(100_000, max(mine, other_s), (other_s, mine))  # this side is the target
    return ways


def test_a_side_that_is_not_the_slower_one_stays_in_one_process() -> None:
    side = _Side()
    balance = _Balance(side, 1)  # type: ignore[arg-type]
    assert side.calls == [True]
    assert _run(balance, side, {True: 400_000.0, False: 250_000.0}, 0.38, 3 * _RETRY) == [False] * (3 * _RETRY)


def test_a_clearly_slower_side_tries_its_workers_and_keeps_them_when_faster() -> None:
    side = _Side()
    balance = _Balance(side, 1)  # type: ignore[arg-type]
    ways = _run(balance, side, {True: 400_000.0, False: 200_000.0}, 0.2, 3 * _RETRY)
    assert ways[:2] == [False, True]  # one process, then parallel as soon as it is clearly the slower
    assert ways[2:].count(True) >= len(ways[2:]) - 3 and ways[2:].count(False) >= 1  # kept, serial retried


def test_workers_that_make_the_chunks_slower_are_dropped_and_retried_rarely() -> None:
    side = _Side()
    balance = _Balance(side, 1)  # type: ignore[arg-type]
    ways = _run(balance, side, {True: 150_000.0, False: 200_000.0}, 0.2, 3 * _RETRY)
    assert ways[:3] == [False, True, False]
    assert 1 <= ways[3:].count(True) <= 3  # only the retries


def test_short_chunks_and_pairs_with_nothing_to_balance_change_nothing() -> None:
    side = _Side()
    balance = _Balance(side, 1)  # type: ignore[arg-type]
    for _ in range(20):
        balance.record(10, 0.01, (0.01, 0.05))
    assert side.calls == [True]
    _Balance(None).record(100_000, 1.0, (1.0, 1.0))
