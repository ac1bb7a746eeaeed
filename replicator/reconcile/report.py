"""What a reconcile pass found: per table, its state, counts and the differing rows. No I/O here
except `to_json`'s text. Values are canonical texts (replicator.canonical), so a report reads the
same whatever the engines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import orjson


class RowKind(StrEnum):
    MISSING = "missing"  # in the source, not in the target
    EXTRA = "extra"  # in the target, not in the source
    DIFFERENT = "different"  # same key, other values


class TableState(StrEnum):
    EQUAL = "equal"
    DIFFERENT = "different"  # confirmed differences
    REPAIRED = "repaired"  # differences found, re-copied and verified equal
    UNSETTLED = "unsettled"  # rows kept changing: no common position could be proven (never hides a confirmed one)
    ERROR = "error"  # the table could not be compared


@dataclass(frozen=True)
class ColumnDifference:
    column: str
    source: str | None
    target: str | None


@dataclass(frozen=True)
class RowDifference:
    kind: RowKind
    key: dict[str, str | None]  # key columns (a table without a key: every column) → canonical text
    columns: tuple[ColumnDifference, ...] = ()  # DIFFERENT: the columns that differ
    source: dict[str, str | None] | None = None  # MISSING: the source row
    target: dict[str, str | None] | None = None  # EXTRA: the target row

    def line(self) -> str:
        key = ", ".join(f"{k}={v}" for k, v in self.key.items())
        if self.kind is RowKind.DIFFERENT:
            cols = "; ".join(f"{c.column}: source {c.source!r}, target {c.target!r}" for c in self.columns)
            return f"different ({key}): {cols}"
        return f"{self.kind.value} ({key})"


@dataclass
class TableReport:
    table: str  # the source table
    target: str
    state: TableState = TableState.EQUAL
    source_rows: int = 0
    target_rows: int = 0
    chunks: int = 0
    hashed_rows: int = 0
    mismatched_chunks: int = 0  # chunks whose checksums differed (then bisected)
    false_alarms: int = 0  # ranges whose hashes differed but whose rows compare equal
    counts: dict[str, int] = field(default_factory=lambda: {k.value: 0 for k in RowKind})
    rows: list[RowDifference] = field(default_factory=list)  # up to reconcile.max_reported
    repaired: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def differences(self) -> int:
        return sum(self.counts.values())

    def add(self, difference: RowDifference, limit: int) -> None:
        self.counts[difference.kind.value] += 1
        if len(self.rows) < limit:
            self.rows.append(difference)


@dataclass
class Report:
    source: str
    target: str
    tables: list[TableReport] = field(default_factory=list)
    started_at: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No confirmed difference and every table compared (exit code 0)."""
        return all(t.state in (TableState.EQUAL, TableState.REPAIRED) for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "ok": self.ok, "started_at": self.started_at,
                "seconds": round(self.seconds, 3),
                "tables": [dict(asdict(t), differences=t.differences) for t in self.tables]}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)
