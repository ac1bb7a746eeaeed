"""Running one batch's table plans through a `TargetWriter`, inside the batch transaction.

Each step runs under a savepoint. If a set-based step fails for a reason that is not transient (a
secondary unique key crossed inside the run, a value the target refuses), the savepoint is rolled
back and the step's events are replayed one at a time, each under its own savepoint, which is the
source order itself; so a merge never changes the result, and the one event that fails alone is
identified exactly. That event then follows the error policy:
* `halt`: the whole batch rolls back and the applier stops with one line naming the table, the
  key, the Kafka position and the cause; restarted, it retries the same event;
* `dead-letter`: the event is recorded (our `dead_letters` table in the same transaction, and the
  dead-letter topic before the commit), counted, and the batch goes on without it.
Transient failures are re-raised untouched: the applier retries the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import orjson

from replicator.apply.batch import ExactChange, KeyChange, Merge, Step, Truncate, plan
from replicator.config import ErrorPolicy
from replicator.dialects.base import DeadLetter, TargetTable, TargetWriter
from replicator.errors import ApplyError
from replicator.events import ChangeEvent
from replicator.sensor import Sensor

PlannedTable = tuple[TargetTable, list[ChangeEvent], list[Step]]


def plan_tables(tables: list[tuple[TargetTable, list[ChangeEvent]]]) -> list[PlannedTable]:
    """Each table's steps (pure: the applier plans the next batch while the previous one is written)."""
    return [(table, events, plan(table, events)) for table, events in tables]


class DeadLetterSink(Protocol):
    def publish(self, letters: list[DeadLetter]) -> None: ...


def _describe_key(event: ChangeEvent) -> str:
    key = event.key if event.key is not None else (event.before or event.after or {})
    return orjson.dumps(key, default=str).decode()


class StepExecutor:
    def __init__(self, writer: TargetWriter, policy: ErrorPolicy, sensor: Sensor) -> None:
        self._writer = writer
        self._policy = policy
        self._sensor = sensor
        self.dead_letters: list[DeadLetter] = []

    def reject(self, event: ChangeEvent, reason: str) -> None:
        """An event that cannot be applied at all (e.g. its table is missing): the policy decides."""
        table = event.table.qualified
        if self._policy == ErrorPolicy.HALT:
            raise ApplyError(
                f"{table}: event at {event.ref} (op {event.op}, key {_describe_key(event)}) "
                f"cannot be applied: {reason}",
                hint="fix the cause and restart (the event is retried), or set apply.error_policy: dead-letter",
            )
        self.dead_letters.append(DeadLetter(event.ref.topic, event.ref.partition, event.ref.offset, table,
                                            _describe_key(event), reason, None))
        self._sensor.on_dead_letter(table)

    def run(self, tables: list[PlannedTable]) -> dict[tuple[str, str], int]:
        """Execute planned tables (`plan_tables`) in order; the events applied, by (table, op)."""
        counts: dict[tuple[str, str], int] = {}
        for table, events, steps in tables:
            for step in steps:
                self._run_step(table, step)
            name = table.table.qualified
            for event in events:
                counts[(name, event.op)] = counts.get((name, event.op), 0) + 1
        return counts

    def _run_step(self, table: TargetTable, step: Step) -> None:
        failure = self._attempt(lambda: self._execute(table, step))
        if failure is None:
            return
        if len(step.events) == 1 or isinstance(step, KeyChange):
            self._reject_failed(step.events[-1], failure)
            return
        for event in step.events:  # one at a time, in source order
            for single in plan(table, [event]):
                failed = self._attempt(lambda single=single: self._execute(table, single))  # type: ignore[misc]
                if failed is not None:
                    self._reject_failed(event, failed)

    def _attempt(self, action: Callable[[], None]) -> str | None:
        """Run under a savepoint; None on success, the cause on a permanent failure."""
        self._writer.savepoint("replicator_step")
        try:
            action()
        except Exception as exc:
            if self._writer.is_transient(exc):
                raise
            self._writer.rollback_to_savepoint("replicator_step")
            return exc.message if isinstance(exc, ApplyError) else self._writer.describe_error(exc)
        self._writer.release_savepoint("replicator_step")
        return None

    def _reject_failed(self, event: ChangeEvent, cause: str) -> None:
        self.reject(event, cause)

    def _execute(self, table: TargetTable, step: Step) -> None:
        writer = self._writer
        if isinstance(step, Merge):
            writer.delete(table, step.deletes)
            for columns, rows in step.upserts.items():
                writer.upsert(table, columns, rows)
            for columns, rows in step.updates.items():
                matched = writer.update(table, columns, rows)
                if matched != len(rows):
                    raise ApplyError(
                        f"{len(rows) - matched} update(s) carry unchanged-TOAST placeholders for rows missing on "
                        "the target; the full values are not in the event",
                        hint="re-seed the table (snapshot), or set REPLICA IDENTITY FULL on the source table",
                    )
        elif isinstance(step, KeyChange):
            matched = writer.change_key(table, step.old_key, step.columns, step.values)
            if matched == 0:
                if not step.complete:
                    raise ApplyError("a primary-key change for a row missing on the target carries "
                                     "unchanged-TOAST placeholders; the full row is not in the event")
                writer.upsert(table, step.columns, [step.values])
        elif isinstance(step, Truncate):
            if step.ranges is None:
                writer.delete_all(table)
            else:
                writer.delete_ranges(table, step.ranges)
        elif isinstance(step, ExactChange):
            self._execute_exact(table, step)

    def _execute_exact(self, table: TargetTable, step: ExactChange) -> None:
        writer = self._writer
        if step.op in ("c", "r") and step.after is not None:
            writer.insert_rows(table, tuple(step.after), [tuple(step.after.values())])
            return
        if step.before is None:
            raise ApplyError("an update or delete of a table without a primary key has no old row image",
                             hint="set REPLICA IDENTITY FULL on the source table (binlog_row_image=FULL on MySQL)")
        touched = (writer.update_exact(table, step.before, step.after) if step.op == "u" and step.after is not None
                   else writer.delete_exact(table, step.before))
        if touched != 1:
            raise ApplyError("no target row equals the event's old row image: the target has diverged",
                             hint="run replicator reconcile on this table")

