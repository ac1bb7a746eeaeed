"""Turning one table's events of a batch into an ordered plan of set-based steps.

Input: the table's change events in Kafka order, which is the source commit order for that table
(one single-partition topic per table). Output: steps whose effect, applied in order, equals applying
every event one at a time in that order. The argument, per step kind:

* `Merge` coalesces a run of c/r/u/d events per primary key. Each key ends in exactly one state:
  `delete`, `upsert` (a full row: insert, or overwrite the columns it carries), `replace` (deleted
  then re-inserted in the run: delete, then insert the full row), `update` (only partial rows:
  TOAST placeholders left columns out, so the row must already exist), or `delete_update` (a
  partial row after a delete: delete, then an update that finds no row and is reported). Later values win column by
  column (`{**earlier, **later}`), so an update that carries only some columns never erases what an
  earlier event of the run wrote to the others. Keys are independent, so the final state of each
  key does not depend on the order in which different keys are written; the writer runs deletes
  first, which can only free unique values. If a statement still fails (a secondary unique key that
  two keys pass between them inside the run), the applier replays the run's events one at a time,
  which is the source order itself.
* `KeyChange` (a primary-key update: `d` with a `__debezium.newkey` header, then `c` with
  `__debezium.oldkey`) is its own step, one `UPDATE … SET key = new … WHERE key = old` that keeps the
  columns the `c` does not carry (TOAST placeholders). It closes the current run: a run never spans it.
* `Truncate` empties the table; the run before it is dropped (its rows are deleted anyway). A
  truncate of key ranges only (`ChangeEvent.ranges`: the snapshot hand-off's chunks read before it)
  deletes the rows in those ranges; the run before it is written first, since rows outside them stay.
* `ExactChange`: tables without a primary key are applied event by event, matching the full old row
  and touching exactly one row, since two identical rows are indistinguishable by anything else.

This module is pure: no I/O, so it is unit- and property-tested against a one-at-a-time model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from replicator.dialects.base import TargetTable
from replicator.events import ChangeEvent, KeyRanges, Row

Key = tuple[Any, ...]


@dataclass
class Merge:
    deletes: list[Key] = field(default_factory=list)
    upserts: dict[tuple[str, ...], list[tuple[Any, ...]]] = field(default_factory=dict)
    updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = field(default_factory=dict)
    events: list[ChangeEvent] = field(default_factory=list)  # the run, for a one-at-a-time replay


@dataclass
class KeyChange:
    old_key: Key
    columns: tuple[str, ...]
    values: tuple[Any, ...]
    complete: bool  # the c event carried every column (no placeholders)
    events: list[ChangeEvent] = field(default_factory=list)


@dataclass
class Truncate:
    events: list[ChangeEvent] = field(default_factory=list)
    ranges: KeyRanges | None = None  # None: the whole table


@dataclass
class ExactChange:
    op: str  # c/r insert, u update, d delete
    before: Row | None
    after: Row | None
    events: list[ChangeEvent] = field(default_factory=list)


Step = Merge | KeyChange | Truncate | ExactChange


def key_of(table: TargetTable, event: ChangeEvent) -> Key:
    """The target primary key of an event's row, taken from the Kafka key when it has the columns."""
    if event.key is not None:
        try:
            return tuple(map(event.key.__getitem__, table.key))
        except KeyError:
            pass  # a message key of other columns (message.key.columns): the row has the key
    source = event.before if event.op == "d" else event.after
    if source is None:
        raise KeyError("no key values")
    return tuple(map(source.__getitem__, table.key))


def restrict(table: TargetTable, row: Row) -> Row:
    """The row's columns that the target has, in the target's column order."""
    if tuple(row) == table.names:  # the usual case: the same columns in the same order
        return row
    return {name: row[name] for name in table.names if name in row}


class _Run:
    """One run's coalesced state per key. Invariant: a row in `states` holds target columns only
    (`restrict`), and one that holds all of them has them in the target's order (`merge` relies on
    it): rows come from `restrict`, which keeps that order, and a merge keeps the full earlier row's
    key order, takes a full later row as it is, or re-orders when two partial rows make a full one."""

    def __init__(self, table: TargetTable) -> None:
        self.table = table
        self.states: dict[Key, tuple[str, Row | None]] = {}
        self.events: list[ChangeEvent] = []
        self._same_columns: tuple[str, ...] | None = None  # an event schema's columns = the target's
        self._single_key = table.key[0] if len(table.key) == 1 else None

    def add(self, event: ChangeEvent) -> None:
        self.events.append(event)
        single = self._single_key
        if single is not None and event.key is not None and single in event.key:
            key: Key = (event.key[single],)  # `key_of` for a one-column key, inlined
        else:
            key = key_of(self.table, event)
        previous = self.states.get(key)
        if event.op == "d":
            self.states[key] = ("delete", None)
            return
        after = event.after or {}
        # Events of one schema share one `columns` tuple: compared with the target's once per run.
        if event.columns is self._same_columns and not event.unavailable:
            row = after  # every target column, in the target's order (see `restrict`)
        else:
            row = restrict(self.table, after)
            if row is after and not event.unavailable and event.columns == self.table.names:
                self._same_columns = event.columns
        partial = bool(event.unavailable)
        if previous is None:
            self.states[key] = ("update" if partial else "upsert", row)
            return
        kind, old = previous
        if kind == "delete":
            # Deleted earlier in the run: a full row re-inserts; a partial one has no row to update,
            # which the update step reports (rows matched < rows sent).
            self.states[key] = ("delete_update", row) if partial else ("replace", row)
            return
        width = len(self.table.names)
        if len(row) == width:
            merged = row  # carries every target column: equal to {**old, **row}, without the copy
        else:
            merged = {**(old or {}), **row}
            if len(merged) == width and (old is None or len(old) != width):
                merged = restrict(self.table, merged)  # two partial rows made a full one: target order
        self.states[key] = (kind, merged)

    def merge(self) -> Merge | None:
        if not self.events:
            return None
        step = Merge(events=self.events)
        key_names = self.table.key
        names = self.table.names
        whole: list[tuple[Any, ...]] = []  # upserts that carry every target column (the usual case)
        for key, (kind, row) in self.states.items():
            if kind in ("delete", "replace", "delete_update"):
                step.deletes.append(key)
            if kind in ("upsert", "replace") and row is not None:
                if len(row) == len(names):  # row keys are target names (restrict), so: all of them
                    whole.append(tuple(row.values()))  # in the target's order (see the class)
                    continue
                full = {**dict(zip(key_names, key, strict=True)), **row}
                columns = tuple(n for n in self.table.names if n in full)
                step.upserts.setdefault(columns, []).append(tuple(full[c] for c in columns))
            elif kind in ("update", "delete_update") and row is not None:
                others = tuple(n for n in self.table.names if n in row and n not in key_names)
                columns = key_names + others
                step.updates.setdefault(columns, []).append(key + tuple(row[c] for c in others))
        if whole:
            step.upserts.setdefault(names, []).extend(whole)
        return step


def plan(table: TargetTable, events: list[ChangeEvent]) -> list[Step]:
    """The steps for one table's events of a batch (see the module docstring)."""
    if not table.key:
        return _plan_exact(table, events)
    steps: list[Step] = []
    run = _Run(table)

    def close_run() -> None:
        nonlocal run
        merged = run.merge()
        if merged is not None:
            steps.append(merged)
        run = _Run(table)

    i = 0
    while i < len(events):
        event = events[i]
        if event.op == "t":
            if event.ranges is None:
                run = _Run(table)  # everything before is deleted by the truncate anyway
            else:
                close_run()  # rows outside its ranges keep what the run wrote
            steps.append(Truncate(events=[event], ranges=event.ranges))
        elif event.op == "d" and event.new_key is not None and _pair_at(events, i) is not None:
            create = events[i + 1]
            close_run()
            after = restrict(table, create.after or {})
            steps.append(KeyChange(
                old_key=key_of(table, event), columns=tuple(after), values=tuple(after.values()),
                complete=not create.unavailable, events=[event, create],
            ))
            i += 1
        else:
            run.add(event)
        i += 1
    close_run()
    return steps


def _pair_at(events: list[ChangeEvent], i: int) -> ChangeEvent | None:
    """The `c` that completes the primary-key change whose `d` is at i (tombstones are not in `events`)."""
    if i + 1 < len(events):
        nxt = events[i + 1]
        if nxt.op == "c" and nxt.old_key is not None and nxt.old_key == events[i].key:
            return nxt
    return None


def _plan_exact(table: TargetTable, events: list[ChangeEvent]) -> list[Step]:
    steps: list[Step] = []
    for event in events:
        if event.op == "t":
            steps.append(Truncate(events=[event], ranges=event.ranges))
            continue
        before = restrict(table, event.before) if event.before is not None else None
        after = restrict(table, event.after) if event.after is not None else None
        steps.append(ExactChange(op=event.op, before=before, after=after, events=[event]))
    return steps


def incomplete_key_change_tail(events: list[ChangeEvent]) -> int | None:
    """Index of a trailing primary-key-change `d` whose `c` is not in this batch yet, or None.
    The applier holds such a tail back to the next batch so that the pair is applied together."""
    if events and events[-1].op == "d" and events[-1].new_key is not None:
        return len(events) - 1
    return None
