"""Snapshot gating (replicator.apply.gate): xid widening and which events a chunk's copy already holds."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.apply.gate import SnapshotFilter, widen_xid
from replicator.errors import ReplicatorError
from replicator.events import ChangeEvent, RecordRef, SourcePosition
from replicator.model import TableId

SPAN = 1 << 32
TABLE = "shop.orders"
_offsets = itertools.count()


def ev(position: SourcePosition | None = None, txid: int | None = None, op: str = "u",
       key: dict[str, Any] | None = None) -> ChangeEvent:
    """A change event with only what the gate looks at: its source position and transaction id."""
    return ChangeEvent(
        ref=RecordRef("p.shop.orders", 0, next(_offsets)), op=op, table=TableId("shop", "orders"),
        key=key if key is not None else {"id": 1}, before=None, after={"id": 1}, unavailable=frozenset(),
        position=position, source_ts_ms=0, kafka_ts_ms=0, txid=txid,
    )


def pg_event(lsn: int, txid: int | None, commit_lsn: int = 0) -> ChangeEvent:
    return ev(SourcePosition(commit_lsn, lsn), txid)  # PostgreSQL: (last commit LSN, change LSN, 0)


def pg_chunk(xmin: int, xmax: int, xip: list[int], lsn: int, *, low: list[Any] | None = None,
             high: list[Any] | None = None) -> dict[str, Any]:
    return {"low": low, "high": high, "postgres": {"xmin": xmin, "xmax": xmax, "xip": xip, "lsn": lsn}}


def my_chunk(file: int, pos: int, *, low: list[Any] | None = None, high: list[Any] | None = None) -> dict[str, Any]:
    return {"low": low, "high": high, "mysql": {"file": file, "pos": pos}}


def gate(*chunks: dict[str, Any]) -> SnapshotFilter:
    return SnapshotFilter.parse(json.dumps({"chunks": list(chunks)}), TABLE)


# -- widen_xid ----------------------------------------------------------------------------------------


def test_widen_xid_in_the_first_epoch() -> None:
    assert widen_xid(0, 0) == 0
    assert widen_xid(700, 1000) == 700
    assert widen_xid(1500, 1000) == 1500


def test_widen_xid_event_just_below_the_wrap_xmax_just_above() -> None:
    xmax = 3 * SPAN + 5
    assert widen_xid(SPAN - 10, xmax) == 3 * SPAN - 10  # the previous epoch, not 4 * SPAN - 10
    assert widen_xid(2, xmax) == 3 * SPAN + 2


def test_widen_xid_event_just_above_the_wrap_xmax_just_below() -> None:
    xmax = 3 * SPAN - 5
    assert widen_xid(3, xmax) == 3 * SPAN + 3  # the next epoch: after xmax, not far in the past
    assert widen_xid(SPAN - 8, xmax) == 3 * SPAN - 8


@settings(max_examples=300, deadline=None)
@given(xmax=st.integers(SPAN, 1 << 62), delta=st.integers(-(SPAN // 2) + 1, SPAN // 2 - 1))
def test_widen_xid_recovers_any_xid_within_half_the_span(xmax: int, delta: int) -> None:
    """PostgreSQL keeps every live xid within 2^31 of the next one (wraparound protection); exactly 2^31
    away is a tie between two epochs, which any answer resolves."""
    xid = xmax + delta
    assert widen_xid(xid % SPAN, xmax) == xid


def test_a_wrapped_xid_that_would_look_visible_is_not_covered() -> None:
    """xmin/xmax just below a 2^32 boundary; the event's transaction started after the snapshot, in the
    next epoch: its 32-bit xid (3) is far below xmin, so unwidened it would look committed before."""
    xmin, xmax = 3 * SPAN - 20, 3 * SPAN - 5
    event = pg_event(lsn=500, txid=3)
    assert event.txid is not None and event.txid < xmin  # the trap
    assert not gate(pg_chunk(xmin, xmax, [], lsn=1000)).covers(event, (1,))
    # and one from the previous epoch's end, just below xmin, is visible: covered
    assert gate(pg_chunk(xmin, xmax, [], lsn=1000)).covers(pg_event(500, txid=SPAN - 30), (1,))


def test_an_old_xid_across_the_wrap_is_covered() -> None:
    """xmin/xmax just above a 2^32 boundary, the event committed just before it (32-bit xid near 2^32)."""
    xmin, xmax = 3 * SPAN + 2, 3 * SPAN + 9
    assert gate(pg_chunk(xmin, xmax, [], lsn=1000)).covers(pg_event(999, txid=SPAN - 4), (1,))
    assert not gate(pg_chunk(xmin, xmax, [], lsn=1000)).covers(pg_event(999, txid=12), (1,))  # 3*SPAN+12 ≥ xmax


# -- PostgreSQL chunks --------------------------------------------------------------------------------

PG = pg_chunk(xmin=100, xmax=110, xip=[103, 105], lsn=5000)


@pytest.mark.parametrize(("lsn", "txid", "covered", "why"), [
    (4999, 99, True, "below the LSN, xid < xmin: committed before the snapshot"),
    (10, 50, True, "far below"),
    (4999, 104, True, "xmin ≤ xid < xmax and not in progress: visible"),
    (4999, 100, True, "xid = xmin, not in progress: visible"),
    (5000, 99, False, "LSN = the chunk's LSN: applied"),
    (6000, 50, False, "LSN above the chunk's"),
    (4999, 103, False, "in progress at the snapshot (xip)"),
    (4999, 105, False, "in progress at the snapshot (xip)"),
    (4999, 110, False, "xid = xmax: started after the snapshot"),
    (4999, 200, False, "xid > xmax"),
    (4999, None, False, "no txid"),
])
def test_postgres_chunk(lsn: int, txid: int | None, covered: bool, why: str) -> None:
    assert gate(PG).covers(pg_event(lsn, txid, commit_lsn=lsn), (1,)) is covered, why


def test_postgres_position_is_the_change_lsn_not_the_commit_lsn() -> None:
    assert gate(PG).covers(pg_event(lsn=4999, txid=99, commit_lsn=9999), (1,))
    assert not gate(PG).covers(pg_event(lsn=5001, txid=99, commit_lsn=10), (1,))


def test_snapshot_reads_are_never_covered() -> None:
    read = ev(position=None, txid=99, op="r")
    assert not gate(PG).covers(read, (1,))
    assert not gate(my_chunk(3, 400)).covers(read, (1,))


# -- MySQL chunks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "pos", "row", "covered"), [
    (3, 399, 0, True),
    (3, 399, 7, True),
    (2, 99999, 0, True),  # an earlier binlog file
    (3, 400, 0, False),  # at the chunk's position
    (3, 400, 2, False),
    (3, 401, 0, False),
    (4, 1, 0, False),  # a later binlog file
])
def test_mysql_chunk(file: int, pos: int, row: int, covered: bool) -> None:
    assert gate(my_chunk(3, 400)).covers(ev(SourcePosition(file, pos, row)), (1,)) is covered


def test_mysql_chunk_ignores_txid() -> None:
    assert gate(my_chunk(3, 400)).covers(ev(SourcePosition(3, 1), txid=None), (1,))


# -- key ranges ---------------------------------------------------------------------------------------


def test_key_ranges_route_each_key_to_its_chunk() -> None:
    # low chunk read early (position 3/100), high chunk later (3/900)
    filt = gate(my_chunk(3, 100, low=None, high=[100]), my_chunk(3, 900, low=[100], high=None))
    event = ev(SourcePosition(3, 500))  # between the two chunks' positions
    assert not filt.covers(event, (5,))  # low chunk: copied before the event, must apply
    assert not filt.covers(event, (99,))
    assert filt.covers(event, (100,))  # `high` is exclusive: 100 belongs to the high chunk
    assert filt.covers(event, (10**9,))
    assert not filt.covers(event, None)  # a key-less event matches no bounded chunk: applied


def test_key_ranges_with_a_composite_key() -> None:
    filt = gate(my_chunk(1, 10, low=None, high=[5, "m"]), my_chunk(1, 90, low=[5, "m"], high=None))
    event = ev(SourcePosition(1, 50))
    assert not filt.covers(event, (5, "a"))
    assert filt.covers(event, (5, "m"))
    assert filt.covers(event, (6, "a"))


def test_a_key_outside_every_chunk_is_not_covered() -> None:
    filt = gate(my_chunk(1, 90, low=[10], high=[20]))
    assert not filt.covers(ev(SourcePosition(1, 1)), (9,))
    assert filt.covers(ev(SourcePosition(1, 1)), (10,))
    assert not filt.covers(ev(SourcePosition(1, 1)), (20,))


def test_table_without_primary_key_uses_the_unbounded_chunk() -> None:
    filt = gate(pg_chunk(100, 110, [], lsn=5000))
    assert filt.covers(pg_event(4000, 50), None)
    assert not filt.covers(pg_event(6000, 50), None)
    assert not gate(my_chunk(1, 10)).covers(ev(SourcePosition(1, 50)), None)


def test_no_chunks_covers_nothing() -> None:
    assert not gate().covers(ev(SourcePosition(1, 1), txid=1), (1,))


# -- malformed filters --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "",
    "{",
    "not json",
    "null",
    "[]",
    "{}",
    '{"chunks": null}',
    '{"chunks": [{"low": 5, "high": null, "mysql": {"file": 1, "pos": 2}}]}',
    '{"chunks": [{"postgres": {"xmin": 1}}]}',
    '{"chunks": [{"postgres": {"xmin": 1, "xmax": 2, "xip": 3, "lsn": 4}}]}',
    '{"chunks": [{"postgres": {"xmin": null, "xmax": 2, "xip": [], "lsn": 4}}]}',
    '{"chunks": [{"postgres": "x"}]}',
    '{"chunks": [{"mysql": {"file": "binlog.000003", "pos": 4}}]}',
])
def test_malformed_filter_is_one_line_naming_the_table(text: str) -> None:
    with pytest.raises(ReplicatorError) as caught:
        SnapshotFilter.parse(text, TABLE)
    message = str(caught.value)
    assert TABLE in message
    assert "\n" not in message
    assert caught.value.hint  # says what to do


@pytest.mark.parametrize("text", ['{"chunks": [1]}', '{"chunks": ["x"]}', '{"chunks": {"a": 1}}'])
def test_malformed_chunk_entries_are_one_line_naming_the_table(text: str) -> None:
    with pytest.raises(ReplicatorError, match=TABLE):
        SnapshotFilter.parse(text, TABLE)


def test_many_contiguous_chunks_find_the_same_chunk_as_a_scan() -> None:
    # 200 chunks, each read at its own position 3/(index*10): an event at 3/1005 is covered exactly by
    # the chunks read after it, i.e. index > 100 — bisection must agree with the plain scan everywhere.
    bounds = [None, *[[i * 10] for i in range(1, 200)], None]
    chunks = [my_chunk(3, i * 10, low=bounds[i], high=bounds[i + 1]) for i in range(200)]
    filt = gate(*chunks)
    assert filt._lows is not None  # the fast path is taken
    event = ev(SourcePosition(3, 1005))
    for key in range(-5, 2010, 3):
        index = min(max(key // 10, 0), 199)
        assert filt.covers(event, (key,)) is (index * 10 > 1005), key


def test_text_and_composite_keys_are_routed_in_byte_order() -> None:
    # bounds as the database ordered them in byte order ("C", BINARY): "B" < "a" < "z" < "ä"
    filt = gate(my_chunk(3, 100, low=None, high=["a"]), my_chunk(3, 900, low=["a"], high=["ä"]),
                my_chunk(3, 100, low=["ä"], high=None))
    event = ev(SourcePosition(3, 500))
    assert not filt.covers(event, ("B",)) and not filt.covers(event, ("Zebra",))
    assert filt.covers(event, ("a",)) and filt.covers(event, ("z",)) and filt.covers(event, ("b",))
    assert not filt.covers(event, ("ä",)) and not filt.covers(event, ("日本",))
    pairs = gate(my_chunk(3, 100, low=None, high=[5, "m"]), my_chunk(3, 900, low=[5, "m"], high=None))
    assert not pairs.covers(event, (5, "a")) and pairs.covers(event, (5, "m")) and pairs.covers(event, (6, "a"))


def test_chunks_that_are_not_contiguous_are_scanned() -> None:
    filt = gate(my_chunk(3, 900, low=[10], high=[20]), my_chunk(3, 900, low=[30], high=None))
    assert filt._lows is None
    event = ev(SourcePosition(3, 500))
    assert filt.covers(event, (15,)) and not filt.covers(event, (25,)) and filt.covers(event, (35,))


# -- truncates ----------------------------------------------------------------------------------------


def test_a_truncate_every_chunk_read_after_is_skipped_one_all_read_before_applies() -> None:
    filt = gate(my_chunk(3, 100, low=None, high=[100]), my_chunk(3, 900, low=[100], high=None))
    assert filt.covers_truncate(ev(SourcePosition(3, 50), op="t", key={})) is True  # in the copy already
    assert filt.covers_truncate(ev(SourcePosition(3, 950), op="t", key={})) is False  # empties the copy


def test_a_truncate_between_the_views_of_a_resumed_copys_chunks_is_neither() -> None:
    filt = gate(my_chunk(3, 100, low=None, high=[100]), my_chunk(3, 900, low=[100], high=None))
    assert filt.covers_truncate(ev(SourcePosition(3, 500), op="t", key={})) is None
    assert filt.truncate_ranges(ev(SourcePosition(3, 500), op="t", key={})) is None  # no key in this filter


def test_a_truncate_between_chunk_views_empties_the_chunks_read_before_it() -> None:
    chunks = [my_chunk(3, 100, low=None, high=[100, "m"]), my_chunk(3, 900, low=[100, "m"], high=[200, "a"]),
              my_chunk(3, 200, low=[200, "a"], high=None)]
    filt = SnapshotFilter.parse(json.dumps({"chunks": chunks, "key": ["id", "name"], "kinds": ["int", "text"]}), "t")
    truncate = ev(SourcePosition(3, 500), op="t", key={})
    assert filt.covers_truncate(truncate) is None
    ranges = filt.truncate_ranges(truncate)
    assert ranges is not None and ranges.key == ("id", "name") and ranges.kinds == ("int", "text")
    assert ranges.spans == ((None, (100, "m")), ((200, "a"), None))  # the first and last were read before it


@pytest.mark.parametrize("extra", [{"key": ["id"], "kinds": ["int", "int"]}, {"key": ["id"], "kinds": ["uuid"]},
                                   {"key": [1], "kinds": ["int"]}])
def test_a_filter_with_a_malformed_key_is_refused(extra: dict[str, Any]) -> None:
    text = json.dumps({"chunks": [my_chunk(3, 100, low=None, high=None)], **extra})
    with pytest.raises(ReplicatorError, match="unreadable"):
        SnapshotFilter.parse(text, "t")


def test_a_postgres_truncate_visible_in_the_snapshot_is_skipped() -> None:
    filt = gate(pg_chunk(1000, 1005, [1002], 5000))
    assert filt.covers_truncate(ev(SourcePosition(0, 4000), txid=999, op="t", key={})) is True
    assert filt.covers_truncate(ev(SourcePosition(0, 4000), txid=1002, op="t", key={})) is False  # in progress
    assert filt.covers_truncate(ev(SourcePosition(0, 5000), txid=1010, op="t", key={})) is False
