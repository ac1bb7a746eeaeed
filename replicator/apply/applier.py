"""The change applier: Kafka batches → one target transaction each, with exactly-once effect.

One batch, in order:
1. consume up to `batch_max_events` messages (or `batch_max_wait_ms`), from the partitions we own;
2. decode; drop what is not a row change to apply: tombstones, transaction markers, heartbeats
   (kept as time), foreign logical messages, the schema-history topic; MySQL schema changes are
   recorded in our state, never replayed;
3. drop events at or below the partition's stored source position (Kafka Connect re-sends events
   after a crash under new offsets; their source positions repeat), and, for a released snapshot
   gate, events the copy already holds; at a reconcile cut (replicator.apply.gate), stop a
   partition before its first event outside the recheck's read view;
4. outside any transaction: add columns that appeared in the events (schema evolution);
5. one transaction: lock our offset rows of the batch's partitions in sorted order
   (`SELECT … FOR UPDATE`) and roll back unless they still hold the offsets this batch starts at
   (a zombie — an instance the group evicted while it was stuck — can never write a stale batch)
   and the snapshot gates still read (FOR SHARE) as they did when the batch was planned (the
   snapshot stage changes a gate in a transaction that locks the same offset rows first, so once
   it has set `hold`, no batch planned without it can commit: the copy never races the stream);
   apply each table's plan (replicator.apply.batch); save each partition's next offset and last
   source position; commit. Rows and positions commit together, so a crash at any point leaves
   either the whole batch or none of it, and a restart resumes at the stored offsets.
6. after the commit: mirror the offsets into Kafka's committed offsets (monitoring only).

Pipelining. Steps 1-4 of batch N+1 (fetch, decode, route, plan: Python work) run in the main thread
while a writer thread runs step 5 of batch N (mostly waiting for the database). It changes nothing
above: batch N+1 is submitted only after N committed, so the transactions stay strictly sequential on
the one target connection; N+1 was prepared against N's planned end (its next offsets and positions:
the dedup base and the offsets its lock step expects), and if N fails, N+1 is dropped unwritten and
the recovery below re-reads the stored offsets and seeks there. Whatever else uses the connection
(gates, table descriptions, DDL, offsets on a rebalance) first waits for the batch in flight.
Both threads share one GIL: `run` lowers the interpreter's switch interval so that the writer gets it
back quickly after each round trip to the target (a speed setting only; nothing above depends on it).

A transient failure (lost connection, deadlock, serialization failure) rolls back, reconnects and
re-reads the stored offsets, seeks there and fetches again: nothing is lost, nothing is doubled.
A permanent failure of one event follows `apply.error_policy` (see `replicator.apply.executor`).
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import Message

from replicator import faults
from replicator.apply.batch import incomplete_key_change_tail
from replicator.apply.consumer import ChangeConsumer, support_topics
from replicator.apply.decode import EnvelopeDecoder
from replicator.apply.executor import DeadLetterSink, PlannedTable, StepExecutor, plan_tables
from replicator.apply.lag import LagTracker
from replicator.apply.marks import marks_of
from replicator.apply.routing import Router
from replicator.config import Engine, MigrationConfig
from replicator.dialects.base import (
    DeadLetter,
    Gate,
    OffsetUpdate,
    Partition,
    StoredOffset,
    TargetTable,
    TargetWriter,
)
from replicator.errors import DecodeError, ReplicatorError
from replicator.events import ChangeEvent, Heartbeat, LogicalMessage, SchemaChange, SourcePosition
from replicator.model import TableId
from replicator.sensor import Sensor

log = logging.getLogger(__name__)

OUR_MESSAGE_PREFIX = "replicator"
_GATE_REFRESH_S = 10.0  # the longest a gate change waits to be seen while batches keep coming
_WATERMARK_REFRESH_S = 10.0  # the longest a lag count rests on fetch responses alone (see _high_watermarks)
# The longest a thread that wants the GIL waits for the one holding it (sys.setswitchinterval; Python's
# default is 5 ms). 0.5 ms cut the time the main thread waits for the writer 2-4x (tests/perf README).
_GIL_SWITCH_S = 0.0005


class FencedError(Exception):
    """Our stored offsets moved under us (another instance owns the partition now), or a gate changed
    since the batch was planned (`gates`: a snapshot or a reconcile pass holds, cuts or releases a
    table, the expected case)."""

    def __init__(self, *, gates: bool = False) -> None:
        super().__init__("gates" if gates else "offsets")
        self.gates = gates


@dataclass
class _PartitionWork:
    events: list[ChangeEvent] = field(default_factory=list)
    schema_changes: list[SchemaChange] = field(default_factory=list)
    next_offset: int = 0
    position: SourcePosition | None = None
    source_ts_ms: int | None = None
    rewind_to: int | None = None  # a held-back tail starts here


@dataclass
class _Batch:
    """A prepared batch: everything its transaction needs, decided before it is written."""

    work: dict[Partition, _PartitionWork]
    first: dict[Partition, int | None]  # the stored next offsets its lock step must find
    tables: list[PlannedTable]
    letters: list[DeadLetter]
    gates: dict[str, Gate]  # as planned with: the transaction checks they still hold
    executor: StepExecutor
    messages: int
    started: float
    marks: list[tuple[str, int, int, int]] = field(default_factory=list)  # table, generation, bucket, offset
    evolved: frozenset[TableId] = frozenset()


class ChangeApplier:
    def __init__(self, config: MigrationConfig, writer_factory: Callable[[], TargetWriter], sensor: Sensor,
                 stop: threading.Event, dead_letters: DeadLetterSink | None = None) -> None:
        self._config = config
        self._writer_factory = writer_factory
        self._sensor = sensor
        self._stop = stop
        self._dead_letters = dead_letters
        self._writer = writer_factory()
        self._writer.ensure_state()
        self._decoder = EnvelopeDecoder()
        self._router = Router(config, self._writer, sensor, before_use=self._drain)
        self._stored: dict[Partition, StoredOffset] = {}  # committed (updated by the writer thread)
        self._planned: dict[Partition, StoredOffset] = {}  # where the batches prepared so far end
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replicator-writer")
        self._in_flight: tuple[_Batch, Future[None]] | None = None
        self._gates_read_at = 0.0
        self._watermarks_read_at: dict[Partition, float] = {}  # when the broker was last asked (lag)
        self._epoch = 0  # bumped whenever `_stored`/`_planned` are re-read: older prepared batches are void
        self._support = support_topics(config.kafka.topic_prefix)
        self._lag = LagTracker()
        self._consumer = ChangeConsumer(
            config.kafka, config.apply_group_id, self._load_offsets, on_assigned=self._on_assigned,
            session_timeout_ms=config.apply.session_timeout_ms,
            max_poll_interval_ms=config.apply.max_poll_interval_ms,
            schema_change_topic=config.source.engine == Engine.MYSQL,
        )
        self.batches_committed = 0

    # -- loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Apply until the stop event is set; the batch in flight is finished and committed first."""
        next_housekeeping = 0.0
        delay = 0.5
        # Each event allocates dozens of short-lived containers, freed by reference counting; the
        # cyclic collector's default (a young-generation pass every 700 allocations, which also
        # walks the batch in flight) cost 5-8% of decoding here. Start-up objects are frozen out of it.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        # The writer thread needs the GIL back after every round trip to the target (~14 per batch);
        # while the main thread decodes, it waits up to the switch interval for it (5 ms by default),
        # which made the writer the slower stage of the pipeline (see _GIL_SWITCH_S).
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, _GIL_SWITCH_S))
        try:
            while not self._stop.is_set():
                try:
                    messages = self._fetch()
                    if messages:
                        self._apply_batch(messages)
                    else:
                        self._drain()  # idle: finish the batch in flight now
                    if time.monotonic() >= next_housekeeping:
                        self._housekeeping()
                        next_housekeeping = time.monotonic() + 2.0
                    delay = 0.5
                except Exception as exc:
                    exc = self._settle() or exc  # the batch in flight failed first: its error counts
                    self._recover(exc, delay)  # raises what retrying cannot cure
                    delay = min(delay * 2, 30.0)
            failure = self._settle()  # stopping: the batch in flight commits
            if failure is not None:
                if not self._transient(failure):
                    raise failure
                log.warning("stopping: the last batch was not committed (%s); it is applied at the next start",
                            failure)
        finally:
            sys.setswitchinterval(switch_interval)
            self._settle()
            self._pool.shutdown(wait=True)
            self._consumer.close()
            self._writer.close()

    def _fetch(self) -> list[Message]:
        deadline = time.monotonic() + self._config.apply.batch_max_wait_ms / 1000
        limit = self._config.apply.batch_max_events
        generation = self._consumer.generation
        messages: list[Message] = []
        while len(messages) < limit and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            got = self._consumer.consume(limit - len(messages), max(remaining, 0.0) if messages else 0.5)
            if self._consumer.generation != generation:  # a rebalance: positions were reset
                generation = self._consumer.generation
                messages = []
            messages.extend(got)
            if remaining <= 0 or (not got and messages):
                break
            if not messages and not got:
                break
        owned = self._consumer.assigned
        return [m for m in messages if _partition_of(m) in owned]

    def _load_offsets(self, partitions: list[Partition]) -> dict[Partition, StoredOffset]:
        self._drain()  # a rebalance: the batch in flight commits before we read where to start
        stored = self._writer.read_offsets(partitions)
        self._stored = {p: stored[p] for p in partitions if p in stored}
        self._forget_planned()
        return self._stored

    def _on_assigned(self, partitions: list[Partition]) -> None:
        self._router.refresh_gates()
        self._consumer.pause(self._router.held_partitions(partitions))

    def _refresh_gates(self) -> None:
        """Re-read the gates; pause the partitions of held tables, resume the others."""
        owned = sorted(self._consumer.assigned)
        if self._router.refresh_gates():
            held = set(self._router.held_partitions(owned))
            self._consumer.pause(sorted(held))
            self._consumer.resume([p for p in owned if p not in held])

    def _housekeeping(self) -> None:
        """Every 2 s: lag figures; gates re-read when no batch is in flight, and at least every
        `_GATE_REFRESH_S` under load (reading them needs the connection: the pipeline drains)."""
        now = time.monotonic()
        if self._in_flight is None or now >= self._gates_read_at + _GATE_REFRESH_S:
            self._drain()
            self._gates_read_at = now
            self._refresh_gates()
        self._lag.report(self._sensor, dict(self._stored), self._high_watermarks())  # a copy: the writer updates it

    def _high_watermarks(self) -> dict[Partition, int]:
        """Each owned partition's high watermark, for the lag figures. Asking the broker blocks the
        main thread for a round trip (3% of its wall time in a profiled benchmark run), so while a
        partition is being fetched and behind, the figure the last fetch response brought is used:
        the watermark only grows, so "behind" stays true and the count is at most one fetch old. The
        broker is asked when that figure says caught up (or is unknown), for a held (paused, so not
        fetched) partition, and at least every `_WATERMARK_REFRESH_S`."""
        now = time.monotonic()
        owned = sorted(self._consumer.assigned)
        held = set(self._router.held_partitions(owned))
        result: dict[Partition, int] = {}
        for partition in owned:
            stored = self._stored.get(partition)
            applied = stored.next_offset if stored is not None and stored.next_offset is not None else 0
            high = -1
            if partition not in held and now < self._watermarks_read_at.get(partition, 0.0) + _WATERMARK_REFRESH_S:
                high = self._consumer.fetched_high_watermark(partition)
            if high <= applied:
                high = self._consumer.watermarks(partition, cached=False)[1]
                self._watermarks_read_at[partition] = now
            result[partition] = high
        return result

    # -- one batch -----------------------------------------------------------------------------
    def _apply_batch(self, messages: list[Message]) -> None:
        epoch = self._epoch
        batch = self._prepare_batch(messages)
        self._drain()  # the previous batch commits (or its failure surfaces) before this one is written
        if batch is None:
            return
        if epoch != self._epoch:  # positions were re-read meanwhile (fenced): it was prepared from stale ones
            self._sensor.on_apply_skipped("fenced", batch.messages)
            self._forget_planned()
            return
        for partition, w in batch.work.items():
            if w.rewind_to is not None:
                self._consumer.seek(partition, w.rewind_to)
        self._in_flight = (batch, self._pool.submit(self._write, batch))

    def _drain(self) -> None:
        """Wait for the batch in flight; raise its failure (after which nothing is in flight)."""
        if self._in_flight is None:
            return
        batch, future = self._in_flight
        self._in_flight = None
        try:
            future.result()
        except FencedError as fenced:
            self._sensor.on_apply_skipped("fenced", batch.messages)
            if fenced.gates:
                log.info("a snapshot or reconcile gate changed since the batch was planned; planning it again")
            else:
                log.warning("our stored offsets moved since the batch was planned (another instance applied"
                            " them); batch dropped, resuming from the stored offsets")
            self._resync(reconnect=False)
            return
        except BaseException:
            self._forget_planned()
            raise
        self._consumer.commit_for_monitoring({p: w.next_offset for p, w in batch.work.items()})

    def _forget_planned(self) -> None:
        """Plan from what is committed again; batches prepared before this are void (see `_epoch`)."""
        self._planned = dict(self._stored)
        self._epoch += 1

    def _settle(self) -> Exception | None:
        """Wait for the batch in flight, whatever its outcome; its failure, if any, is returned."""
        try:
            self._drain()
        except Exception as exc:
            return exc
        return None

    def _recover(self, exc: Exception, delay: float) -> None:
        """After a transient failure (target connection lost, deadlock, broker away): roll back, wait,
        reconnect, re-read the stored offsets and seek there; the same events are fetched again."""
        while True:
            if not self._transient(exc):
                self._safe_rollback()
                raise exc
            reason = exc.line() if isinstance(exc, ReplicatorError) else self._writer.describe_error(exc)
            self._sensor.on_apply_retry(type(exc).__name__)
            log.warning("transient failure, retrying in %.1f s: %s", delay, reason)
            self._stop.wait(delay)
            try:
                self._resync(reconnect=True)
                return
            except Exception as again:  # still away: wait longer
                exc = again
                delay = min(delay * 2, 30.0)

    def _transient(self, exc: Exception) -> bool:
        return exc.retryable if isinstance(exc, ReplicatorError) else self._writer.is_transient(exc)

    def _safe_rollback(self) -> None:
        try:
            self._writer.rollback()
        except Exception as exc:  # the connection may be gone; the original error matters
            log.debug("rollback failed: %s", exc)

    def _resync(self, *, reconnect: bool) -> None:
        """Forget in-flight state: reconnect if asked, re-read stored offsets, seek there."""
        self._safe_rollback()
        if reconnect:
            while not self._stop.is_set():
                try:
                    self._writer.close()
                    self._writer = self._writer_factory()
                    self._router.use(self._writer)
                    break
                except ReplicatorError as exc:
                    if not exc.retryable:
                        raise
                    log.warning("%s (retrying)", exc.line())
                    self._stop.wait(2.0)
        self._consumer.finish_assignment()  # an assignment whose offsets could not be read then
        owned = sorted(self._consumer.assigned)
        stored = self._writer.read_offsets(owned)
        self._stored.update(stored)
        self._forget_planned()
        for partition in owned:
            self._consumer.seek(partition, stored[partition].next_offset)
        self._refresh_gates()
        self._gates_read_at = time.monotonic()

    def _prepare_batch(self, messages: list[Message]) -> _Batch | None:
        """Steps 1-4 (main thread): decode, drop duplicates, route, DDL, plan."""
        started = time.monotonic()
        by_partition: dict[Partition, list[Message]] = defaultdict(list)
        last: tuple[str | None, int | None] = (None, None)
        run: list[Message] = []
        for message in messages:  # a partition's messages come in runs: one lookup per run
            if message.partition() != last[1] or message.topic() != last[0]:
                last = (message.topic(), message.partition())
                run = by_partition[_partition_of(message)]
            run.append(message)
        held = set(self._router.held_partitions(list(by_partition)))
        for partition in sorted(held):  # gated after the fetch: leave its events where they are
            self._consumer.seek(partition, _offset_of(by_partition.pop(partition)[0]))
        self._consumer.pause(sorted(held))
        if not by_partition:
            return None
        letters: list[DeadLetter] = []
        work = {p: self._prepare(p, msgs, letters) for p, msgs in sorted(by_partition.items())}
        self._consumer.pause(self._router.held_partitions(sorted(work)))  # stopped at a reconcile cut
        first = {p: self._planned[p].next_offset for p in work}
        executor = StepExecutor(self._writer, self._config.apply.error_policy, self._sensor)
        tables = self._router.group(work_events(work), executor.reject)  # DDL for new columns happens here
        for partition, w in work.items():
            previous = self._planned[partition]
            self._planned[partition] = StoredOffset(w.next_offset, w.position or previous.position)
        marks, evolved = self._marks(tables)
        return _Batch(work, first, plan_tables(tables), letters, self._router.gates, executor, len(messages),
                      started, marks, evolved)

    def _marks(self, tables: list[tuple[TargetTable, list[ChangeEvent]]],
               ) -> tuple[list[tuple[str, int, int, int]], frozenset[TableId]]:
        """The buckets the batch's events touch in tables the reconciler tracks (replicator.apply.marks)."""
        marks: list[tuple[str, int, int, int]] = []
        evolved = frozenset(self._router.evolved)
        for table, events in tables:
            source = events[0].table
            tracking = self._router.tracking(source)
            if tracking is None:
                continue
            found = marks_of(tracking, table, events, everything=source in evolved)
            marks.extend((tracking.table, tracking.generation, bucket, offset) for bucket, offset in found.items())
        return marks, evolved

    def _write(self, batch: _Batch) -> None:
        """Step 5 (writer thread): one transaction, then what the commit makes true."""
        work = batch.work
        faults.reach("apply.before-lock")
        self._writer.begin()
        locked = self._writer.lock_offsets(sorted(work))
        for partition in work:
            stored = locked.get(partition)
            if stored is None or stored.next_offset != batch.first[partition]:
                log.debug("fenced: %s[%d] stored next offset %s, this batch starts at %s", *partition,
                          None if stored is None else stored.next_offset, batch.first[partition])
                self._writer.rollback()
                raise FencedError
        if self._writer.read_gates(lock=True) != batch.gates:
            log.debug("fenced: a snapshot gate changed since the batch was planned")
            self._writer.rollback()
            raise FencedError(gates=True)
        counts = batch.executor.run(batch.tables)
        if batch.marks:
            self._writer.record_marks(batch.marks)
        for w in work.values():
            for change in w.schema_changes:
                self._writer.record_schema_change(change.ref.topic, change.ref.offset, change.database, change.ddl,
                                                  change.source_ts_ms)
        dead = [*batch.letters, *batch.executor.dead_letters]
        for letter in dead:
            self._writer.record_dead_letter(letter)
        updates = [OffsetUpdate(t, p, w.next_offset, w.position, w.source_ts_ms) for (t, p), w in work.items()]
        self._writer.save_offsets(updates)
        if self._dead_letters is not None:
            self._dead_letters.publish(dead)  # before commit: at least once
        faults.reach("apply.before-commit")
        self._writer.commit()
        faults.reach("apply.after-commit")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("committed: %s", ", ".join(f"{t}[{p}] {batch.first[(t, p)]}->{w.next_offset}"
                                                 for (t, p), w in work.items()))
        for partition, w in work.items():
            previous = self._stored[partition]
            self._stored[partition] = StoredOffset(w.next_offset, w.position or previous.position)
            self._lag.applied(partition, w.source_ts_ms, w.events)
        self.batches_committed += 1
        self._router.evolved.difference_update(batch.evolved)  # marked whole by this batch (if tracked)
        self._sensor.on_apply_batch(counts, batch.messages, time.monotonic() - batch.started)

    def _prepare(self, partition: Partition, messages: list[Message], letters: list[DeadLetter]) -> _PartitionWork:
        """Decode one partition's messages and keep what must be applied (steps 2 and 3)."""
        work = _PartitionWork(next_offset=_offset_of(messages[-1]) + 1)
        topic = partition[0]
        if (topic in self._support and topic != self._config.kafka.topic_prefix and not topic.startswith("__")
                and not topic.endswith(".message")):
            return work  # transaction markers, schema history: nothing to apply
        stored = self._planned[partition].position
        cut = self._router.cut(topic)
        accepted_key_change_delete = False
        decode = self._decoder.decode
        number = partition[1]
        events = work.events
        for message in messages:
            try:
                record = decode(topic, number, _offset_of(message), message.key(), message.value(),
                                message.headers(), message.timestamp()[1])  # type: ignore[arg-type]
            except DecodeError as exc:
                self._reject_undecodable(message, exc, letters)
                continue
            if isinstance(record, Heartbeat):
                self._lag.heartbeat(record.source_ts_ms)
                continue
            # A tuple, not `A | B | C`: that builds two union objects per message.
            if not isinstance(record, (ChangeEvent, SchemaChange, LogicalMessage)):
                continue  # tombstones, transaction markers
            position = record.position
            if position is not None and position.major <= 0:
                position = None  # not `ordered`: first transaction of a fresh connector (see SourcePosition)
            if _duplicate(record, position, stored, accepted_key_change_delete):
                self._sensor.on_apply_skipped("duplicate", 1)
                continue
            if cut is not None and isinstance(record, ChangeEvent) and not cut.applies(record):
                # a reconcile recheck's cut: this event is not in its read view; stop before it
                work.next_offset = work.rewind_to = _offset_of(message)
                self._router.stop(topic)
                break
            if position is not None:
                stored = position
                work.position = position
            work.source_ts_ms = record.source_ts_ms
            if isinstance(record, ChangeEvent):
                accepted_key_change_delete = record.op == "d" and record.new_key is not None
                events.append(record)
            elif isinstance(record, SchemaChange):
                work.schema_changes.append(record)
        tail = incomplete_key_change_tail(work.events)
        if tail is not None:
            # The pair's `c` is not fetched yet: leave the `d` for the next batch, re-read from there.
            held = work.events.pop(tail)
            work.next_offset = held.ref.offset
            work.rewind_to = held.ref.offset
            work.position = self._last_position(work.events, self._planned[partition].position)
        return work

    @staticmethod
    def _last_position(events: list[ChangeEvent], fallback: SourcePosition | None) -> SourcePosition | None:
        positions = [e.position for e in events if e.position is not None and e.position.ordered]
        return positions[-1] if positions else fallback

    def _reject_undecodable(self, message: Message, exc: DecodeError, letters: list[DeadLetter]) -> None:
        if self._config.apply.error_policy == "halt":
            raise DecodeError(exc.message, hint="fix the producer, or set apply.error_policy: dead-letter to set "
                                                "such events aside")
        letters.append(DeadLetter(message.topic() or "", message.partition() or 0, message.offset() or 0, None,
                                  None, exc.message, message.value()))
        self._sensor.on_dead_letter("(undecodable)")


def _duplicate(record: ChangeEvent | SchemaChange | LogicalMessage, position: SourcePosition | None,
               stored: SourcePosition | None, accepted_key_change_delete: bool) -> bool:
    """At or below the stored source position: a re-sent event (the `c` of a primary-key change
    shares its `d`'s position and is not one)."""
    if position is None or stored is None:
        return False
    return position < stored or (position == stored and not (
        isinstance(record, ChangeEvent) and record.old_key is not None and accepted_key_change_delete))


def work_events(work: dict[Partition, _PartitionWork]) -> list[ChangeEvent]:
    return [event for w in work.values() for event in w.events]


def _partition_of(message: Message) -> Partition:
    return (message.topic() or "", message.partition() or 0)


def _offset_of(message: Message) -> int:
    offset = message.offset()
    if offset is None:  # only error events lack one, and consume() drops those
        raise ValueError("a Kafka message without an offset")
    return offset
