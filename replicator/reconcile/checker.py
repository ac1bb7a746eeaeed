"""`replicator reconcile`: compare each table's rows on the source and the target.

Per table (the argument for each step is in replicator/reconcile/__init__.py):
1. describe both sides: the columns compared (the source's, by name) with the family each pair of
   types compares as (replicator.canonical), the key, how each key column orders ranges;
2. cut the key space into chunks: a one-column integer key into ranges sized on the fly to take about
   `reconcile.chunk_seconds`, between an open range below the lowest key and one above the highest
   (empty unless rows were written meanwhile); other keys at split points the source gives every
   `chunk_rows` rows, the first range open below, the last above; a key of another type, or no key,
   is one chunk. Rows that exist only on the target are inside a chunk too;
3. hash each chunk on both sides at once (count and sum of 64-bit row hashes, one query a side), one
   chunk ahead: each side starts the next chunk's query when it is done with this one, so neither
   waits for the other between chunks (1M wide rows, MariaDB→PostgreSQL, 150k-row chunks: 2.61 s in
   step, 2.17 s for one query a side; a chunk's further queries wait for the next one's). A
   bounded integer range is hashed as pieces of about leaf_rows/16 rows by one grouped query a side
   while the chunks differ, so a differing chunk already says which pieces differ; after a clean chunk
   the sides sum the next one whole (a grouped sum costs 1.2x a plain one on MySQL/MariaDB, and 2x on
   PostgreSQL, whose plain sum runs in parallel workers and grouped one does not) and hash it again
   in pieces only when the totals differ;
4. bisect a chunk or piece whose checksums differ: an integer range into pieces by one grouped query,
   another key at split points of the side with more rows; go on with those that differ until a
   piece has at most `leaf_rows` rows (or cannot be cut);
5. compare such pieces row by row, up to 64 ranges by one query a side: both sides stream (sort key,
   canonical texts) in the same order and are merged; each missing, extra and different row is named
   with its columns and both values. A range whose hashes differed but whose rows compare equal is
   counted as a false alarm.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from replicator import faults
from replicator.canonical import Checksum, ColumnRule, Family, resolve
from replicator.config import MigrationConfig
from replicator.dialects import hash_side_for, selected_tables
from replicator.dialects.base import HashedTable, HashSide
from replicator.errors import ReconcileError
from replicator.events import KeyKind
from replicator.model import TableId
from replicator.reconcile.changes import Tracker, plan_for
from replicator.reconcile.report import (
    ColumnDifference,
    Report,
    RowDifference,
    RowKind,
    TableReport,
    TableState,
)
from replicator.sensor import Sensor

if TYPE_CHECKING:
    from replicator.reconcile.anchor import Anchor

log = logging.getLogger(__name__)
Say = Callable[[str], None]
Bound = tuple[Any, ...] | None
_PIECES = 16  # a differing range of another key is cut into this many pieces
_MAX_PIECES = 4096  # pieces of an integer range hashed by one grouped query
_LEAF_BATCH = 64  # ranges whose rows one query a side reads
_MIN_CHUNK, _MAX_CHUNK = 1_000, 2_000_000
# _Balance: chunks kept per way, a retry of the other way every so many chunks, the shortest chunk
# that counts, and how much slower than the other side a one-process side is before it tries its workers
_TRIALS, _RETRY, _TIMED_S, _SLOWER = 2, 8, 0.1, 1.25


@dataclass(frozen=True)
class Pair:
    """One compared table: how each side queries it."""

    source: HashedTable
    target: HashedTable

    @property
    def name(self) -> str:
        return self.source.table.qualified


@dataclass(frozen=True)
class Range:
    low: Bound
    high: Bound


def key_kind(source_family: Family, target_family: Family) -> KeyKind | None:
    """How a key column orders ranges on both sides: integers, or text in byte order; else None."""
    if source_family is Family.INT and target_family in (Family.INT, Family.DECIMAL):
        return "int"
    if source_family is Family.TEXT and target_family is Family.TEXT:
        return "text"
    return None


def describe(config: MigrationConfig, source: HashSide, target: HashSide, table: TableId,
             report: TableReport) -> Pair | None:
    """Both sides' view of a table; None (with the report's state and error set) when it cannot be compared."""
    schema, name = config.tables.target_for(table.schema, table.name)
    target_table = TableId(schema, name)
    found_source, found_target = source.columns(table), target.columns(target_table)
    if found_source is None:
        report.state, report.error = TableState.ERROR, f"source table {table} does not exist"
        return None
    if found_target is None:
        report.state, report.error = TableState.DIFFERENT, f"target table {target_table} does not exist"
        return None
    (source_columns, key), (target_columns, _) = found_source, found_target
    target_types = dict(target_columns)
    rules: list[ColumnRule] = []
    for column, source_type in source_columns:
        target_type = target_types.get(column)
        if target_type is None:
            report.state = TableState.DIFFERENT
            report.notes.append(f"column {column} is missing on the target")
            continue
        family = resolve(source.family(source_type), target.family(target_type))
        if family is None:
            report.state, report.error = TableState.ERROR, (
                f"column {column}: {source_type} on the source and {target_type} on the target cannot be"
                " compared (no common canonical form)")
            return None
        rules.append(ColumnRule(column, family, source_type, target_type))
    extra = [c for c, _ in target_columns if c not in dict(source_columns)]
    if extra:
        report.notes.append(f"target-only column(s) not compared: {', '.join(extra)}")
    if any(k not in {r.name for r in rules} for k in key):
        key = ()  # a key column missing on the target: compare as a table without a key
    by_name = {r.name: r for r in rules}
    kinds = tuple(key_kind(source.family(by_name[k].source_type), target.family(by_name[k].target_type))
                  for k in key)
    same = type(source) is type(target)
    fast = same and bool(getattr(source, "fast_hash", False))
    source_types = {r.name: r.source_type for r in rules}
    return Pair(HashedTable(table, tuple(rules), source_types, key, kinds, same, fast),
                HashedTable(target_table, tuple(rules), target_types, key, kinds, same, fast))


class _Sides:
    """One source and one target connection; a chunk's two queries run at once."""

    def __init__(self, config: MigrationConfig) -> None:
        self.source = hash_side_for(config.source, "source")
        try:
            self.target = hash_side_for(config.target, "target")
        except BaseException:
            self.source.close()
            raise
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reconcile-target")
        self._source_pool = ThreadPoolExecutor(1, thread_name_prefix="reconcile-source")
        parallel = [i for i, side in enumerate((self.source, self.target)) if getattr(side, "parallel_sum", False)]
        self.balance = _Balance((self.source, self.target)[parallel[0]] if len(parallel) == 1 else None,
                                parallel[0] if parallel else 0)

    def both(self, source: Callable[[HashSide], Any], target: Callable[[HashSide], Any]) -> tuple[Any, Any]:
        future: Future[Any] = self._pool.submit(target, self.target)
        try:
            first = source(self.source)
        finally:
            second = future.result()
        return first, second

    def ahead(self, source: Callable[[HashSide], Any], target: Callable[[HashSide], Any]) -> _Ahead:
        """Both calls queued, each on its side's own thread behind what is queued there already: a side
        goes on to the next chunk's query as soon as it is done with this one, without waiting for the
        other side. Nothing else may use the connections until the calls are done (`_Ahead.wait`)."""
        return _Ahead(self._source_pool.submit(_timed, source, self.source),
                      self._pool.submit(_timed, target, self.target))

    def close(self) -> None:
        self._source_pool.shutdown()
        self._pool.shutdown()
        self.source.close()
        self.target.close()


class _Ahead:
    """A chunk's first query on both sides, queued by `_Sides.ahead`."""

    def __init__(self, source: Future[tuple[Any, float, float]], target: Future[tuple[Any, float, float]]) -> None:
        self._futures = (source, target)

    def result(self) -> tuple[Any, Any, float, tuple[float, float]]:
        """Both results, when the later of the two was done (time.monotonic), and each side's seconds."""
        (first, first_began, first_done), (second, second_began, second_done) = (f.result() for f in self._futures)
        return first, second, max(first_done, second_done), (first_done - first_began, second_done - second_began)

    def wait(self) -> None:
        """Until both calls are done (their results, or errors, stay for `result`)."""
        futures.wait(self._futures)


@dataclass
class _Started:
    """A chunk whose first query is queued: how it is hashed, and when it was queued."""

    span: Range
    width: int | None  # key values per piece (a bounded integer range), or None: hashed whole
    ahead: _Ahead
    queued: float
    checked: int  # the change tracker's count before the target's hash (replicator.reconcile.changes)


def _timed(call: Callable[[HashSide], Any], side: HashSide) -> tuple[Any, float, float]:
    began = time.monotonic()
    return call(side), began, time.monotonic()


class _Balance:
    """Whether the one side that can spread a query over several processes (PostgreSQL, facing
    MySQL/MariaDB whose query runs in one thread) does so.

    A chunk takes as long as its slower side. Where the two servers share a machine's few cores, the
    parallel workers of one side take the CPU the other side's one thread needs: on 1M wide rows here,
    both sides at once took 2.74 s with PostgreSQL's two workers and 2.22 s without, although
    PostgreSQL alone is the slower side in one process. On separate machines the workers help when
    PostgreSQL is the clearly slower side. So the side hashes in one process from the start; once its
    own query time is over `_SLOWER` times the other side's, the next chunk tries its workers, the
    faster of the two ways (rows per second of the chunks) is kept, and every `_RETRY`th chunk tries
    the other way again (parallel again only while this side is clearly the slower one). Only speed
    depends on it: both ways hash the same rows.
    """

    def __init__(self, side: HashSide | None, index: int = 0) -> None:
        self._side = side
        self._index = index  # 0: the source, 1: the target
        self._parallel = False
        self._samples: dict[bool, list[tuple[int, float]]] = {True: [], False: []}
        self._chunks = 0
        if side is not None:
            side.one_process(True)

    def record(self, rows: int, seconds: float, sides: tuple[float, float]) -> None:
        """A chunk hashed on both sides: its larger row count, its seconds, each side's query seconds."""
        if self._side is None or seconds < _TIMED_S:
            return
        self._chunks += 1
        kept = self._samples[self._parallel]
        kept.append((rows, seconds))
        del kept[:-_TRIALS]
        slower = sides[self._index] > _SLOWER * sides[1 - self._index]
        want = self._choose(slower)
        if want != self._parallel:
            self._side.one_process(not want)
            self._parallel = want

    def _choose(self, slower: bool) -> bool:
        parallel, serial = self._samples[True], self._samples[False]
        retry = self._chunks % _RETRY == 0
        if self._parallel:
            return not retry and (not serial or _rate(parallel) >= _rate(serial))
        if not parallel or retry:
            return slower
        return _rate(parallel) > _rate(serial)


def _rate(samples: list[tuple[int, float]]) -> float:
    return sum(rows for rows, _ in samples) / max(sum(seconds for _, seconds in samples), 1e-9)


def same_text(family: Family, a: str | None, b: str | None) -> bool:
    """Canonical texts compare as text; JSON also as parsed values (escapes may be spelled otherwise)."""
    if a == b:
        return True
    if a is None or b is None or family is not Family.JSON:
        return False
    try:
        return bool(json.loads(a, parse_float=Decimal) == json.loads(b, parse_float=Decimal))
    except ValueError:
        return False


class TableCheck:
    """One table's comparison on one pair of connections."""

    def __init__(self, pair: Pair, sides: _Sides, config: MigrationConfig, report: TableReport,
                 sensor: Sensor) -> None:
        self.pair = pair
        self.sides = sides
        self.settings = config.reconcile
        self.report = report
        self.sensor = sensor
        self.lock = threading.Lock()
        self.pace: list[float] = []  # key units per second of the integer ranges hashed so far (shared)
        self.density: list[float] = []  # rows per key unit of those ranges (shared)
        self.suspects: list[Range] = []  # ranges whose rows differed in the pass (shared)
        # no anchored recheck for this table: a leaf's differences are reported at once (asked when needed)
        self.direct: Callable[[], bool] = lambda: False
        # both sides sum a plain range in parallel (PostgreSQL): chunks are hashed whole, pieces only
        # when they differ
        self.plain = bool(getattr(sides.source, "parallel_sum", False) and getattr(sides.target, "parallel_sum",
                                                                                     False))
        # the last integer chunk differed: the next one is hashed by pieces at once (differences come in
        # runs, and a second, grouped query per chunk would cost more); after a clean chunk, whole again
        # (a plain sum costs less: 1/1.2 on MySQL/MariaDB, and PostgreSQL runs it in parallel workers,
        # half the CPU of its grouped one)
        self.differing = False
        self.span: tuple[int, int] | None = None  # a one-column integer key's min and max (for progress)
        self._last_done = 0.0  # when this check's last chunk was hashed on both sides (time.monotonic)
        self.reached: int | None = None  # where the integer ranges handed out so far end

    # -- chunks ----------------------------------------------------------------------------------
    def chunks(self) -> Iterator[Range]:
        """The chunks of the key space, in key order, covering it whole."""
        kinds = self.pair.source.range_kinds
        if kinds is None:
            yield Range(None, None)
            return
        if kinds == ("int",):
            yield from self._int_chunks()
            return
        points = self.sides.source.split(self.pair.source, None, None, self.settings.chunk_rows)
        bounds: list[Bound] = [None, *points, None]
        for low, high in itertools.pairwise(bounds):
            yield Range(low, high)

    def _int_chunks(self) -> Iterator[Range]:
        found = self.sides.both(lambda s: s.bounds(self.pair.source), lambda t: t.bounds(self.pair.target))
        present = [b for b in found if b is not None]
        if not present:
            yield Range(None, None)
            return
        low, high = min(b[0] for b in present), max(b[1] for b in present)
        with self.lock:
            self.span = (low, high)
        yield Range(None, (low,))  # below the lowest key either side held: empty unless written since
        step, start = self.settings.chunk_rows, low
        while True:
            end = start + step
            if end > high:
                yield Range((start,), (high + 1,))
                yield Range((high + 1,), None)  # above the highest key: likewise
                return
            yield Range((start,), (end,))
            with self.lock:
                self.reached = end
            step = self._next_step(step)
            start = end

    def _next_step(self, step: int) -> int:
        """Size the next range to take about chunk_seconds, at the pace of the last ranges hashed
        (key units per second: a sparse key gets wider ranges); at most 4x the last size."""
        with self.lock:
            pace = sorted(self.pace[-5:])
        if not pace:
            return step
        wanted = pace[len(pace) // 2] * self.settings.chunk_seconds
        return int(max(_MIN_CHUNK, min(_MAX_CHUNK, wanted, step * 4)))

    # -- hashing and bisection -------------------------------------------------------------------
    def checksums(self, span: Range) -> tuple[Checksum, Checksum]:
        result = self.sides.both(lambda s: s.checksum(self.pair.source, span.low, span.high),
                                 lambda t: t.checksum(self.pair.target, span.low, span.high))
        return result[0], result[1]

    def _piece_width(self, span: Range) -> int | None:
        """Key values per piece of a bounded one-column integer range, so that a piece holds about
        `_piece_rows` rows at the density (rows per key value) of the ranges hashed so far; at most
        `_MAX_PIECES` pieces. None: the range is hashed whole (other keys, open ranges)."""
        if self.pair.source.range_kinds != ("int",) or span.low is None or span.high is None or self.plain:
            return None
        with self.lock:
            density = sorted(self.density[-5:])
        per_key = density[len(density) // 2] if density else 1.0  # a unique key: at most one row per value
        size = int(span.high[0]) - int(span.low[0])
        return max(1, int(_piece_rows(self.settings.leaf_rows) / max(per_key, 1e-9)), -(-size // _MAX_PIECES))

    def begin(self, span: Range, checked: int = 0) -> _Started:
        """Queue the chunk's first query on both sides (`_Sides.ahead`): a bounded integer range whole,
        or as pieces of `_piece_rows` rows by one grouped query a side while chunks differ; another
        range whole."""
        width = self._piece_width(span)
        if width is None:
            ahead = self.sides.ahead(lambda s: s.checksum(self.pair.source, span.low, span.high),
                                     lambda t: t.checksum(self.pair.target, span.low, span.high))
        else:
            assert span.low is not None and span.high is not None
            low, high = int(span.low[0]), int(span.high[0])
            with self.lock:
                grouped = self.differing
            ahead = self.sides.ahead(
                lambda s: _piece_sums(s, self.pair.source, low, high, width, grouped=grouped),
                lambda t: _piece_sums(t, self.pair.target, low, high, width, grouped=grouped))
        return _Started(span, width, ahead, time.monotonic(), checked)

    def check(self, span: Range) -> None:
        """Hash one chunk on both sides and compare it (`begin`, then `finish`)."""
        self.finish(self.begin(span))

    def _pieces(self, span: Range, width: int, mine: dict[int, Checksum] | None,
                theirs: dict[int, Checksum] | None) -> tuple[dict[int, Checksum], dict[int, Checksum]]:
        """The pieces of a differing integer range on both sides: asked of both if they summed it whole."""
        if mine is not None and theirs is not None:
            return mine, theirs
        assert span.low is not None and span.high is not None
        low, high = int(span.low[0]), int(span.high[0])
        found = self.sides.both(lambda s: s.buckets(self.pair.source, low, high, width),
                                lambda t: t.buckets(self.pair.target, low, high, width))
        return found[0], found[1]

    def finish(self, started: _Started, following: _Started | None = None) -> None:
        """Compare a begun chunk: when it differs, the pieces that differ (asked of both sides if they
        summed it whole) are compared row by row, or the chunk is bisected. `following`: the next
        chunk, begun already; its queries are waited for before this chunk's further ones (the
        connections serve one query at a time)."""
        span, width = started.span, started.width
        first, second, done, sides = started.ahead.result()
        # the chunk's time: from when its queries could start (queued, or the last chunk done) to done
        seconds = done - max(started.queued, self._last_done)
        self._last_done = done
        (source, by_piece), (target, their_pieces) = (first, second) if width is not None else \
            ((first, None), (second, None))
        if source != target and following is not None:
            following.ahead.wait()
        pieces = None
        if width is not None and source != target:
            pieces = self._pieces(span, width, by_piece, their_pieces)
        rows = max(source.rows, target.rows)
        if pieces is None:  # a chunk hashed once a side (not also by pieces)
            self.sides.balance.record(rows, seconds, sides)
        with self.lock:
            if width is not None:
                self.differing = source != target
            if self.pair.source.range_kinds == ("int",) and span.low is not None and span.high is not None:
                keys = max(1, span.high[0] - span.low[0])
                self.pace.append(keys / max(seconds, 1e-3))
                if rows:
                    self.density.append(rows / keys)
            self.report.chunks += 1
            self.report.source_rows += source.rows
            self.report.target_rows += target.rows
            self.report.hashed_rows += rows
        self.sensor.on_reconcile_chunk(self.pair.name, rows)
        if width is None:
            if source != target:
                with self.lock:
                    self.report.mismatched_chunks += 1
                self.bisect(span, source, target)
        elif pieces is not None and pieces[0] != pieces[1]:
            with self.lock:
                self.report.mismatched_chunks += 1
            assert width is not None and span.low is not None and span.high is not None
            self._compare_pieces(int(span.low[0]), int(span.high[0]), width, *pieces)

    def bisect(self, span: Range, source: Checksum, target: Checksum) -> None:
        rows = max(source.rows, target.rows)
        # nothing on one side: every row there is missing or extra, cutting finds nothing more
        if rows <= self.settings.leaf_rows or self.pair.source.range_kinds is None or not min(source.rows,
                                                                                               target.rows):
            self.leaves([span])
            return
        if self.pair.source.range_kinds == ("int",) and span.low is not None and span.high is not None:
            self._bisect_buckets(span, rows)
            return
        side, table = (self.sides.source, self.pair.source) if source.rows >= target.rows \
            else (self.sides.target, self.pair.target)
        points = side.split(table, span.low, span.high, max(1, -(-rows // _PIECES)))
        if not points:
            self.leaves([span])
            return
        bounds: list[Bound] = [span.low, *points, span.high]
        small: list[Range] = []
        for low, high in itertools.pairwise(bounds):
            piece = Range(low, high)
            a, b = self.checksums(piece)
            if a == b:
                continue
            if max(a.rows, b.rows) <= self.settings.leaf_rows or not min(a.rows, b.rows):
                small.append(piece)
            else:
                self.bisect(piece, a, b)
        self.leaves(small)

    def _bisect_buckets(self, span: Range, rows: int) -> None:
        """An integer range cut into pieces of about `_piece_rows` rows, all hashed in one grouped query per
        side (at most `_MAX_PIECES` pieces a round); the pieces that differ are compared, or cut again."""
        assert span.low is not None and span.high is not None
        low, high = int(span.low[0]), int(span.high[0])
        width = max(1, -(-(high - low) * _piece_rows(self.settings.leaf_rows) // rows),
                    -(-(high - low) // _MAX_PIECES))
        a, b = self.sides.both(lambda s: s.buckets(self.pair.source, low, high, width),
                               lambda t: t.buckets(self.pair.target, low, high, width))
        self._compare_pieces(low, high, width, a, b)

    def _compare_pieces(self, low: int, high: int, width: int, a: dict[int, Checksum],
                        b: dict[int, Checksum]) -> None:
        """The pieces of [low, high) whose checksums differ: small ones compared row by row (together),
        larger ones (the density was misjudged) cut again."""
        empty = Checksum(0, 0)
        small: list[Range] = []
        for index in sorted(set(a) | set(b)):
            left, right = a.get(index, empty), b.get(index, empty)
            if left == right:
                continue
            piece = Range((low + index * width,), (min(low + (index + 1) * width, high),))
            if width == 1 or max(left.rows, right.rows) <= 2 * self.settings.leaf_rows:
                small.append(piece)
            else:
                self.bisect(piece, left, right)
        self.leaves(small)

    # -- rows ------------------------------------------------------------------------------------
    def leaves(self, spans: list[Range]) -> None:
        """Compare the rows of ranges (disjoint, in key order) by merging both sides' ordered streams,
        `_LEAF_BATCH` ranges a query. Rows that differ make their range a suspect: while writes go on,
        only a recheck at a common position confirms them."""
        for group in _groups(spans):
            found = self.found_in(group)
            with self.lock:
                self.report.false_alarms += sum(1 for span in group if span not in found)
                if self.direct():  # no recheck will follow: these are the differences, read once
                    for span in group:
                        for difference in found.get(span, ()):
                            self.report.add(difference, self.settings.max_reported)
                else:
                    self.suspects.extend(span for span in group if span in found)

    def found_in(self, spans: list[Range]) -> dict[Range, list[RowDifference]]:
        """The differing rows of each range (disjoint, in key order) that has any."""
        found: dict[Range, list[RowDifference]] = {}
        lows = [span.low for span in spans]
        for key, difference in self._differences(spans):
            at = _owner(lows, key)
            found.setdefault(spans[at], []).append(difference)
        return found

    def differences(self, spans: list[Range]) -> Iterator[RowDifference]:
        for group in _groups(spans):
            for _, difference in self._differences(group):
                yield difference

    def _differences(self, spans: list[Range]) -> Iterator[tuple[tuple[Any, ...], RowDifference]]:
        rules = self.pair.source.rules
        names = [r.name for r in rules]
        key = self.pair.source.key
        key_at = [names.index(k) for k in key] if key else list(range(len(names)))
        bounds = [(span.low, span.high) for span in spans]
        source = self.sides.source.rows(self.pair.source, bounds)
        target = _Prefetch(self.sides.target.rows(self.pair.target, bounds))
        try:
            yield from self._merge(source, target, rules, names, key_at)
        finally:
            target.close()
            source.close()

    @staticmethod
    def _merge(source: Iterator[Any], target: Iterator[Any], rules: tuple[ColumnRule, ...], names: list[str],
               key_at: list[int]) -> Iterator[tuple[tuple[Any, ...], RowDifference]]:
        s, t = next(source, None), next(target, None)
        while s is not None or t is not None:
            if t is None or (s is not None and _before(s[0], t[0])):
                assert s is not None
                yield s[0], RowDifference(RowKind.MISSING, {names[i]: s[1][i] for i in key_at},
                                          source=dict(zip(names, s[1], strict=True)))
                s = next(source, None)
            elif s is None or _before(t[0], s[0]):
                yield t[0], RowDifference(RowKind.EXTRA, {names[i]: t[1][i] for i in key_at},
                                          target=dict(zip(names, t[1], strict=True)))
                t = next(target, None)
            else:
                columns = tuple(ColumnDifference(r.name, a, b) for r, a, b in zip(rules, s[1], t[1], strict=True)
                                if not same_text(r.family, a, b))
                if columns:
                    yield s[0], RowDifference(RowKind.DIFFERENT, {names[i]: s[1][i] for i in key_at}, columns)
                s, t = next(source, None), next(target, None)


def _take(rows: Iterator[tuple[tuple[str | None, ...], dict[str, Any]]],
          wanted: Counter[tuple[str | None, ...]]) -> list[dict[str, Any]]:
    """The rows whose canonical key is wanted, as many times as wanted (a table without a key may
    hold a row several times)."""
    left, taken = Counter(wanted), []
    for key, row in rows:
        if left[key] > 0:
            left[key] -= 1
            taken.append(row)
    return taken


def _piece_sums(side: HashSide, table: HashedTable, low: int, high: int, width: int, *,
                grouped: bool) -> tuple[Checksum, dict[int, Checksum] | None]:
    """[low, high) hashed by one side: whole (its pieces are asked for only if the range differs), or,
    when `grouped`, by pieces of `width` key values in one grouped query."""
    if not grouped:
        return side.checksum(table, (low,), (high,)), None
    pieces = side.buckets(table, low, high, width)
    return Checksum.add(pieces.values()), pieces


def _piece_rows(leaf_rows: int) -> int:
    """Rows of a piece of an integer range hashed by a grouped query: small, since a differing piece is
    read row by row on both sides, and the grouped query costs the same for any number of pieces."""
    return max(1, leaf_rows // 16)


def _groups(spans: list[Range]) -> Iterator[list[Range]]:
    for at in range(0, len(spans), _LEAF_BATCH):
        yield spans[at:at + _LEAF_BATCH]


def _owner(lows: list[Bound], key: tuple[Any, ...]) -> int:
    """The index of the range (disjoint, in key order, given by their lower bounds) holding a sort key."""
    at = 0
    low, high = 1, len(lows) - 1
    while low <= high:  # the last range whose lower bound is at or below the key
        mid = (low + high) // 2
        bound = lows[mid]
        if bound is None or not _before(key, bound):
            at, low = mid, mid + 1
        else:
            high = mid - 1
    return at


def _span_order(span: Range) -> tuple[bool, tuple[Any, ...]]:
    return (span.low is not None, span.low or ())


def _before(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Sort keys in the order both databases sorted them: numbers as numbers, text by code point (the
    order of UTF-8 bytes); Decimal and int compare as numbers."""
    return a < b


class _Prefetch:
    """Reads a row stream in a thread of its own, a few thousand rows ahead (both sides stream at once)."""

    def __init__(self, rows: Iterator[Any], depth: int = 4096) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(depth)
        self._done = object()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(rows,), daemon=True, name="reconcile-rows")
        self._thread.start()

    def _run(self, rows: Iterator[Any]) -> None:
        try:
            for row in rows:
                if self._stop.is_set():
                    break
                self._queue.put(row)
        except BaseException as exc:
            self._error = exc
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
            self._queue.put(self._done)

    def __iter__(self) -> _Prefetch:
        return self

    def __next__(self) -> Any:
        item = self._queue.get()
        if item is self._done:
            self._queue.put(self._done)
            if self._error is not None:
                raise self._error
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):  # the reader is finishing
                self._queue.get(timeout=0.1)
        self._thread.join()


class _Lookup:
    """A yes/no answer computed in a thread of its own, waited for where it is needed."""

    def __init__(self, compute: Callable[[], bool]) -> None:
        self._future: Future[bool] = Future()

        def run() -> None:
            try:
                self._future.set_result(compute())
            except BaseException as exc:
                self._future.set_exception(exc)

        threading.Thread(target=run, daemon=True, name="reconcile-lookup").start()

    def get(self) -> bool:
        return self._future.result()


class _Progress(threading.Thread):
    """A line every few seconds while a table is hashed: rows so far, rate, and for a one-column
    integer key how far through the key space the pass is."""

    def __init__(self, table: str, report: TableReport, check: TableCheck, say: Say, every_s: float = 5.0) -> None:
        super().__init__(name="reconcile-progress", daemon=True)
        self._table, self._report, self._check, self._say, self._every = table, report, check, say, every_s
        self._done = threading.Event()
        self._began = time.monotonic()
        self.start()

    def run(self) -> None:
        while not self._done.wait(self._every):
            with self._check.lock:
                rows, chunks, reached = self._report.hashed_rows, self._report.chunks, self._check.reached
            rate = rows / max(time.monotonic() - self._began, 1e-3)
            where = ""
            if reached is not None and self._check.span is not None:
                low, high = self._check.span
                where = f", {100 * (reached - low) / max(high - low, 1):.0f}% of the key range"
            self._say(f"{self._table}: {rows:,} rows hashed in {chunks} chunk(s), {rate:,.0f} rows/s{where}")

    def close(self) -> None:
        self._done.set()
        self.join()


class Reconciler:
    """Compares the selected tables (or the named ones), chunk by chunk, `reconcile.workers` at once."""

    def __init__(self, config: MigrationConfig, sensor: Sensor, say: Say, stop: threading.Event | None = None,
                 *, anchored: bool = True, repair: bool = False, reach_timeout_s: float = 60.0,
                 changed: bool = False) -> None:
        self._config = config
        self._changed = changed  # recheck only what changed since each table's last clean pass
        self._state_lock = threading.Lock()  # the anchor's target connection, shared by the workers
        self._sensor = sensor
        self._say = say
        self._stop = stop or threading.Event()
        self._anchored = anchored
        self._repair = repair
        self._reach_timeout_s = reach_timeout_s
        self._anchor_obj: Anchor | None = None

    def resolve(self, names: list[str] | None) -> list[TableId]:
        """The selected source tables, or the named ones (each must be selected)."""
        return selected_tables(self._config, names)

    def run(self, names: list[str] | None = None) -> Report:
        tables = self.resolve(names)
        report = Report(self._config.source.describe(), self._config.target.describe(), started_at=time.time())
        began = time.monotonic()
        self._anchor()  # first of all: remove reconcile gates a killed run left behind
        workers = [_Sides(self._config) for _ in range(self._config.reconcile.workers)]
        try:
            for table in tables:
                if self._stop.is_set():
                    break
                report.tables.append(self.check_table(table, workers))
        finally:
            for sides in workers:
                sides.close()
            if self._anchor_obj is not None:
                self._anchor_obj.close()
                self._anchor_obj = None
        report.seconds = time.monotonic() - began
        return report

    def check_table(self, table: TableId, workers: list[_Sides]) -> TableReport:
        schema, name = self._config.tables.target_for(table.schema, table.name)
        report = TableReport(table.qualified, f"{schema}.{name}")
        began = time.monotonic()
        try:
            if self._copying(table):
                report.state = TableState.UNSETTLED
                report.notes.append("the snapshot is copying this table (its apply is held): compare it once "
                                    "it is released")
                self._say(self._line(report))
                return report
            pair = describe(self._config, workers[0].source, workers[0].target, table, report)
            if pair is not None:
                ranges: list[Range] | None = None
                tracker: Tracker | None = None
                anchor = self._anchor()
                if self._changed and anchor is not None:
                    plan = plan_for(anchor.writer, self._state_lock, table)
                    report.notes.append(plan.note)
                    if plan.spans is not None:
                        ranges = [Range(s.low, s.high) for s in plan.spans]
                elif anchor is not None:
                    settings = self._config.reconcile
                    tracker = Tracker.start(anchor.writer, self._state_lock, workers[0].source, pair.source,
                                            topic_prefix=self._config.kafka.topic_prefix,
                                            every=max(settings.leaf_rows * 4, settings.chunk_rows // 16))
                suspects = self._check_chunks(pair, workers, report, ranges, tracker)
                if suspects:
                    self._confirm(pair, TableCheck(pair, workers[0], self._config, report, self._sensor), suspects,
                                  report)
                clean = report.state is TableState.REPAIRED or (report.state is TableState.EQUAL
                                                                and not report.differences)
                if tracker is not None and clean and not self._stop.is_set():
                    tracker.complete()
        except ReconcileError as exc:
            report.state, report.error = TableState.ERROR, exc.line()
        report.seconds = time.monotonic() - began
        if report.state is TableState.EQUAL and report.differences:
            report.state = TableState.DIFFERENT
        self._sensor.on_reconcile_table(table.qualified, report.differences, report.state is TableState.EQUAL,
                                        time.time())
        self._say(self._line(report))
        return report

    def _check_chunks(self, pair: Pair, workers: list[_Sides], report: TableReport,
                      ranges: list[Range] | None = None, tracker: Tracker | None = None) -> list[Range]:
        checks = [TableCheck(pair, sides, self._config, report, self._sensor) for sides in workers]
        anchor = self._anchor()
        # whether the table has a stream (a Kafka round trip) is looked up while the first chunks are hashed
        streamed = _Lookup(lambda: anchor is not None and anchor.has_stream(pair.source.table))
        for check in checks:
            check.direct = lambda: not streamed.get()
        # all checks share the report's counters under one lock
        for check in checks[1:]:
            check.lock, check.pace, check.suspects = checks[0].lock, checks[0].pace, checks[0].suspects
            check.density = checks[0].density
        chunks = checks[0].chunks() if ranges is None else iter(ranges)
        feed = threading.Lock()
        errors: list[BaseException] = []
        progress = _Progress(pair.name, report, checks[0], self._say)

        def begin(check: TableCheck) -> _Started | None:
            if self._stop.is_set() or errors:
                return None
            with feed:
                span = next(chunks, None)
            if span is None:
                return None
            checked = tracker.checked() if tracker is not None else 0  # before the target hash
            return check.begin(span, checked)

        def work(check: TableCheck) -> None:
            # one chunk ahead: its queries wait on each side's thread behind the current chunk's, so
            # neither side waits for the other between chunks (one query per side at a time, as ever)
            current: _Started | None = None
            following: _Started | None = None
            try:
                current = begin(check)
                while current is not None:
                    following = begin(check)
                    check.finish(current, following)
                    if tracker is not None:
                        tracker.add(current.span.low, current.span.high, current.checked)
                    current, following = following, None
            except BaseException as exc:
                errors.append(exc)
            finally:
                for pending in (current, following):  # nothing runs on the connections past here
                    if pending is not None:
                        pending.ahead.wait()

        try:
            if len(checks) == 1:
                work(checks[0])
            else:
                threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in checks]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        finally:
            progress.close()
        if errors:
            raise errors[0]
        if not streamed.get():
            report.notes.append("compared without anchoring to the change stream (no stream for this table, or"
                                " --no-anchor): exact when neither side changed during the pass")
            if self._repair:
                report.notes.append("not repaired: a repair needs an anchored recheck (a common stream position)")
        return sorted(checks[0].suspects, key=_span_order)

    def _confirm(self, pair: Pair, check: TableCheck, suspects: list[Range], report: TableReport) -> None:
        """Compare the suspect ranges again with the target at the source's read view (see anchor):
        what still differs there is confirmed; what does not was the stream's lag."""
        from replicator.reconcile.anchor import Reached

        table = pair.source.table
        anchor = self._anchor()
        assert anchor is not None  # suspects are kept only when the table can be rechecked
        attempts = self._config.reconcile.rechecks
        for attempt in range(1, attempts + 1):
            anchor.hold(table)
            try:
                faults.reach("reconcile.after-hold")
                view = check.sides.source.open_view()
                try:
                    anchor.cut(table, view)
                    faults.reach("reconcile.after-cut")
                    reached = anchor.reach(table, view, self._reach_timeout_s)
                    if reached is Reached.EXACT:
                        found = self._record(check, suspects, report)
                        report.notes.append(f"{len(suspects)} suspect range(s) rechecked at a common stream "
                                            f"position (attempt {attempt})")
                        if found and self._repair:
                            self._repair_rows(check, found, anchor, report)
                        return
                    log.info("%s: recheck attempt %d: %s", table, attempt, reached.value)
                finally:
                    check.sides.source.close_view()
            finally:
                anchor.release(table)
            if reached is Reached.TIMEOUT:
                report.state = TableState.UNSETTLED
                report.notes.append(f"{len(suspects)} range(s) differed, but the applier did not reach the source's "
                                    f"read view within {self._reach_timeout_s:.0f} s: is `replicator apply` running "
                                    "and caught up?")
                return
        report.state = TableState.UNSETTLED
        report.notes.append(f"{len(suspects)} range(s) differed and no exact common position was found in "
                            f"{attempts} attempt(s)")

    def _record(self, check: TableCheck, suspects: list[Range],
                report: TableReport) -> list[tuple[Range, list[RowDifference]]]:
        found = []
        for group in _groups(suspects):
            differing = check.found_in(group)
            for span in group:  # in key order
                for difference in differing.get(span, ()):
                    report.add(difference, self._config.reconcile.max_reported)
                if span in differing:
                    found.append((span, differing[span]))
        return found

    def _repair_rows(self, check: TableCheck, found: list[tuple[Range, list[RowDifference]]], anchor: Anchor,
                     report: TableReport) -> None:
        """Write the source's rows of the read view into the target through the applier's writer, in
        one transaction, while the table is cut at that view (the applier waits at the first later
        event, so nothing newer can be overwritten); then compare the ranges again."""
        pair, writer = check.pair, anchor.writer
        target = writer.describe(pair.target.table)
        if target is None:
            raise ReconcileError(f"target table {pair.target.table} does not exist")
        columns = tuple(r.name for r in pair.source.rules if target.column(r.name) is not None)
        key = pair.source.key or tuple(r.name for r in pair.source.rules)
        keyed = bool(pair.source.key) and tuple(target.key) == tuple(pair.source.key)
        writer.begin()
        try:
            for span, differences in found:
                wanted = Counter(tuple(d.key[k] for k in key) for d in differences if d.kind is not RowKind.EXTRA)
                extra = Counter(tuple(d.key[k] for k in key) for d in differences if d.kind is not RowKind.MISSING
                                and (d.kind is RowKind.EXTRA or not keyed))
                rows = _take(check.sides.source.values(pair.source, span.low, span.high), wanted)
                gone = _take(check.sides.target.values(pair.target, span.low, span.high), extra)
                if keyed:
                    writer.delete(target, [tuple(r[k] for k in target.key) for r in gone])
                    writer.upsert(target, columns, [tuple(r[c] for c in columns) for r in rows])
                else:
                    for row in gone:
                        writer.delete_exact(target, row)
                    writer.insert_rows(target, columns, [tuple(r[c] for c in columns) for r in rows])
            faults.reach("reconcile.repair-before-commit")
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        left = sum(1 for _ in check.differences([span for span, _ in found]))
        if left:
            report.notes.append(f"repair: {left} row(s) still differ after the repair")
            return
        report.repaired = report.differences
        report.state = TableState.REPAIRED

    def _copying(self, table: TableId) -> bool:
        anchor = self._anchor()
        return anchor is not None and anchor.held_by_snapshot(table)

    def _anchor(self) -> Anchor | None:
        if not self._anchored:
            return None
        if self._anchor_obj is None:
            from replicator.reconcile.anchor import Anchor  # Kafka's client: loaded only when anchoring

            self._anchor_obj = Anchor(self._config)
            for table in self._anchor_obj.release_all():
                self._say(f"removed a reconcile gate left behind on {table}")
        return self._anchor_obj

    @staticmethod
    def _line(report: TableReport) -> str:
        if report.error:
            return f"{report.table}: {report.state.value}: {report.error}"
        counts = ", ".join(f"{v} {k}" for k, v in report.counts.items() if v)
        return (f"{report.table}: {report.state.value} ({report.source_rows} rows in the source, "
                f"{report.target_rows} in the target, {report.chunks} chunk(s), {report.seconds:.1f} s"
                + (f"; {counts}" if counts else "") + ")")
