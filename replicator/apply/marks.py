"""Change tracking for the reconciler's final check: which key ranges of a table changed since its
last clean pass.

When the reconciler starts a pass over a table that has a change stream, it cuts the table's key
space into buckets at split points of the source (at most `MAX_POINTS`) and writes them, with a
generation number, as a gate row of our `table_gates` state table, named `track:<schema>.<table>`
(state `filter`, JSON {"track": [schema, table], "generation": G, "points": [[key…], …]}), in a
transaction that first locks the table's stored offset row, as every gate write does.

The applier then records, in the same transaction as the rows it applies, for every applied event
of that table the bucket of its key (a primary-key change: the old key's and the new key's; a
truncate, or a column added to the target: `ALL`), as rows (table, generation, bucket, highest Kafka
offset) of our `reconcile_marks` state table. Bucket i holds the keys k with points[i-1] <= k <
points[i] (the first bucket open below, the last above), keys compared as the snapshot filter
compares them (`replicator.apply.gate`): numbers as numbers, text by code point — the byte order the
split points were read in. A key that does not compare (a type the points do not share) marks `ALL`.

Why no applied event escapes its mark: a batch reads the gates again under its offset locks and is
voided if they changed since it was planned (`ChangeApplier._write`), so a batch that commits after
the gate row planned its marks with that generation. The reconciler reads a chunk's
`checked_offset` — the table's stored next offset — after the gate row committed and before it
hashes the chunk's target side: every event applied after that hash has an offset >= it and a mark
of that generation. Marks are written in the batch transaction: a crash leaves both or neither.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from replicator.apply.batch import key_of
from replicator.dialects.base import TargetTable
from replicator.events import ChangeEvent

TRACK_PREFIX = "track:"
ALL = -1  # the bucket of a change that may touch any row (truncate, a column added)
MAX_POINTS = 512


def track_gate_name(schema: str, table: str) -> str:
    return f"{TRACK_PREFIX}{schema}.{table}"


def track_gate_text(schema: str, table: str, generation: int, points: Iterable[tuple[Any, ...]]) -> str:
    return orjson.dumps({"track": [schema, table], "generation": generation,
                         "points": [list(p) for p in points]}).decode()


@dataclass(frozen=True)
class Tracking:
    """One table's current bucket scheme."""

    table: str  # the source table, schema.table
    generation: int
    points: tuple[tuple[Any, ...], ...]

    def bucket(self, key: tuple[Any, ...] | None) -> int:
        if not self.points:
            return 0
        if key is None:
            return ALL
        try:
            return bisect.bisect_right(self.points, key)
        except TypeError:
            return ALL


def track_gate(filter_text: str | None) -> Tracking | None:
    """The scheme a track gate's JSON holds; None for any other gate."""
    if not filter_text or '"track"' not in filter_text:
        return None
    try:
        raw = orjson.loads(filter_text)
        schema, table = raw["track"]
        return Tracking(f"{schema}.{table}", int(raw["generation"]), tuple(tuple(p) for p in raw["points"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def marks_of(tracking: Tracking, table: TargetTable, events: list[ChangeEvent], *, everything: bool = False,
             ) -> dict[int, int]:
    """bucket → the highest Kafka offset of the events touching it."""
    marks: dict[int, int] = {}

    def mark(bucket: int, offset: int) -> None:
        if marks.get(bucket, -1) < offset:
            marks[bucket] = offset

    keyed = bool(table.key)
    for event in events:
        offset = event.ref.offset
        if everything or event.op == "t":
            mark(ALL, offset)
            continue
        if not keyed:
            mark(tracking.bucket(None) if tracking.points else 0, offset)
            continue
        try:
            mark(tracking.bucket(key_of(table, event)), offset)
            for other in (event.old_key, event.new_key):
                if other is not None:
                    mark(tracking.bucket(tuple(other[k] for k in table.key)), offset)
        except KeyError:
            mark(ALL, offset)
    return marks
