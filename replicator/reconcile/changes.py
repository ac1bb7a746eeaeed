"""What changed since a table's last clean pass: the final check (at cutover) re-hashes only that.

A pass over a table whose changes the applier applies (it has a stored offset) first writes a
bucket scheme as a track gate (replicator.apply.marks: split points of the source, a generation);
from then on every applied event of the table marks its bucket, in its batch transaction. Before
each chunk's target side is hashed, the pass reads the table's stored next offset (`checked`).
When the table ends `equal` or `repaired` and the pass was not interrupted, the pass is recorded
(points, and each chunk's range with its `checked` offset) and older generations are forgotten.

`replicator reconcile --changed` then takes the latest recorded pass P of each table and rechecks:
* each bucket of P with a mark at or above the lowest `checked` of the chunks overlapping it (an
  event applied after that chunk was hashed; one applied before was in the hash);
* every bucket marked under the generation of the current track gate, if newer than P (a later pass
  that did not complete: all its marks come after P ended);
* the whole table if a bucket `ALL` qualifies (a truncate, a column added), if marks exist under a
  generation between P's and the current gate's (their buckets are unknown), or if no pass is
  recorded.
Why an unmarked bucket is equal at the end: it held the same rows on both sides when its chunks
were hashed (P was clean), and no event touching it was applied since (see replicator.apply.marks);
once the source is fenced and the applier has drained, the source did not change it either —
every change of the source reaches the target through the applier. The check itself is a normal
pass over the chosen ranges: checksums, bisection, anchored rechecks and `--repair` apply.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson

from replicator.apply.marks import ALL, MAX_POINTS, Tracking, track_gate, track_gate_name, track_gate_text
from replicator.dialects.base import HashedTable, HashSide, TargetWriter
from replicator.model import TableId, topic_for

Bound = tuple[Any, ...] | None


@dataclass(frozen=True)
class Span:
    low: Bound
    high: Bound


def _lt(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a < b


def overlaps(a: Span, b: Span) -> bool:
    """[a.low, a.high) and [b.low, b.high) share a key (None: unbounded)."""
    below = a.low is None or b.high is None or _lt(a.low, b.high)
    above = b.low is None or a.high is None or _lt(b.low, a.high)
    return below and above


def bucket_span(points: tuple[tuple[Any, ...], ...], bucket: int) -> Span:
    return Span(points[bucket - 1] if bucket > 0 else None, points[bucket] if bucket < len(points) else None)


def merge(spans: list[Span]) -> list[Span]:
    """Disjoint spans in key order covering the same keys."""
    ordered = sorted(spans, key=lambda s: (s.low is not None, s.low or ()))
    merged: list[Span] = []
    for span in ordered:
        if merged:
            last = merged[-1]
            if last.high is None or (span.low is not None and not _lt(last.high, span.low)):
                high = None if last.high is None or span.high is None else max(last.high, span.high)
                merged[-1] = Span(last.low, high)
                continue
        merged.append(span)
    return merged


@dataclass(frozen=True)
class Plan:
    """The ranges a final check rechecks; None means the whole table."""

    spans: list[Span] | None
    note: str


def dirty(pass_text: str | None, recorded_at: float, pass_generation: int, marks: dict[tuple[int, int], int],
          current: Tracking | None) -> Plan:
    if pass_text is None:
        return Plan(None, "no clean pass is recorded for this table: compared whole")
    raw = orjson.loads(pass_text)
    points = tuple(tuple(p) for p in raw["points"])
    chunks = [(Span(None if lo is None else tuple(lo), None if hi is None else tuple(hi)), int(checked))
              for lo, hi, checked in raw["chunks"]]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(recorded_at))
    lowest = min((checked for _, checked in chunks), default=0)
    for (generation, bucket), offset in marks.items():
        if generation == pass_generation and bucket == ALL and offset >= lowest:
            return Plan(None, f"the table was truncated or given a column since the clean pass of {when}: "
                              "compared whole")
        if pass_generation < generation and (current is None or generation != current.generation):
            return Plan(None, f"changes since the clean pass of {when} were marked under a scheme no longer "
                              "known: compared whole")
    spans: list[Span] = []
    for (generation, bucket), offset in marks.items():
        if generation == pass_generation:
            span = bucket_span(points, bucket)
            checked = min((c for chunk, c in chunks if overlaps(chunk, span)), default=-1)
            if offset >= checked:
                spans.append(span)
        elif current is not None and generation == current.generation:  # a later pass, not completed
            if bucket == ALL:
                return Plan(None, f"the table was truncated or given a column since the clean pass of {when}: "
                                  "compared whole")
            spans.append(bucket_span(current.points, bucket))
    buckets = len(points) + 1
    merged = merge(spans)
    return Plan(merged, f"{len(spans)} of {buckets} bucket(s) changed since the clean pass of {when}; "
                        f"rechecked {len(merged)} range(s)")


class Tracker:
    """One table's change tracking during a pass."""

    def __init__(self, writer: TargetWriter, lock: threading.Lock, table: TableId, partition: tuple[str, int], *,
                 generation: int, points: list[tuple[Any, ...]]) -> None:
        self._writer, self._lock = writer, lock
        self.table, self.partition, self.generation, self.points = table, partition, generation, points
        self.chunks: list[tuple[Bound, Bound, int]] = []

    @classmethod
    def start(cls, writer: TargetWriter, lock: threading.Lock, source: HashSide, t: HashedTable, *,
              topic_prefix: str, every: int) -> Tracker | None:
        """Install the scheme of a table the applier applies (None: it applies nothing of it yet)."""
        table = t.table
        partition = (topic_for(topic_prefix, table), 0)
        with lock:
            stored = writer.read_offsets([partition]).get(partition)
        if stored is None or stored.next_offset is None:
            return None
        points = source.split(t, None, None, every) if t.range_kinds is not None else []
        if len(points) > MAX_POINTS:
            step = -(-len(points) // MAX_POINTS)
            points = points[step - 1::step]
        generation = time.time_ns() // 1000
        with lock:
            writer.write_gate(track_gate_name(table.schema, table.name), "filter",
                              track_gate_text(table.schema, table.name, generation, points), [partition])
        return cls(writer, lock, table, partition, generation=generation, points=points)

    def checked(self) -> int:
        """The table's stored next offset now: every event applied after this has an offset at or above it."""
        with self._lock:
            stored = self._writer.read_offsets([self.partition]).get(self.partition)
        return 0 if stored is None or stored.next_offset is None else stored.next_offset

    def add(self, low: Bound, high: Bound, checked: int) -> None:
        with self._lock:
            self.chunks.append((low, high, checked))

    def complete(self) -> None:
        """The table compared clean: record the pass; forget older generations and their marks."""
        text = orjson.dumps({"points": [list(p) for p in self.points],
                             "chunks": [[None if lo is None else list(lo), None if hi is None else list(hi), c]
                                        for lo, hi, c in self.chunks]}).decode()
        with self._lock:
            self._writer.save_pass(self.table.qualified, self.generation, text, keep=self.generation)


def plan_for(writer: TargetWriter, lock: threading.Lock, table: TableId) -> Plan:
    """The ranges of a table that changed since its last recorded clean pass."""
    with lock:
        recorded = writer.read_pass(table.qualified)
        marks = writer.read_marks(table.qualified)
        gate = writer.read_gates().get(track_gate_name(table.schema, table.name))
    current = track_gate(gate.filter) if gate is not None else None
    if recorded is None:
        return dirty(None, 0.0, 0, marks, current)
    generation, text, at = recorded
    return dirty(text, at, generation, marks, current)
