"""Anchoring a recheck to the change stream: make the target show exactly a source read view S.

For one table T (argument in replicator/reconcile/__init__.py):
1. `hold`: a reconcile gate `hold` for T, written in a transaction that first locks T's offset row
   (as every apply batch does): from its commit on, no event of T is applied;
2. the caller opens S on the source (after 1, so every event applied before the hold is visible in S);
3. `cut`: the gate becomes a cut at S: the applier applies T's events visible in S, in stream order,
   and stops before the first one that is not;
4. `reach`: wait until the target has applied exactly S for T (`Reached.EXACT`):
   * the applier stopped: T's stored next offset N points at a change event beyond S's stream
     position (PostgreSQL: change LSN at or above S's WAL LSN; MySQL: binlog position at or after
     S's). Every event before it was visible in S and is applied; every event visible in S lies
     before it (the topic is in commit order and a visible transaction committed below that
     position); or
   * nothing of T after S has reached Kafka yet: a watermark token written on the source after S
     is seen in its topic, then T's high watermark H is read, N >= H, and T's topic read from N
     holds no change event up to its end (a broker may report a stale H: read, not only compared).
     The connector emits changes in commit order through one producer, so T's events committed
     before the token are in T's topic by then; all are visible in S (none beyond S was applied:
     the cut), and the applier applied every one of them.
   A stop at an event that is not visible in S but lies below S's position (PostgreSQL: a
   transaction whose commit record was written but which was still in progress when S was taken;
   a visible one may follow it) proves nothing: `Reached.INEXACT`, the caller takes a new view.
5. `release`: the gate is removed; the applier resumes at the event it stopped before.
A crash of the reconciler leaves its gate row behind, and the table's apply paused: the next
`replicator reconcile` removes leftover reconcile gates before it starts (`release_all`).
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from replicator.apply.gate import RECONCILE_PREFIX, Cut, reconcile_gate, reconcile_gate_name, reconcile_gate_text
from replicator.config import MigrationConfig
from replicator.dialects import catalog_for, target_writer_for
from replicator.dialects.base import SnapshotPoint, TargetWriter
from replicator.events import ChangeEvent
from replicator.model import TableId, topic_for

if TYPE_CHECKING:  # Kafka's client and the decoder are loaded by the first use (an equal table needs neither)
    from confluent_kafka import Consumer

    from replicator.apply.decode import EnvelopeDecoder


class Reached(StrEnum):
    EXACT = "exact"
    INEXACT = "inexact"  # stopped at an event that says nothing about S: take a new view
    TIMEOUT = "timeout"  # the applier did not get there in time (is `replicator apply` running?)


class Anchor:
    """Reconcile gates of the tables being rechecked: one target connection, one Kafka reader."""

    def __init__(self, config: MigrationConfig, *, watermark_timeout_s: float = 30.0) -> None:
        self._config = config
        self._timeout = watermark_timeout_s
        self._writer = target_writer_for(config.target, config.state_schema)
        self._writer.ensure_state()
        self._decoder: EnvelopeDecoder | None = None
        self._topics: set[str] | None = None
        self._reader: Consumer | None = None  # opened by the first recheck that reads the topic

    @property
    def writer(self) -> TargetWriter:
        """The target connection of the gates: also the applier's write path, for repairs."""
        return self._writer

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._writer.close()

    @property
    def _consumer(self) -> Consumer:
        if self._reader is None:
            from confluent_kafka import Consumer

            from replicator.kafka.admin import prompt_reader_config

            self._reader = Consumer({**prompt_reader_config(self._config.kafka), "group.id": f"replicator-reconcile-"
                                     f"{uuid.uuid4().hex[:12]}", "enable.auto.commit": False,
                                     "auto.offset.reset": "earliest", "enable.partition.eof": True})
        return self._reader

    def _partition(self, table: TableId) -> tuple[str, int]:
        return (topic_for(self._config.kafka.topic_prefix, table), 0)

    def has_stream(self, table: TableId) -> bool:
        """The table's topic exists (its connector captures it): rechecks can be anchored. Topics are
        listed, not asked for by name (that could create one with the broker's default layout)."""
        if self._topics is None:
            from replicator.kafka.admin import TopicAdmin

            self._topics = set(TopicAdmin(self._config.kafka).partition_counts())
        return self._partition(table)[0] in self._topics

    # -- gates -----------------------------------------------------------------------------------
    def hold(self, table: TableId) -> None:
        self._writer.write_gate(reconcile_gate_name(table.schema, table.name), "hold",
                                reconcile_gate_text(table.schema, table.name, None), [self._partition(table)])

    def cut(self, table: TableId, view: SnapshotPoint) -> None:
        self._writer.write_gate(reconcile_gate_name(table.schema, table.name), "filter",
                                reconcile_gate_text(table.schema, table.name, view.position), [self._partition(table)])

    def release(self, table: TableId) -> None:
        self._writer.write_gate(reconcile_gate_name(table.schema, table.name), None, None, [self._partition(table)])

    def release_all(self) -> list[str]:
        """Remove reconcile gates a killed reconciler left behind; the tables they name."""
        left = []
        for name, gate in self._writer.read_gates().items():
            found = reconcile_gate(gate.filter)
            if name.startswith(RECONCILE_PREFIX) and found is not None:
                table = TableId(found[0], found[1])
                self.release(table)
                left.append(table.qualified)
        return left

    def held_by_snapshot(self, table: TableId) -> bool:
        """The snapshot stage holds the table (its copy runs): its target rows are not settled."""
        gate = self._writer.read_gates().get(table.qualified)
        return gate is not None and gate.state == "hold" and reconcile_gate(gate.filter) is None

    # -- reaching the view -----------------------------------------------------------------------
    def reach(self, table: TableId, view: SnapshotPoint, timeout_s: float) -> Reached:
        """Wait until the applier has applied exactly `view` for the table (see the module docstring)."""
        partition = self._partition(table)
        cut = Cut.of(view.position, table.qualified)
        high = self._high_after_watermark(partition[0])
        deadline = time.monotonic() + timeout_s
        while True:
            stored = self._writer.read_offsets([partition])[partition]
            applied = stored.next_offset or 0
            # the first change event at or after the applier's next offset (tombstones skipped), or
            # _END when the topic ends there; None when it could not be read in time
            event = self._next_change(partition[0], applied)
            if isinstance(event, ChangeEvent) and not cut.applies(event):
                return Reached.EXACT if cut.beyond(event) else Reached.INEXACT
            if event is _END and high is not None and applied >= high:
                # Read to the end, not only compared with the high watermark: a broker may report a
                # stale one (Tansu reported one below offsets the applier had already applied).
                return Reached.EXACT
            if time.monotonic() >= deadline:
                return Reached.TIMEOUT
            time.sleep(0.1)

    def _high_after_watermark(self, topic: str) -> int | None:
        """The table topic's high watermark, read after a token written on the source after the view
        was seen in Kafka; None when the token did not arrive in time."""
        from confluent_kafka import TopicPartition

        from replicator.kafka.watermark import prove_streaming

        config = self._config
        catalog = catalog_for(config.source)
        try:
            catalog.ensure_watermark(config.watermark_table)
            prove_streaming(config.kafka, topic_for(config.kafka.topic_prefix, config.watermark_table),
                            lambda token: catalog.write_watermark(config.watermark_table, token), self._timeout)
        except TimeoutError:
            return None
        finally:
            catalog.close()
        _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
        return int(high)

    def _next_change(self, topic: str, offset: int) -> Any:
        """The first decoded change event at or after an offset of a one-partition topic, `_END` when
        the topic has none there (read to its end), None when the read did not finish in time."""
        from confluent_kafka import KafkaError, TopicPartition

        from replicator.apply.decode import EnvelopeDecoder

        if self._decoder is None:
            self._decoder = EnvelopeDecoder()
        self._consumer.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return _END
                return None
            at = message.offset()
            if at is None:
                return None
            event = self._decoder.decode(topic, 0, at, message.key(), message.value(),
                                         message.headers(), message.timestamp()[1])  # type: ignore[arg-type]
            if isinstance(event, ChangeEvent):
                return event
        return None


_END = object()  # no record at or after an offset (the end of the topic)
