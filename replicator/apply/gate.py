"""Snapshot gating: how the snapshot stage holds a table's events and releases them exactly.

The snapshot stage writes one row per table into our `table_gates` state table:
* `hold`: the applier consumes nothing of that table's topic (the partition is paused and its
  offset does not move) while the copy runs;
* `filter`: the copy is done; the applier applies the table's events again, except those the copy
  already contains, as decided by `SnapshotFilter.covers` from the positions each chunk was read at;
  a truncate is skipped when every chunk was read after it and applied when none was
  (`covers_truncate`); one between the views of a resumed copy's chunks empties the key ranges of
  the chunks read before it, and only those (`truncate_ranges`): the other chunks' rows were read
  after it, and its own events before them are skipped as in their copy. (A filter written before
  the key was recorded in it cannot say which rows those are: such a truncate is refused, naming
  the table to copy again);
* no row: the table is open, every event applies.

The state lives in the target (not in the consumer), and the applier re-reads it on every
assignment and every few seconds, because a paused partition does not stay paused across a
rebalance and another instance may own the partition next.

Filter JSON (written by the snapshot stage, one entry per chunk; a table without a primary key is
one chunk with no bounds):
    {"chunks": [{"low": [..] | null, "high": [..] | null,            # key range [low, high)
                 "postgres": {"xmin": int, "xmax": int, "xip": [int], "lsn": int}}
                | {..., "mysql": {"file": int, "pos": int}}],
     "key": [column, ...], "kinds": ["int" | "text", ...]}          # when the table has chunk ranges
Reconcile cuts (replicator.reconcile.anchor) are rows of the same table under their own name
(`reconcile:<schema>.<table>`), recognised by their JSON, {"reconcile": [schema, table], "cut": P}:
* state `hold`: the table's partition is paused, as for a snapshot hold;
* state `filter`: the applier applies the table's events that are visible at P (the read view of a
  recheck, the same {"postgres": …} / {"mysql": …} form as a chunk's position) and stops at the first
  one that is not: its offset is not passed until the cut is removed. A snapshot filter of the same
  table still applies beside it.

PostgreSQL: an event with change LSN >= the chunk's LSN is applied; one below it whose transaction
is visible in the chunk's snapshot is in the copy and is skipped. Debezium's `txId` is the 32-bit
xid while snapshots hold 64-bit xids, so it is widened to the 64-bit xid nearest xmax first.
MySQL/MariaDB: an event before the chunk's binlog position (file number, position) is in the copy.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Any, cast

import orjson

from replicator.errors import ReplicatorError
from replicator.events import ChangeEvent, KeyKind, KeyRanges

_XID_SPAN = 1 << 32


def widen_xid(xid32: int, xmax: int) -> int:
    """The 64-bit xid whose low 32 bits are `xid32` and which lies nearest `xmax`."""
    candidate = (xmax & ~(_XID_SPAN - 1)) | (xid32 & (_XID_SPAN - 1))
    if candidate > xmax + _XID_SPAN // 2:
        candidate -= _XID_SPAN
    elif candidate < xmax - _XID_SPAN // 2:
        candidate += _XID_SPAN
    return candidate


@dataclass(frozen=True)
class _Chunk:
    low: tuple[Any, ...] | None
    high: tuple[Any, ...] | None
    pg: tuple[int, int, frozenset[int], int] | None  # xmin, xmax, xip, lsn
    mysql: tuple[int, int] | None  # binlog file number, position

    def contains(self, key: tuple[Any, ...] | None) -> bool:
        if key is None:
            return self.low is None and self.high is None
        if self.low is not None and key < self.low:
            return False
        return not (self.high is not None and key >= self.high)

    def beyond(self, event: ChangeEvent) -> bool:
        """The event is at or after the view's stream position (not merely invisible in it: on
        PostgreSQL a transaction whose commit record lies below the LSN may still be in progress in
        the snapshot, and a visible one may follow it in the stream)."""
        if event.position is None:
            return False
        if self.pg is not None:
            return event.position.minor >= self.pg[3]
        if self.mysql is not None:
            return (event.position.major, event.position.minor) >= self.mysql
        return False

    def covers(self, event: ChangeEvent) -> bool:
        if event.position is None:
            return False
        if self.pg is not None:
            xmin, xmax, xip, lsn = self.pg
            if event.position.minor >= lsn or event.txid is None:
                return False
            xid = widen_xid(event.txid, xmax)
            return xid < xmin or (xid < xmax and xid not in xip)
        if self.mysql is not None:
            return (event.position.major, event.position.minor) < self.mysql
        return False


class SnapshotFilter:
    """Decides, per event of a released table, whether the snapshot copy already holds it."""

    def __init__(self, chunks: list[_Chunk], key: tuple[str, ...] | None = None,
                 kinds: tuple[KeyKind, ...] | None = None) -> None:
        self._chunks = chunks
        self._key = key
        self._kinds = kinds
        # The snapshot writes chunks in key order, each starting where the previous one ends: then the
        # chunk of a key is found by bisection over the lower bounds (a table may have thousands).
        contiguous = bool(chunks) and chunks[0].low is None and chunks[-1].high is None and all(
            a.high is not None and a.high == b.low for a, b in itertools.pairwise(chunks))
        lows = [c.low for c in chunks[1:] if c.low is not None]
        self._lows: list[tuple[Any, ...]] | None = lows if contiguous and len(lows) == len(chunks) - 1 else None

    @classmethod
    def parse(cls, text: str, table: str) -> SnapshotFilter:
        try:
            raw = orjson.loads(text)
            key = raw.get("key")
            kinds = raw.get("kinds")
            if key is not None and kinds is not None:
                if len(key) != len(kinds) or not all(isinstance(c, str) for c in key) \
                        or not set(kinds) <= {"int", "text"}:
                    raise ValueError(f"key {key!r} with kinds {kinds!r}")
                key, kinds = tuple(key), cast("tuple[KeyKind, ...]", tuple(kinds))  # checked just above
            else:
                key = kinds = None
            chunks = []
            for item in raw["chunks"]:
                pg = item.get("postgres")
                my = item.get("mysql")
                chunks.append(_Chunk(
                    low=tuple(item["low"]) if item.get("low") is not None else None,
                    high=tuple(item["high"]) if item.get("high") is not None else None,
                    pg=(int(pg["xmin"]), int(pg["xmax"]), frozenset(int(x) for x in pg["xip"]), int(pg["lsn"]))
                    if pg else None,
                    mysql=(int(my["file"]), int(my["pos"])) if my else None,
                ))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReplicatorError(f"the snapshot filter of {table} in our state schema is unreadable: {exc}",
                                  hint="re-run the snapshot of that table") from None
        return cls(chunks, key, kinds)

    def covers_truncate(self, event: ChangeEvent) -> bool | None:
        """A truncate of the table: True when every chunk's view already saw it (the copy was read
        after it: skipped), False when none did (it empties what the copy loaded: applied), None
        when only some did (chunks of a resumed copy, read on both sides of it)."""
        seen = {chunk.covers(event) for chunk in self._chunks}
        if len(seen) > 1:
            return None
        return seen == {True}

    def truncate_ranges(self, event: ChangeEvent) -> KeyRanges | None:
        """For a truncate that only some chunks' views saw: the key ranges of the chunks that did not
        (their rows in the target were read before it, so it empties them; the others were read after
        it). None when the filter does not record the key (written by an older version)."""
        if self._key is None or self._kinds is None:
            return None
        return KeyRanges(self._key, self._kinds,
                         tuple((c.low, c.high) for c in self._chunks if not c.covers(event)))

    def covers(self, event: ChangeEvent, key: tuple[Any, ...] | None) -> bool:
        if self._lows is not None and key is not None:
            return self._chunks[bisect.bisect_right(self._lows, key)].covers(event)
        for chunk in self._chunks:
            if chunk.contains(key):
                return chunk.covers(event)
        return False


RECONCILE_PREFIX = "reconcile:"


def reconcile_gate_name(schema: str, table: str) -> str:
    return f"{RECONCILE_PREFIX}{schema}.{table}"


def reconcile_gate_text(schema: str, table: str, cut: dict[str, Any] | None) -> str:
    return orjson.dumps({"reconcile": [schema, table], "cut": cut}).decode()


@dataclass(frozen=True)
class Cut:
    """A reconcile cut: apply what is visible in a read view, stop at the first event that is not."""

    view: _Chunk

    def applies(self, event: ChangeEvent) -> bool:
        return self.view.covers(event)

    def beyond(self, event: ChangeEvent) -> bool:
        return self.view.beyond(event)

    @classmethod
    def of(cls, position: dict[str, Any], table: str) -> Cut:
        parsed = SnapshotFilter.parse(orjson.dumps({"chunks": [{"low": None, "high": None, **position}]}).decode(),
                                      table)
        return cls(parsed._chunks[0])


def reconcile_gate(filter_text: str | None) -> tuple[str, str, dict[str, Any] | None] | None:
    """(schema, table, cut position or None) of a reconcile gate's JSON; None for any other gate."""
    if not filter_text or '"reconcile"' not in filter_text:
        return None
    try:
        raw = orjson.loads(filter_text)
        schema, table = raw["reconcile"]
        cut = raw.get("cut")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return str(schema), str(table), cut if isinstance(cut, dict) else None
