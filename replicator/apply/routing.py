"""Where each change event goes: source table → target table, gates, and schema evolution.

* Mapping: `tables.include`/`exclude` select source tables (events of others are skipped and their
  offsets advance), `tables.rename`/`target_schema` name the target; columns match by name.
* Gates: see `replicator.apply.gate`; re-read from our state table on demand.
* Schema evolution runs before the batch transaction (DDL is never inside it) and is idempotent
  (`ADD COLUMN IF NOT EXISTS`): a column that appears in the events is added with the type mapped
  from the event schema (`apply.schema_evolution: add`) or refused (`fail`); a column that
  disappears from the events stays on the target and is reported once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from replicator.apply.batch import key_of
from replicator.apply.gate import Cut, SnapshotFilter, reconcile_gate
from replicator.apply.marks import Tracking, track_gate
from replicator.config import MigrationConfig, SchemaEvolution
from replicator.dialects.base import Gate, Partition, TargetTable, TargetWriter
from replicator.events import ChangeEvent
from replicator.model import TableId, topic_for
from replicator.sensor import Sensor

log = logging.getLogger(__name__)

Reject = Callable[[ChangeEvent, str], None]


class Router:
    def __init__(self, config: MigrationConfig, writer: TargetWriter, sensor: Sensor,
                 before_use: Callable[[], object] = lambda: None) -> None:
        self._config = config
        self._writer = writer
        # Called before each use of the writer's connection: the applier finishes the batch it
        # is writing in another thread first (one connection, one user at a time).
        self._before_use = before_use
        self._selected: dict[TableId, bool] = {}
        self._sensor = sensor
        self._targets: dict[TableId, TargetTable | None] = {}
        self._gates: dict[str, Gate] = {}
        self._tracks: dict[str, Tracking] = {}
        self.evolved: set[TableId] = set()  # tables given a new column, until a batch marks them whole
        self._filters: dict[str, SnapshotFilter] = {}
        self._reconcile_held: set[str] = set()  # topics a reconcile recheck holds
        self._cuts: dict[str, Cut] = {}  # topic → the cut a reconcile recheck set
        self._stopped: set[str] = set()  # topics whose next event is past their cut (until the gates change)
        self._reported_missing: set[tuple[TableId, str]] = set()

    def use(self, writer: TargetWriter) -> None:
        self._writer = writer
        self._targets.clear()

    # -- gates ---------------------------------------------------------------------------------
    @property
    def gates(self) -> dict[str, Gate]:
        return self._gates

    def refresh_gates(self) -> bool:
        """Re-read the gates; True when they changed."""
        self._before_use()
        gates = self._writer.read_gates()
        if gates == self._gates:
            return False
        self._gates = gates
        self._targets.clear()  # a copy may have dropped and re-added a table's primary key: describe again
        prefix = self._config.kafka.topic_prefix
        self._filters, self._cuts, self._reconcile_held, self._stopped = {}, {}, set(), set()
        self._tracks = {}
        for name, gate in gates.items():
            tracking = track_gate(gate.filter)
            if tracking is not None:
                self._tracks[tracking.table] = tracking
                continue
            found = reconcile_gate(gate.filter)
            if found is not None:
                schema, table, cut = found
                topic = topic_for(prefix, TableId(schema, table))
                if gate.state == "hold" or cut is None:
                    self._reconcile_held.add(topic)
                else:
                    self._cuts[topic] = Cut.of(cut, f"{schema}.{table}")
            elif gate.state == "filter" and gate.filter:
                self._filters[name] = SnapshotFilter.parse(gate.filter, name)
        return True

    def tracking(self, source: TableId) -> Tracking | None:
        """The reconciler's bucket scheme of a table (replicator.apply.marks), if it tracks changes."""
        return self._tracks.get(source.qualified)

    def held_partitions(self, partitions: list[Partition]) -> list[Partition]:
        prefix = self._config.kafka.topic_prefix
        held_topics = self._reconcile_held | self._stopped
        for name, gate in self._gates.items():
            if gate.state == "hold" and reconcile_gate(gate.filter) is None:
                schema, _, table = name.partition(".")
                held_topics = held_topics | {topic_for(prefix, TableId(schema, table))}
        return [p for p in partitions if p[0] in held_topics]

    def cut(self, topic: str) -> Cut | None:
        """The reconcile cut of a topic's table, if a recheck set one."""
        return self._cuts.get(topic)

    def stop(self, topic: str) -> None:
        """The topic's next event is past its cut: hold it until the gates change."""
        self._stopped.add(topic)

    # -- routing -------------------------------------------------------------------------------
    def target(self, source: TableId) -> TargetTable | None:
        if source not in self._targets:
            schema, name = self._config.tables.target_for(source.schema, source.name)
            self._before_use()
            self._targets[source] = self._writer.describe(TableId(schema, name))
        return self._targets[source]

    def group(self, events: list[ChangeEvent], reject: Reject) -> list[tuple[TargetTable, list[ChangeEvent]]]:
        """The events to apply, per target table in order of first appearance; DDL for new columns."""
        grouped: dict[TableId, list[ChangeEvent]] = {}
        selected = self._selected
        last: TableId | None = None  # events of one table come in runs (and share one TableId object)
        run: list[ChangeEvent] | None = None
        for event in events:
            source = event.table
            if source is not last:
                last = source
                chosen = selected.get(source)
                if chosen is None:
                    chosen = selected[source] = self._config.selects(source)
                run = grouped.setdefault(source, []) if chosen else None
            if run is not None:
                run.append(event)
        result = []
        for source, table_events in grouped.items():
            table = self.target(source)
            if table is None:
                target = ".".join(self._config.tables.target_for(source.schema, source.name))
                for event in table_events:
                    reject(event, f"the target table {target} does not exist")
                continue
            table = self._evolve(source, table, table_events, reject)
            if table is None:
                continue
            kept = self._unfiltered(source, table, table_events, reject)
            if kept:
                result.append((table, kept))
        return result

    def _unfiltered(self, source: TableId, table: TargetTable, events: list[ChangeEvent],
                    reject: Reject) -> list[ChangeEvent]:
        snapshot_filter = self._filters.get(source.qualified)
        if snapshot_filter is None:
            return events
        kept = []
        rejected = 0
        for event in events:
            if event.op != "t":
                if not snapshot_filter.covers(event, key_of(table, event) if table.key else None):
                    kept.append(event)
                continue
            truncated = snapshot_filter.covers_truncate(event)
            if truncated is None:  # between the views of a resumed copy's chunks
                ranges = snapshot_filter.truncate_ranges(event)
                if ranges is None:
                    rejected += 1
                    reject(event, f"{source.qualified} was truncated between the read views of its copy's chunks"
                                  f" (a resumed snapshot): run replicator snapshot --restart {source.qualified}")
                else:  # it empties the chunks read before it, and only those
                    kept.append(dataclasses.replace(event, ranges=ranges))
            elif not truncated:  # the copy was read before it: it empties what the copy loaded
                kept.append(event)
        if len(kept) + rejected != len(events):
            self._sensor.on_apply_skipped("snapshot", len(events) - len(kept) - rejected)
        return kept

    def _evolve(self, source: TableId, table: TargetTable, events: list[ChangeEvent],
                reject: Reject) -> TargetTable | None:
        present = set(table.names)
        new: dict[str, ChangeEvent] = {}
        shapes: dict[tuple[str, ...], ChangeEvent] = {}  # events of one schema share a columns tuple
        for event in events:
            shapes.setdefault(event.columns, event)
        for event in shapes.values():
            for column in event.columns:
                if column not in present and column not in new:
                    new[column] = event
            for column in present - set(event.columns):
                if event.columns and (source, column) not in self._reported_missing:
                    self._reported_missing.add((source, column))
                    log.warning("%s: column %s is no longer in the change events; it is kept on the target",
                                source, column)
        if not new:
            return table
        if self._config.apply.schema_evolution == SchemaEvolution.FAIL:
            for event in events:
                reject(event, f"new column(s) {', '.join(sorted(new))} not on the target "
                              "(apply.schema_evolution: fail)")
            return None
        self._before_use()
        for column, event in new.items():
            column_type = event.column_types[column]
            used = self._writer.add_column(table.table, column, column_type)
            log.warning("%s: added column %s %s to the target table %s", source, column, used, table.table)
        refreshed = self._writer.describe(table.table)
        self._targets[source] = refreshed
        self.evolved.add(source)
        return refreshed
