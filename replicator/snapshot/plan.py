"""A table's copy plan: its key, how the key orders, and the chunk bounds — fixed once, kept in the ledger.

The plan is written to the ledger before the first chunk is copied and reused on every resume, so a
chunk number always means the same key range; the ranges [None, b1), [b1, b2), …, [bn, None) cover
the whole key space with no gap and no overlap. A table without a usable key is one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from replicator.dialects.base import SourceShape
from replicator.errors import SnapshotError
from replicator.events import KeyKind


@dataclass(frozen=True)
class Chunk:
    index: int
    low: tuple[Any, ...] | None
    high: tuple[Any, ...] | None


@dataclass(frozen=True)
class TablePlan:
    key: tuple[str, ...]
    kinds: tuple[KeyKind, ...] | None  # None: one chunk, no key ranges
    bounds: tuple[tuple[Any, ...], ...]

    @classmethod
    def make(cls, shape: SourceShape, points: list[tuple[Any, ...]]) -> TablePlan:
        kinds = shape.chunk_kinds
        return cls(shape.key, kinds, tuple(points) if kinds is not None else ())

    @property
    def chunks(self) -> list[Chunk]:
        edges: list[tuple[Any, ...] | None] = [None, *self.bounds, None]
        return [Chunk(i, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]

    def to_json(self) -> str:
        return orjson.dumps({"key": list(self.key), "kinds": None if self.kinds is None else list(self.kinds),
                             "bounds": [list(b) for b in self.bounds]}).decode()

    @classmethod
    def from_json(cls, text: str, table: str) -> TablePlan:
        try:
            raw = orjson.loads(text)
            kinds = raw["kinds"]
            return cls(tuple(raw["key"]), None if kinds is None else tuple(kinds),
                       tuple(tuple(b) for b in raw["bounds"]))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise SnapshotError(f"the copy plan of {table} in our snapshot ledger is unreadable: {exc}",
                                hint=f"restart that table: replicator snapshot --restart {table}") from None


def filter_json(plan: TablePlan, positions: dict[int, str]) -> str:
    """The snapshot filter of replicator.apply.gate: each chunk's key range and read position, and the
    key columns with how they order (for a truncate that only some chunks' views saw)."""
    chunks = []
    for chunk in plan.chunks:
        entry: dict[str, Any] = {"low": None if chunk.low is None else list(chunk.low),
                                 "high": None if chunk.high is None else list(chunk.high)}
        entry.update(orjson.loads(positions[chunk.index]))
        chunks.append(entry)
    document: dict[str, Any] = {"chunks": chunks}
    if plan.kinds is not None:
        document.update(key=list(plan.key), kinds=list(plan.kinds))
    return orjson.dumps(document).decode()
