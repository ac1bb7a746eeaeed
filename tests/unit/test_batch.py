"""The batch planner (replicator.apply.batch) against a one-event-at-a-time model of the target.

`Model` is a tiny in-memory target table: a dict key → row for tables with a primary key, a list of
rows (a bag: duplicates allowed) for tables without one. Two appliers drive it:
* `apply_reference`: every event on its own, in order (the source's own semantics);
* `apply_plan`: `plan()`'s steps executed exactly as the writer executes them (StepExecutor._execute).
The property tests check that both end in the same state, or both report an error.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.apply.batch import (
    ExactChange,
    KeyChange,
    Merge,
    Step,
    Truncate,
    incomplete_key_change_tail,
    key_of,
    plan,
)
from replicator.dialects.base import TargetColumn, TargetTable
from replicator.events import ChangeEvent, KeyRanges, RecordRef, Row, SourcePosition
from replicator.model import TableId

Key = tuple[Any, ...]
TABLE_ID = TableId("shop", "items")
NAMES = ("id", "a", "b", "t")  # `a` a counter, `b` and `t` TOAST-able (may be unavailable in an update)
TABLE = TargetTable(TABLE_ID, tuple(TargetColumn(n, "integer") for n in NAMES), ("id",))
NOPK_NAMES = ("x", "y", "z")
NOPK = TargetTable(TABLE_ID, tuple(TargetColumn(n, "integer") for n in NOPK_NAMES), ())

_offsets = itertools.count()


def ev(op: str, key: int | Row | None = None, *, before: Row | None = None, after: Row | None = None,
       unavailable: tuple[str, ...] | frozenset[str] = (), old_key: Row | None = None, new_key: Row | None = None,
       position: SourcePosition | None = None, txid: int | None = None) -> ChangeEvent:
    """A ChangeEvent with everything not given defaulted; an int key means {"id": key}."""
    offset = next(_offsets)
    return ChangeEvent(
        ref=RecordRef("p.shop.items", 0, offset), op=op, table=TABLE_ID,
        key={"id": key} if isinstance(key, int) else key,
        before=before, after=after, unavailable=frozenset(unavailable),
        position=position if position is not None else SourcePosition(offset, offset),
        source_ts_ms=0, kafka_ts_ms=0, txid=txid, old_key=old_key, new_key=new_key,
    )


def ins(k: int, op: str = "c", **columns: Any) -> ChangeEvent:
    return ev(op, k, after={"id": k, **columns})


def upd(k: int, *, unavailable: tuple[str, ...] = (), **columns: Any) -> ChangeEvent:
    return ev("u", k, after={"id": k, **columns}, unavailable=unavailable)


def dele(k: int, new_key: int | None = None) -> ChangeEvent:
    # PostgreSQL DEFAULT identity: only the key of `before` is real, the rest are fake defaults.
    return ev("d", k, before={"id": k, "a": 0, "b": None, "t": None},
              new_key={"id": new_key} if new_key is not None else None)


def trunc(*spans: tuple[int | None, int | None]) -> ChangeEvent:
    """A truncate; with spans, of those key ranges [low, high) only (a snapshot hand-off's)."""
    event = ev("t")
    if spans:
        event.ranges = KeyRanges(("id",), ("int",), tuple(
            (None if low is None else (low,), None if high is None else (high,)) for low, high in spans))
    return event


def in_ranges(ranges: KeyRanges, key: Key) -> bool:
    return any((low is None or key >= low) and (high is None or key < high) for low, high in ranges.spans)


def key_change(old: int, new: int, *, unavailable: tuple[str, ...] = (), **columns: Any) -> list[ChangeEvent]:
    """A primary-key update as Debezium sends it (the tombstone in between is not passed to plan)."""
    return [dele(old, new_key=new),
            ev("c", new, after={"id": new, **columns}, unavailable=unavailable, old_key={"id": old})]


# -- the model target ---------------------------------------------------------------------------------


class ModelError(Exception):
    """What the target (or the writer) would report."""


class Model:
    def __init__(self, table: TargetTable, rows: dict[Key, Row] | None = None,
                 bag: list[Row] | None = None) -> None:
        self.table = table
        self.rows: dict[Key, Row] = {k: {**self.blank(), **v} for k, v in (rows or {}).items()}
        self.bag: list[Row] = [{**self.blank(), **r} for r in bag or []]

    def blank(self) -> Row:
        return dict.fromkeys(self.table.names)

    def key(self, row: Row) -> Key:
        return tuple(row[k] for k in self.table.key)

    def carried(self, row: Row | None) -> Row:
        return {c: v for c, v in (row or {}).items() if c in self.table.names}

    def state(self) -> Any:
        if self.table.key:
            return {k: dict(v) for k, v in self.rows.items()}
        return sorted((tuple(sorted(r.items())) for r in self.bag), key=repr)

    # writer primitives (replicator.dialects.base.TargetWriter)
    def upsert(self, columns: tuple[str, ...], rows: list[Key]) -> None:
        for values in rows:
            data = dict(zip(columns, values, strict=True))
            key = self.key(data)
            if key in self.rows:
                self.rows[key].update(data)
            else:
                self.rows[key] = {**self.blank(), **data}

    def update(self, columns: tuple[str, ...], rows: list[Key]) -> int:
        assert columns[:len(self.table.key)] == self.table.key
        matched = 0
        for values in rows:
            data = dict(zip(columns, values, strict=True))
            key = self.key(data)
            if key in self.rows:
                self.rows[key].update(data)
                matched += 1
        return matched

    def delete(self, keys: list[Key]) -> None:
        for key in keys:
            self.rows.pop(key, None)

    def change_key(self, old_key: Key, columns: tuple[str, ...], values: Key) -> int:
        if old_key not in self.rows:
            return 0
        row = {**self.rows[old_key], **dict(zip(columns, values, strict=True))}
        new_key = self.key(row)
        if new_key != old_key and new_key in self.rows:
            raise ModelError(f"duplicate key {new_key}")
        del self.rows[old_key]
        self.rows[new_key] = row
        return 1

    def delete_all(self) -> None:
        self.rows.clear()
        self.bag.clear()

    def delete_ranges(self, ranges: KeyRanges) -> None:
        for key in [k for k in self.rows if in_ranges(ranges, k)]:
            del self.rows[key]

    def insert_rows(self, columns: tuple[str, ...], rows: list[Key]) -> None:
        for values in rows:
            self.bag.append({**self.blank(), **dict(zip(columns, values, strict=True))})

    def _find(self, old: Row) -> int | None:
        for i, row in enumerate(self.bag):
            if all(row.get(c) == v for c, v in old.items()):
                return i
        return None

    def update_exact(self, old: Row, new: Row) -> int:
        i = self._find(old)
        if i is None:
            return 0
        self.bag[i].update(new)
        return 1

    def delete_exact(self, old: Row) -> int:
        i = self._find(old)
        if i is None:
            return 0
        del self.bag[i]
        return 1


# -- the two appliers ---------------------------------------------------------------------------------


def _reference_exact(model: Model, event: ChangeEvent) -> None:
    if event.op in ("c", "r"):
        model.bag.append({**model.blank(), **model.carried(event.after)})
        return
    if event.before is None:
        raise ModelError("no old row image")
    old = model.carried(event.before)
    index = next((i for i, row in enumerate(model.bag) if all(row[c] == v for c, v in old.items())), None)
    if index is None:
        raise ModelError("no row equals the old row image")
    if event.op == "u":
        model.bag[index].update(model.carried(event.after))
    else:
        del model.bag[index]


def _reference_key_change(model: Model, delete: ChangeEvent, create: ChangeEvent) -> None:
    assert delete.key is not None and create.key is not None
    old = tuple(delete.key[k] for k in model.table.key)
    new = tuple(create.key[k] for k in model.table.key)
    carried = model.carried(create.after)
    if old in model.rows:
        row = {**model.rows.pop(old), **carried}  # keeps the columns the `c` lacks (TOAST placeholders)
        if new in model.rows:
            raise ModelError(f"duplicate key {new}")
        model.rows[new] = row
    elif create.unavailable:
        raise ModelError("key change of a missing row without its full values")
    elif new in model.rows:
        model.rows[new].update(carried)
    else:
        model.rows[new] = {**model.blank(), **carried}


def _reference_change(model: Model, event: ChangeEvent) -> None:
    assert event.key is not None
    key = tuple(event.key[k] for k in model.table.key)
    if event.op == "d":
        model.rows.pop(key, None)
        return
    carried = model.carried(event.after)
    if key in model.rows:
        model.rows[key].update(carried)
    elif event.unavailable:
        raise ModelError(f"update with unavailable columns of missing row {key}")
    else:
        model.rows[key] = {**model.blank(), **carried}


def apply_reference(model: Model, events: list[ChangeEvent]) -> None:
    """Every event on its own, in order."""
    i = 0
    while i < len(events):
        event = events[i]
        nxt = events[i + 1] if i + 1 < len(events) else None
        if event.op == "t":
            if event.ranges is None:
                model.delete_all()
            else:
                model.delete_ranges(event.ranges)
        elif not model.table.key:
            _reference_exact(model, event)
        elif (event.op == "d" and event.new_key is not None and nxt is not None and nxt.op == "c"
              and nxt.old_key == event.key):
            _reference_key_change(model, event, nxt)
            i += 1
        else:
            _reference_change(model, event)
        i += 1


def _check_merge_shape(table: TargetTable, step: Merge) -> None:
    """Each key ends in one state: never both upserted and updated, never twice in one list."""
    width = len(table.key)
    upserted = [tuple(row[columns.index(k)] for k in table.key)
                for columns, rows in step.upserts.items() for row in rows]
    updated = [row[:width] for columns, rows in step.updates.items() for row in rows]
    assert len(set(step.deletes)) == len(step.deletes)
    assert len(set(upserted)) == len(upserted)
    assert len(set(updated)) == len(updated)
    assert not set(upserted) & set(updated)
    for columns, rows in [*step.upserts.items(), *step.updates.items()]:
        assert columns == tuple(n for n in table.names if n in columns) or columns[:width] == table.key
        assert all(len(row) == len(columns) for row in rows)


def _apply_exact_step(model: Model, step: ExactChange) -> None:
    if step.op in ("c", "r") and step.after is not None:
        model.insert_rows(tuple(step.after), [tuple(step.after.values())])
        return
    if step.before is None:
        raise ModelError("no old row image")
    touched = (model.update_exact(step.before, step.after) if step.op == "u" and step.after is not None
               else model.delete_exact(step.before))
    if touched != 1:
        raise ModelError("no row equals the old row image")


def apply_steps(model: Model, steps: list[Step]) -> None:
    """The steps as the writer runs them (replicator.apply.executor.StepExecutor._execute)."""
    for step in steps:
        if isinstance(step, Merge):
            _check_merge_shape(model.table, step)
            model.delete(step.deletes)
            for columns, rows in step.upserts.items():
                model.upsert(columns, rows)
            for columns, rows in step.updates.items():
                if model.update(columns, rows) != len(rows):
                    raise ModelError("update of a missing row")
        elif isinstance(step, KeyChange):
            if model.change_key(step.old_key, step.columns, step.values) == 0:
                if not step.complete:
                    raise ModelError("key change of a missing row without its full values")
                model.upsert(step.columns, [step.values])
        elif isinstance(step, Truncate):
            if step.ranges is None:
                model.delete_all()
            else:
                model.delete_ranges(step.ranges)
        else:
            _apply_exact_step(model, step)


def apply_plan(model: Model, events: list[ChangeEvent]) -> list[Step]:
    steps = plan(model.table, events)
    offsets = [e.ref.offset for s in steps for e in s.events]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)  # steps keep the source order
    apply_steps(model, steps)
    return steps


def outcome(apply: Any, model: Model, events: Any) -> tuple[bool, Any]:
    try:
        apply(model, events)
    except ModelError:
        return True, None
    return False, model.state()


def in_batches(model: Model, events: list[ChangeEvent], cuts: list[bool]) -> None:
    """Plan batch by batch the way the applier cuts them: a trailing key-change `d` waits for the next."""
    pending: list[ChangeEvent] = []
    batches: list[list[ChangeEvent]] = [[]]
    for event, cut in zip(events, cuts, strict=True):
        batches[-1].append(event)
        if cut:
            batches.append([])
    for n, chunk in enumerate(batches):
        batch = pending + chunk
        pending = []
        tail = incomplete_key_change_tail(batch)
        if tail is not None and n < len(batches) - 1:
            pending = [batch.pop(tail)]
        apply_plan(model, batch)


# -- property tests -----------------------------------------------------------------------------------

PROPERTY = settings(max_examples=300, deadline=None)
# Strategies built once: building them inside the generators costs more than the tests themselves.
KEYS = st.integers(1, 5)
PICK = st.integers(0, 59)  # an index into a short list of choices: choices[draw(PICK) % len(choices)]
BOOL = st.booleans()
LENGTH = st.integers(0, 24)
FULL_OP = st.sampled_from(["c", "u", "r"])
UNAVAILABLE = st.sampled_from([("t",), ("b",), ("b", "t")])
PK_KIND = st.sampled_from(["full", "full", "partial", "partial", "delete", "reinsert", "truncate", "truncate_ranges",
                           "key_change"])
SPANS = st.lists(st.tuples(st.none() | st.integers(0, 6), st.none() | st.integers(0, 6)), min_size=1, max_size=3)
ENDING = st.sampled_from([None] * 4 + ["missing_update", "missing_key_change"])
INITIAL = st.dictionaries(KEYS, st.integers(0, 999).map(lambda n: {"a": n // 100, "b": n // 10 % 10, "t": n % 10}),
                          max_size=5)
CUTS = st.integers(0, (1 << 64) - 1)  # bit i: the applier's batch ends after event i


def pick(draw: st.DrawFn, choices: list[int]) -> int:
    return choices[draw(PICK) % len(choices)]


@st.composite
def pk_scenario(draw: st.DrawFn) -> tuple[dict[Key, Row], list[ChangeEvent], list[bool], bool]:
    """Initial target rows, events, where the applier cuts batches, and whether the last event must fail."""
    values = itertools.count(100)  # every written value is distinct: shows which write won
    initial = draw(INITIAL)
    rows = {(k,): {"id": k, **v} for k, v in initial.items()}
    exists = set(initial)
    deleted: set[int] = set()  # rows deleted by an event, not inserted again since
    events: list[ChangeEvent] = []
    for _ in range(draw(LENGTH)):
        kind = draw(PK_KIND)
        if kind == "full" or (kind == "reinsert" and deleted):  # reinsert: delete-then-insert is a `replace`
            k = draw(KEYS) if kind == "full" else pick(draw, sorted(deleted))
            deleted.discard(k)
            after = {"a": next(values), "t": next(values)}
            if kind == "full" and draw(BOOL):  # else (a reinsert always) an event of the older schema, without `b`
                after["b"] = next(values)
            events.append(ins(k, draw(FULL_OP), **after))
            exists.add(k)
        elif kind == "partial" and exists:
            k = pick(draw, sorted(exists))
            unavailable = draw(UNAVAILABLE)
            after = {c: next(values) for c in ("a", "b", "t") if c not in unavailable}
            events.append(upd(k, unavailable=unavailable, **after))
        elif kind == "delete":
            k = draw(KEYS)
            events.append(dele(k))
            if k in exists:
                deleted.add(k)
            exists.discard(k)
        elif kind in ("truncate", "truncate_ranges"):  # ranges: the chunks a resumed copy read before it
            event = trunc(*draw(SPANS)) if kind == "truncate_ranges" else trunc()
            events.append(event)
            gone = {k for k in exists if event.ranges is None or in_ranges(event.ranges, (k,))}
            exists -= gone
            deleted |= gone
        elif kind == "key_change":
            free = sorted(set(range(1, 6)) - exists)
            if not free:
                continue
            new = pick(draw, free)
            partial = bool(exists) and draw(BOOL)
            # the old row exists, or (complete `c` only) is missing on the target: then it is inserted
            olds = sorted(exists) if partial or draw(BOOL) else [k for k in free if k != new]
            if not olds:
                continue
            old = pick(draw, olds)
            unavailable = ("t",) if partial else ()
            after = {c: next(values) for c in ("a", "b", "t") if c not in unavailable}
            events.extend(key_change(old, new, unavailable=unavailable, **after))
            exists.discard(old)
            exists.add(new)
            deleted.discard(new)
    # Sometimes a last event the target cannot apply: its row is missing and it lacks the full values.
    ending = draw(ENDING)
    seen = set(initial) | {e.key["id"] for e in events if e.key is not None}
    never_seen = sorted(set(range(1, 6)) - seen)
    free = sorted(set(range(1, 6)) - exists)
    fails = False
    if ending == "missing_update" and never_seen:
        events.append(upd(pick(draw, never_seen), unavailable=("t",), a=next(values), b=next(values)))
        fails = True
    elif ending == "missing_key_change" and len(free) >= 2:
        old = pick(draw, free)
        new = pick(draw, [k for k in free if k != old])
        events.extend(key_change(old, new, unavailable=("t",), a=next(values), b=next(values)))
        fails = True
    cut_bits = draw(CUTS)
    cuts = [bool(cut_bits >> i & 1) for i in range(len(events))]
    return rows, events, cuts, fails


@PROPERTY
@given(pk_scenario())
def test_plan_equals_one_at_a_time(scenario: tuple[dict[Key, Row], list[ChangeEvent], list[bool], bool]) -> None:
    """The whole sequence as one batch, and cut into batches anywhere the way the applier does (holding a
    key change's `d` back): the same end state as applying every event on its own, or both fail."""
    rows, events, cuts, fails = scenario
    expected = outcome(apply_reference, Model(TABLE, rows), events)
    assert expected[0] == fails  # the generator knows which sequences the source could not have sent
    assert outcome(apply_plan, Model(TABLE, rows), events) == expected
    assert outcome(lambda m, e: in_batches(m, e, cuts), Model(TABLE, rows), events) == expected


# Tiny value space, so identical rows are common; one draw per row (cheaper than fixed_dictionaries).
NOPK_ROW = st.integers(0, 7).map(lambda c: {"x": c & 1, "y": c >> 1 & 1, "z": 1 if c & 4 else None})
NOPK_INITIAL = st.lists(NOPK_ROW, max_size=6)
NOPK_LENGTH = st.integers(0, 20)
NOPK_KIND = st.sampled_from(["insert", "insert", "update", "update", "delete", "delete", "truncate", "stray"])
INSERT_OP = st.sampled_from(["c", "r"])
STRAY_OP = st.sampled_from(["u", "d"])


@st.composite
def nopk_scenario(draw: st.DrawFn) -> tuple[list[Row], list[ChangeEvent]]:
    initial = draw(NOPK_INITIAL)
    bag = [dict(r) for r in initial]
    events: list[ChangeEvent] = []
    for _ in range(draw(NOPK_LENGTH)):
        kind = draw(NOPK_KIND)
        if kind == "insert":
            after = draw(NOPK_ROW)
            events.append(ev(draw(INSERT_OP), None, after=after))
            bag.append(dict(after))
        elif kind in ("update", "delete") and bag:
            before = dict(bag[draw(PICK) % len(bag)])
            first = bag.index(before)  # identical rows: the first one is the one that gets touched
            if kind == "update":
                after = draw(NOPK_ROW)
                events.append(ev("u", None, before=before, after=after))
                bag[first] = dict(after)
            else:
                events.append(ev("d", None, before=before))
                del bag[first]
        elif kind == "truncate":
            events.append(trunc())
            bag.clear()
        elif kind == "stray":  # an old row image no target row equals: both must report it
            events.append(ev(draw(STRAY_OP), None, before={"x": 7, "y": 7, "z": None},
                             after={"x": 0, "y": 0, "z": None}))
            break
    return initial, events


@PROPERTY
@given(nopk_scenario())
def test_no_primary_key_plan_equals_one_at_a_time(scenario: tuple[list[Row], list[ChangeEvent]]) -> None:
    initial, events = scenario
    expected = outcome(apply_reference, Model(NOPK, bag=initial), events)
    assert outcome(apply_plan, Model(NOPK, bag=initial), events) == expected


# -- examples -----------------------------------------------------------------------------------------


def run_both(events: list[ChangeEvent], rows: dict[Key, Row] | None = None,
             table: TargetTable = TABLE) -> tuple[list[Step], Any]:
    """Plan and apply; assert the one-at-a-time reference agrees; return the steps and the end state."""
    expected = outcome(apply_reference, Model(table, rows), events)
    model = Model(table, rows)
    steps = plan(table, events)
    assert outcome(apply_steps, model, steps) == expected
    return steps, expected[1]


def test_partial_update_after_full_update_keeps_the_earlier_values() -> None:
    rows = {(1,): {"id": 1, "a": 0, "b": 0, "t": "toast-0"}}
    events = [upd(1, a=1, b=1, t="toast-1"), upd(1, unavailable=("b", "t"), a=2)]
    steps, state = run_both(events, rows)
    assert state == {(1,): {"id": 1, "a": 2, "b": 1, "t": "toast-1"}}
    [merge] = steps
    assert isinstance(merge, Merge)
    assert merge.upserts == {("id", "a", "b", "t"): [(1, 2, 1, "toast-1")]}
    assert merge.updates == {} and merge.deletes == []
    assert merge.events == events


def test_partial_updates_only_become_an_update_of_the_carried_columns() -> None:
    rows = {(1,): {"id": 1, "a": 0, "b": 0, "t": "toast"}}
    events = [upd(1, unavailable=("t",), a=1, b=5), upd(1, unavailable=("b", "t"), a=2)]
    steps, state = run_both(events, rows)
    assert state == {(1,): {"id": 1, "a": 2, "b": 5, "t": "toast"}}
    [merge] = steps
    assert isinstance(merge, Merge)
    assert merge.updates == {("id", "a", "b"): [(1, 2, 5)]} and merge.upserts == {}


def test_partial_update_carrying_only_the_key() -> None:
    """`UPDATE … SET id = id` on a row whose only other columns are unchanged TOAST values."""
    rows = {(1,): {"id": 1, "a": 3, "b": 4, "t": "big"}}
    steps, state = run_both([upd(1, unavailable=("a", "b", "t"))], rows)
    assert state == rows
    [merge] = steps
    assert isinstance(merge, Merge) and merge.updates == {("id",): [(1,)]}


def test_partial_update_of_a_missing_row_is_an_error_in_both() -> None:
    expected = outcome(apply_reference, Model(TABLE), [upd(1, unavailable=("t",), a=1)])
    assert expected == (True, None)
    assert outcome(apply_plan, Model(TABLE), [upd(1, unavailable=("t",), a=1)]) == expected


def test_partial_update_after_a_delete_in_the_same_run_is_an_error() -> None:
    rows = {(1,): {"id": 1, "a": 0, "b": 0, "t": "old"}}
    events = [dele(1), upd(1, unavailable=("t",), a=1, b=1)]
    assert outcome(apply_reference, Model(TABLE, rows), events) == (True, None)
    # actual: (False, {(1,): {'id': 1, 'a': 1, 'b': 1, 't': 'old'}}): the deleted row survives, updated
    assert outcome(apply_plan, Model(TABLE, rows), events) == (True, None)


def test_delete_then_insert_replaces_the_row() -> None:
    rows = {(1,): {"id": 1, "a": 0, "b": 7, "t": "old"}}
    events = [dele(1), ins(1, a=9)]  # the insert carries neither b nor t
    steps, state = run_both(events, rows)
    assert state == {(1,): {"id": 1, "a": 9, "b": None, "t": None}}  # nothing kept from the old row
    [merge] = steps
    assert isinstance(merge, Merge)
    assert merge.deletes == [(1,)]
    assert merge.upserts == {("id", "a"): [(1, 9)]}


def test_replace_then_partial_update_is_still_a_replace() -> None:
    rows = {(1,): {"id": 1, "a": 0, "b": 7, "t": "old"}}
    events = [dele(1), ins(1, a=1, b=1, t="new"), upd(1, unavailable=("t",), a=2, b=2)]
    steps, state = run_both(events, rows)
    assert state == {(1,): {"id": 1, "a": 2, "b": 2, "t": "new"}}
    [merge] = steps
    assert isinstance(merge, Merge)
    assert merge.deletes == [(1,)] and merge.upserts == {("id", "a", "b", "t"): [(1, 2, 2, "new")]}


def test_insert_then_delete_is_a_delete_only() -> None:
    steps, state = run_both([ins(3, a=1, b=1, t="x"), upd(3, a=2, b=2, t="y"), dele(3)],
                            {(3,): {"id": 3, "a": 0}})
    assert state == {}
    [merge] = steps
    assert isinstance(merge, Merge)
    assert merge.deletes == [(3,)] and merge.upserts == {} and merge.updates == {}


def test_key_change_with_toast_placeholders_keeps_the_untouched_columns() -> None:
    rows = {(1,): {"id": 1, "a": 1, "b": 2, "t": "big"}, (5,): {"id": 5, "a": 0, "b": 0, "t": "x"}}
    before = upd(1, unavailable=("t",), a=10, b=20)
    pair = key_change(1, 2, unavailable=("t",), a=11, b=21)
    after = upd(2, unavailable=("t",), a=12, b=22)
    steps, state = run_both([before, *pair, after], rows)
    assert state == {(2,): {"id": 2, "a": 12, "b": 22, "t": "big"}, (5,): {"id": 5, "a": 0, "b": 0, "t": "x"}}
    first, change, last = steps  # the key change closes the run: no run spans it
    assert isinstance(first, Merge) and first.events == [before]
    assert change == KeyChange(old_key=(1,), columns=("id", "a", "b"), values=(2, 11, 21), complete=False,
                               events=pair)
    assert isinstance(last, Merge) and last.events == [after]


def test_key_change_of_a_missing_row() -> None:
    """Complete `c`: the row is inserted. With placeholders: both report the missing full values."""
    steps, state = run_both(key_change(1, 2, a=1, b=2, t="full"))
    assert [type(s) for s in steps] == [KeyChange]
    assert state == {(2,): {"id": 2, "a": 1, "b": 2, "t": "full"}}
    events = key_change(1, 2, unavailable=("t",), a=1, b=2)
    assert outcome(apply_plan, Model(TABLE), events) == outcome(apply_reference, Model(TABLE), events) == (True, None)


def test_key_change_delete_without_its_create_is_a_plain_delete() -> None:
    events = [dele(1, new_key=2), ins(3, a=1)]  # not a pair: the next event is not the `c` of key 2
    steps, state = run_both(events, {(1,): {"id": 1}})
    assert state == {(3,): {"id": 3, "a": 1, "b": None, "t": None}}
    [merge] = steps
    assert isinstance(merge, Merge) and merge.deletes == [(1,)]


def test_truncate_in_the_middle_drops_the_earlier_run() -> None:
    rows = {(1,): {"id": 1, "a": 0, "b": 0, "t": "x"}}
    pair = key_change(1, 4, a=1, b=1, t="y")
    dropped = [ins(2, a=1), upd(4, unavailable=("t",), a=5)]
    events = [*pair, *dropped, trunc(), ins(3, a=3, b=3, t="z")]
    steps, state = run_both(events, rows)
    assert state == {(3,): {"id": 3, "a": 3, "b": 3, "t": "z"}}
    change, truncate, merge = steps
    assert isinstance(change, KeyChange) and change.events == pair  # steps before the run are kept
    assert isinstance(truncate, Truncate) and truncate.events == [events[4]]
    assert isinstance(merge, Merge) and merge.upserts == {("id", "a", "b", "t"): [(3, 3, 3, "z")]}
    assert merge.deletes == [] and merge.events == [events[5]]


def test_truncate_of_key_ranges_keeps_the_earlier_run_outside_them() -> None:
    rows = {(1,): {"id": 1, "a": 0, "b": 0, "t": "x"}, (5,): {"id": 5, "a": 0, "b": 0, "t": "x"}}
    events = [ins(2, a=1, b=1, t="p"), upd(5, a=7, b=7, t="q"), trunc((None, 3)), ins(1, a=9, b=9, t="r")]
    steps, state = run_both(events, rows)
    # [.., 3) emptied at the truncate (1 and 2), then 1 inserted again; 5 keeps the update before it
    assert state == {(1,): {"id": 1, "a": 9, "b": 9, "t": "r"}, (5,): {"id": 5, "a": 7, "b": 7, "t": "q"}}
    before, truncate, after = steps
    assert isinstance(before, Merge) and before.events == events[:2]
    assert isinstance(truncate, Truncate) and truncate.ranges == events[2].ranges
    assert isinstance(after, Merge) and after.events == events[3:]


def test_truncate_at_the_end() -> None:
    steps, state = run_both([ins(1, a=1), trunc()], {(2,): {"id": 2}})
    assert state == {}
    assert [type(s) for s in steps] == [Truncate]


def test_schema_change_mid_batch() -> None:
    """A later event carries a column the earlier ones did not (added on the source meanwhile)."""
    table = TargetTable(TABLE_ID, tuple(TargetColumn(n, "integer") for n in ("id", "a", "b", "extra")), ("id",))
    rows: dict[Key, Row] = {(1,): {"id": 1, "a": 0, "b": 0, "extra": None}, (2,): {"id": 2, "a": 0, "b": 0, "extra": 5}}
    events = [
        ins(1, "u", a=1, b=1),
        ins(1, "u", a=2, b=2, extra=7),
        ins(2, "u", a=3, b=3),
        ins(3, a=4, b=4, extra=8, not_on_target=1),  # a column the target does not have (yet): left out
        ins(2, "u", b=9),  # and one that no longer carries `a` (dropped on the source)
    ]
    steps, state = run_both(events, rows, table)
    assert state == {
        (1,): {"id": 1, "a": 2, "b": 2, "extra": 7},
        (2,): {"id": 2, "a": 3, "b": 9, "extra": 5},
        (3,): {"id": 3, "a": 4, "b": 4, "extra": 8},
    }
    [merge] = steps
    assert isinstance(merge, Merge)
    assert merge.upserts == {
        ("id", "a", "b", "extra"): [(1, 2, 2, 7), (3, 4, 4, 8)],
        ("id", "a", "b"): [(2, 3, 9)],
    }


def test_composite_key_and_key_taken_from_the_row() -> None:
    table = TargetTable(TABLE_ID, tuple(TargetColumn(n, "integer") for n in ("k1", "k2", "v")), ("k1", "k2"))
    e = ev("c", {"k2": "b", "k1": 1}, after={"k1": 1, "k2": "b", "v": 3})
    assert key_of(table, e) == (1, "b")  # key order of the table, not of the Kafka key
    no_kafka_key = ev("c", None, after={"k1": 2, "k2": "c", "v": 4})
    assert key_of(table, no_kafka_key) == (2, "c")
    gone = ev("d", None, before={"k1": 2, "k2": "c", "v": None})
    assert key_of(table, gone) == (2, "c")
    steps, state = run_both([e, ev("u", {"k1": 1, "k2": "b"}, after={"k1": 1, "k2": "b", "v": 5})], table=table)
    assert state == {(1, "b"): {"k1": 1, "k2": "b", "v": 5}}
    [merge] = steps
    assert isinstance(merge, Merge) and merge.upserts == {("k1", "k2", "v"): [(1, "b", 5)]}


def test_no_primary_key_duplicates_are_touched_one_at_a_time() -> None:
    row: Row = {"x": 1, "y": 1, "z": None}
    bag: list[Row] = [row, row, {"x": 2, "y": 2, "z": 1}]
    events = [
        ev("u", None, before=row, after={"x": 1, "y": 9, "z": None}),
        ev("d", None, before=row),
        ev("c", None, after={"x": 2, "y": 2, "z": 1, "not_on_target": 0}),
        ev("d", None, before={"x": 2, "y": 2, "z": 1}),
    ]
    steps = plan(NOPK, events)
    model = Model(NOPK, bag=bag)
    apply_steps(model, steps)
    assert model.state() == sorted([(("x", 1), ("y", 9), ("z", None)), (("x", 2), ("y", 2), ("z", 1))], key=repr)
    assert [s.op for s in steps if isinstance(s, ExactChange)] == ["u", "d", "c", "d"]
    assert steps[2] == ExactChange("c", None, {"x": 2, "y": 2, "z": 1}, events=[events[2]])
    reference = Model(NOPK, bag=bag)
    apply_reference(reference, events)
    assert reference.state() == model.state()
    gone = Model(NOPK, bag=[{"x": 5, "y": 5, "z": None}])
    assert outcome(apply_plan, gone, [ev("d", None, before=row)]) == (True, None)
    assert outcome(apply_plan, Model(NOPK), [ev("u", None, after=row)]) == (True, None)  # no old row image
    t = trunc()
    assert plan(NOPK, [t]) == [Truncate(events=[t])]


def test_incomplete_key_change_tail() -> None:
    pair = key_change(1, 2, a=1)
    assert incomplete_key_change_tail([]) is None
    assert incomplete_key_change_tail([ins(1, a=1)]) is None
    assert incomplete_key_change_tail([ins(1, a=1), dele(1)]) is None  # a plain delete
    assert incomplete_key_change_tail(pair) is None
    assert incomplete_key_change_tail([ins(3, a=1), pair[0]]) == 1
    assert incomplete_key_change_tail([pair[0]]) == 0
    assert incomplete_key_change_tail([*pair, *key_change(2, 3, a=1)[:1]]) == 2


def test_key_change_split_across_batches_needs_the_hold_back() -> None:
    """Without holding the `d` back, the `c` alone (with placeholders) would be an update of a missing row."""
    rows = {(1,): {"id": 1, "a": 1, "b": 1, "t": "big"}}
    pair = key_change(1, 2, unavailable=("t",), a=2, b=2)
    assert outcome(apply_plan, Model(TABLE, rows), pair[1:]) == (True, None)
    model = Model(TABLE, rows)
    in_batches(model, pair, [True, False])
    assert model.state() == {(2,): {"id": 2, "a": 2, "b": 2, "t": "big"}}


@pytest.mark.parametrize("op", ["c", "r", "u"])
def test_full_row_of_a_missing_key_inserts(op: str) -> None:
    steps, state = run_both([ins(4, op, a=1, t="x")], {(1,): {"id": 1}})
    assert state == {(1,): {"id": 1, "a": None, "b": None, "t": None}, (4,): {"id": 4, "a": 1, "b": None, "t": "x"}}
    [merge] = steps
    assert isinstance(merge, Merge) and merge.upserts == {("id", "a", "t"): [(4, 1, "x")]}


def test_empty_batch_plans_nothing() -> None:
    assert plan(TABLE, []) == []
    assert plan(NOPK, []) == []


def test_two_rows_of_different_columns_make_a_full_row_in_target_order() -> None:
    """Two events of different schemas (neither with every target column) coalesce into a row that
    has them all: its values must still come out in the target's column order."""
    table = TargetTable(TABLE_ID, tuple(TargetColumn(n, "integer") for n in ("id", "a", "b", "extra")), ("id",))
    rows: dict[Key, Row] = {(1,): {"id": 1, "a": 0, "b": 0, "extra": 0}}
    events = [ins(1, "u", b=1, extra=2), ins(1, "u", a=3)]  # {id, b, extra} then {id, a}
    steps, state = run_both(events, rows, table)
    assert state == {(1,): {"id": 1, "a": 3, "b": 1, "extra": 2}}
    [merge] = steps
    assert isinstance(merge, Merge)
    assert merge.upserts == {("id", "a", "b", "extra"): [(1, 3, 1, 2)]}
