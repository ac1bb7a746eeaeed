"""`replicator snapshot`: seed the target with the source's rows, then hand each table to the stream.

Per run, in this order (the argument for each step is in replicator/snapshot/__init__.py):
1. resolve the tables (config selection, or the names given); start the watermark proof in the
   background: a token written to our watermark table on the source, seen in its Kafka topic;
2. create the missing target tables (schema translation, create phase); add back a primary key an
   unfinished earlier copy dropped; `--restart` forgets the tables' ledger entries;
3. hold each table that is not released yet: its gate is set to `hold` in a transaction that locks
   the offset rows of its topic first, so from its commit on no batch applies the table's events;
4. fix each table's plan (key ranges) in the ledger, emptying the target table (and, on PostgreSQL,
   dropping its primary key for the load) in the same transaction, or reuse the plan a previous
   run fixed;
5. wait for the proof; open one consistent read view on the source (PostgreSQL: an exported
   snapshot; MySQL: one per worker; the position goes with each chunk); workers copy the unfinished
   chunks in parallel, one target transaction per chunk (load it, check rows sent = rows loaded,
   record the chunk in the ledger); a deadlock or a lost target connection copies a chunk again;
6. per table, as soon as its last chunk is committed and while the other tables still copy: count
   its rows in the target and build the primary key its load went without (a connection of its
   own), and count its rows in the source snapshot when all its chunks were read in it (the
   coordinator's connection); once every table is copied: compare the counts (target = ledger =
   source snapshot), record sequences, release the gate with the per-chunk filter (`filter`): the
   applier applies exactly the events the copy lacks; then create secondary indexes and foreign
   keys. A table's key is built only after all its rows are in, and nothing else writes it (held),
   so building it early changes nothing but the time; a failure elsewhere leaves it built, which
   the next run sees (adding a key back is idempotent).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from replicator import faults
from replicator.config import ForeignKeyTiming, MigrationConfig
from replicator.dialects import (
    catalog_for,
    selected_tables,
    snapshot_source_for,
    snapshot_target_for,
    target_writer_for,
    transfer_for,
)
from replicator.dialects.base import (
    Block,
    ChunkLoad,
    LedgerTable,
    SnapshotPoint,
    SnapshotSource,
    SnapshotTarget,
    SourceShape,
    Transfer,
)
from replicator.errors import ReplicatorError, SnapshotError
from replicator.kafka.watermark import prove_streaming
from replicator.model import TableId, topic_for
from replicator.schema import Phase, SchemaPlan, apply_schema, refuse_blocking, translate
from replicator.sensor import Sensor
from replicator.snapshot.plan import Chunk, TablePlan, filter_json

log = logging.getLogger(__name__)
_CHUNK_ATTEMPTS = 5  # a chunk whose load hits a deadlock or a lost target connection is copied again
Say = Callable[[str], None]


@dataclass
class TableJob:
    source: TableId
    target: TableId
    shape: SourceShape
    plan: TablePlan
    columns: tuple[str, ...]
    transfer: Transfer
    done: dict[int, tuple[int, str]]  # chunk → (rows, position JSON), committed
    deferred_key: str | None = None  # the primary key dropped for the load (start_table), added back at the end
    lock: threading.Lock = field(default_factory=threading.Lock)
    bytes: int = 0

    @property
    def name(self) -> str:
        return self.source.qualified

    @property
    def pending(self) -> list[Chunk]:
        with self.lock:
            return [c for c in self.plan.chunks if c.index not in self.done]

    @property
    def rows(self) -> int:
        with self.lock:  # workers add chunks while the reporter reads
            return sum(r for r, _ in self.done.values())


@dataclass(frozen=True)
class TableResult:
    table: str
    state: str  # released, already released
    chunks: int
    rows: int
    target_rows: int | None
    source_rows: int | None  # None when the chunks were read in several snapshots (a resumed copy)
    seconds: float


class _Throttle:
    """At most `mb_per_s` across all workers (None: no limit)."""

    def __init__(self, mb_per_s: float | None) -> None:
        self._rate = None if mb_per_s is None else mb_per_s * 1024 * 1024
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, size: int) -> None:
        if self._rate is None:
            return
        with self._lock:
            now = time.monotonic()
            self._next = max(self._next, now) + size / self._rate
            wait = self._next - now - 0.05  # allow a 50 ms burst
        if wait > 0:
            time.sleep(wait)


class SnapshotCopier:
    def __init__(self, config: MigrationConfig, sensor: Sensor, say: Say, stop: threading.Event | None = None,
                 *, watermark_timeout_s: float = 60.0) -> None:
        self._config = config
        self._sensor = sensor
        self._say = say
        self._stop = stop or threading.Event()
        self._watermark_timeout_s = watermark_timeout_s
        self._throttle = _Throttle(config.snapshot.max_mb_per_s)
        self._proof: _Proof
        self._background: ThreadPoolExecutor

    # -- the run -------------------------------------------------------------------------------
    def run(self, names: list[str] | None = None, *, restart: bool = False) -> list[TableResult]:
        # The proof that the stream runs (a watermark through Kafka, 0.3-1 s) is taken while the tables
        # are listed, the schema is created and the tables are held and planned (first of all: it is
        # the longest of these); the snapshot opens only once it holds. A daemon thread: when nothing
        # is left to copy, nobody waits for it.
        self._proof = _Proof(self._prove_streaming)
        tables = self.resolve(names)
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replicator-snapshot")
        try:
            return self._run(tables, restart)
        finally:
            self._background.shutdown(wait=True, cancel_futures=True)

    def _run(self, tables: list[TableId], restart: bool) -> list[TableResult]:
        config = self._config
        plan = self.schema_plan(tables)
        writer = target_writer_for(config.target, config.state_schema)
        target = snapshot_target_for(config.target, config.state_schema)
        planner = snapshot_source_for(config.source)
        results: list[TableResult] = []
        try:
            writer.ensure_state()
            ledger = {t: target.ledger_table(t.qualified) for t in tables}
            for table, entry in list(ledger.items()):
                if entry is not None and target.column_types(self._target_of(table)) is None:
                    # the target table was dropped since: its ledger describes rows that are gone,
                    # so it starts over (the table is created below)
                    if not restart:  # (--restart starts it over anyway)
                        self._say(f"{table}: the target table {self._target_of(table)} is gone since its last"
                                  " copy; copying it from the start")
                    ledger[table] = None
                    continue
                if entry is not None and entry.deferred_key is not None and entry.state != "released":
                    # an unfinished copy dropped this key: back first, so the table compares as
                    # translated (the rest of its chunks then load with it); a restart empties the
                    # table first (it loads every row again, whatever the table holds now)
                    target.restore_key(self._target_of(table), entry.deferred_key, config.snapshot.index_memory_mb,
                                       empty=restart)
            apply_schema(config.target, plan, Phase.CREATE)  # tables that are missing; existing ones compared
            jobs: list[TableJob] = []
            entries = {t: None if restart else e for t, e in ledger.items()}
            for table, entry in entries.items():
                if entry is not None and entry.state == "released":
                    results.append(TableResult(table.qualified, "already released", len(entry.chunks),
                                               sum(r for r, _ in entry.chunks.values()), entry.target_rows,
                                               entry.source_rows, 0.0))
                    continue
                writer.write_gate(table.qualified, "hold", None, [self._partition(table)])
                jobs.append(self._job(table, planner, target, entry))
            if jobs:
                self._say(f"holding the change events of {len(jobs)} table(s) while they are copied")
                results.extend(self._copy(jobs, planner, target, writer))
            self._after_load(plan)
            return results
        finally:
            planner.close()
            target.close()
            writer.close()

    def schema_plan(self, tables: list[TableId]) -> SchemaPlan:
        """The target DDL for these tables (replicator.schema); its problems are said, blocking ones raise."""
        plan = translate(self._config, tables)
        for problem in plan.problems:
            self._say(problem.line())
        refuse_blocking(plan)
        return plan

    def _after_load(self, plan: SchemaPlan) -> None:
        """Secondary indexes once the rows are in, and foreign keys unless they wait for the cutover."""
        phases = [Phase.POST_LOAD]
        if self._config.snapshot.foreign_keys is ForeignKeyTiming.AFTER_LOAD:
            phases.append(Phase.FOREIGN_KEYS)
        created = 0
        for phase in phases:
            created += sum(1 for a in apply_schema(self._config.target, plan, phase,
                                                   index_memory_mb=self._config.snapshot.index_memory_mb)
                           if a.created)
        if created:
            self._say(f"created {created} index(es) and foreign key(s) after the load")

    def resolve(self, names: list[str] | None) -> list[TableId]:
        """The selected source tables, or the named ones (each must be selected)."""
        return selected_tables(self._config, names)

    def _target_of(self, table: TableId) -> TableId:
        return TableId(*self._config.tables.target_for(table.schema, table.name))

    def _partition(self, table: TableId) -> tuple[str, int]:
        return (topic_for(self._config.kafka.topic_prefix, table), 0)

    def _job(self, table: TableId, planner: SnapshotSource, target: SnapshotTarget,
             entry: LedgerTable | None) -> TableJob:
        schema, name = self._config.tables.target_for(table.schema, table.name)
        target_table = TableId(schema, name)
        shape = planner.shape(table)
        target_types = target.column_types(target_table)
        if target_types is None:
            raise SnapshotError(f"the target table {target_table} (for {table}) does not exist",
                                hint="create it with replicator schema, or fix tables.rename / target_schema")
        missing = [c for c in shape.names if c not in target_types]
        if missing:
            raise SnapshotError(f"the target table {target_table} lacks column(s) {', '.join(missing)} of {table}",
                                hint="add them on the target, or recreate the table with replicator schema")
        if entry is None:
            plan = TablePlan.make(shape, planner.split_points(shape, self._config.snapshot.chunk_rows))
            deferred = target.start_table(table.qualified, target_table, plan.to_json())
            done: dict[int, tuple[int, str]] = {}
        else:
            plan, deferred, done = TablePlan.from_json(entry.plan, table.qualified), entry.deferred_key, entry.chunks
        transfer = transfer_for(self._config.source, self._config.target, dict(shape.columns), target_types)
        return TableJob(table, target_table, shape, plan, shape.names, transfer, dict(done), deferred)

    def _copy(self, jobs: list[TableJob], planner: SnapshotSource, target: SnapshotTarget,
              writer: Any) -> list[TableResult]:
        started = time.monotonic()
        pending = [(job, chunk) for job in jobs for chunk in job.pending]
        point: SnapshotPoint | None = None
        if pending:
            self._proof.wait()
            point = planner.export()
        position = None if point is None else orjson.dumps(point.position).decode()
        settler = _Settler(self._count_target, self._build_key, planner, self._background,
                           width=min(self._config.snapshot.workers, len(jobs)), position=position)
        try:
            for job in jobs:
                if not job.pending:  # every chunk committed by an earlier run
                    settler.table_done(job)
            if point is not None:
                self._say(f"copying {len(pending)} chunk(s) of {len(jobs)} table(s) with "
                          f"{min(self._config.snapshot.workers, len(pending))} worker(s)")
                copy_started, rows_before = time.monotonic(), sum(j.rows for j in jobs)
                self._run_workers(point, pending, jobs, settler)
                seconds = time.monotonic() - copy_started
                rows = sum(j.rows for j in jobs) - rows_before
                megabytes = sum(j.bytes for j in jobs) / 1e6
                self._say(f"copied {len(pending)} chunk(s) in {seconds:.2f} s: {rows / seconds:,.0f} rows/s, "
                          f"{megabytes / seconds:,.1f} MB/s")
            tail = time.monotonic()
            sources, counted = settler.results()
            keys = sum(1 for j in jobs if j.deferred_key is not None)
            self._say(f"counted the target rows and built {keys} primary key(s) in {time.monotonic() - tail:.2f} s "
                      "after the last chunk")
        finally:
            settler.close()
        planner.leave()
        return [self._finish(job, (target, writer, planner), (sources.get(job.name), counted[job.name]),
                             time.monotonic() - started) for job in jobs]

    def _count_target(self, job: TableJob) -> int:
        """The rows of a table whose chunks are all committed, on a connection of its own."""
        target = snapshot_target_for(self._config.target, self._config.state_schema)
        try:
            return target.count(job.target)
        finally:
            target.close()

    def _build_key(self, job: TableJob) -> None:
        """The primary key the table's load went without, built on a connection of its own. The count
        of the same table runs beside it on PostgreSQL (the unique index is built under a SHARE lock,
        then attached as the key) and takes turns with it elsewhere; nothing else writes the table
        meanwhile, so either order counts the same rows."""
        if job.deferred_key is None:
            return
        target = snapshot_target_for(self._config.target, self._config.state_schema)
        try:
            target.restore_key(job.target, job.deferred_key, self._config.snapshot.index_memory_mb)
        finally:
            target.close()

    def _prove_streaming(self) -> None:
        config = self._config
        watermark = config.watermark_table
        topic = topic_for(config.kafka.topic_prefix, watermark)
        catalog = catalog_for(config.source)

        def write(token: str) -> None:
            catalog.write_watermark(watermark, token)

        try:
            seconds = prove_streaming(config.kafka, topic, write, self._watermark_timeout_s)
        except TimeoutError:
            raise SnapshotError(
                f"a watermark row written to {watermark} on the source did not reach Kafka topic {topic} "
                f"within {self._watermark_timeout_s:.0f} s: the connector is not streaming (copying now could "
                "lose the changes made during the copy)",
                hint="check `replicator connectors status`, and run `replicator connectors apply`") from None
        finally:
            catalog.close()
        self._say(f"the connector streams: a watermark reached Kafka in {seconds:.1f} s")

    # -- workers -------------------------------------------------------------------------------
    def _run_workers(self, point: SnapshotPoint, pending: list[tuple[TableJob, Chunk]], jobs: list[TableJob],
                     settler: _Settler) -> None:
        work: queue.Queue[tuple[TableJob, Chunk]] = queue.Queue()
        # tables taken in turns (chunk 0 of each, then chunk 1…): workers load different tables at once
        for item in sorted(pending, key=lambda jc: (jc[1].index, -jc[0].shape.estimated_rows)):
            work.put(item)
        failures: list[BaseException] = []
        abort = threading.Event()
        count = min(self._config.snapshot.workers, len(pending))
        threads = [threading.Thread(target=self._worker, args=(point, work, failures, abort, settler),
                                    name=f"replicator-copy-{i}", daemon=True) for i in range(count)]
        for thread in threads:
            thread.start()
        reporter = _Reporter(jobs, self._say)
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.5)
            reporter.maybe_report()
            if self._stop.is_set():
                abort.set()
        if failures:
            raise failures[0]
        if self._stop.is_set():
            raise SnapshotError("stopped; the chunks copied so far are kept",
                                hint="run replicator snapshot again to continue where it stopped")
        reporter.report()

    def _worker(self, point: SnapshotPoint, work: queue.Queue[tuple[TableJob, Chunk]],
                failures: list[BaseException], abort: threading.Event, settler: _Settler) -> None:
        ends: list[Any] = []  # [source, target] once open
        where = "opening the copy connections"
        try:
            ends.append(snapshot_source_for(self._config.source))
            ends.append(snapshot_target_for(self._config.target, self._config.state_schema))
            position = orjson.dumps(ends[0].enter(point).position).decode()
            while not abort.is_set():
                try:
                    job, chunk = work.get_nowait()
                except queue.Empty:
                    return
                where = f"{job.name} chunk {chunk.index}"
                rows, size = self._copy_chunk(ends, job, chunk, position, where)
                with job.lock:
                    job.done[chunk.index] = (rows, position)
                    complete = len(job.done) == len(job.plan.chunks)
                self._sensor.on_snapshot_progress(job.name, rows, size)
                if complete:  # its last chunk: the table settles while the others still copy
                    settler.table_done(job)
        except ReplicatorError as exc:
            failures.append(exc)
            abort.set()
        except Exception as exc:  # a driver error: one line naming the chunk
            failures.append(SnapshotError(f"{where}: {type(exc).__name__}: {' '.join(str(exc).split())}",
                                          hint="fix it and run replicator snapshot again (copied chunks are kept)"))
            abort.set()
        except BaseException as exc:
            failures.append(exc)
            abort.set()
        finally:
            for closing in ends:
                try:
                    closing.close()
                except Exception as exc:
                    log.debug("closing a copy connection: %s", exc)

    def _copy_chunk(self, ends: list[Any], job: TableJob, chunk: Chunk, position: str, where: str) -> tuple[int, int]:
        """One chunk into the target (ends: [source, target]); a deadlock or a lost target connection
        rolls the chunk's transaction back, and it is copied again. (rows, bytes)."""
        source, target = ends
        load = ChunkLoad(job.name, chunk.index, position, job.target, job.plan.key, job.plan.kinds,
                         chunk.low, chunk.high, job.columns, job.transfer)
        for attempt in range(1, _CHUNK_ATTEMPTS + 1):
            read = _Counted(self._metered(source.stream(job.shape, job.columns, chunk.low, chunk.high,
                                                        job.transfer), job))
            try:
                rows, size = target.load_chunk(load, read)
                break
            except Exception as exc:
                if attempt == _CHUNK_ATTEMPTS or not (target.is_transient(exc) or source.is_transient(exc)):
                    raise
                log.warning("%s: %s; copying the chunk again (attempt %d)", where, exc, attempt + 1)
                time.sleep(0.2 * attempt)
                if target.is_broken():
                    target.close()
                    target = ends[1] = snapshot_target_for(self._config.target, self._config.state_schema)
        faults.reach("snapshot.after-chunk-commit")
        return rows, size

    def _metered(self, blocks: Generator[Block, None, int], job: TableJob) -> Generator[Block, None, int]:
        """The blocks, throttled and counted; returns what the source stream returned (rows read)."""
        while True:
            try:
                block = next(blocks)
            except StopIteration as end:
                faults.reach("snapshot.chunk-loaded")  # every block is in the target transaction, uncommitted
                return int(end.value or 0)
            size = len(block)
            self._throttle.take(size)
            with job.lock:
                job.bytes += size
            yield block

    # -- per table -----------------------------------------------------------------------------
    def _finish(self, job: TableJob, ends: tuple[SnapshotTarget, Any, SnapshotSource],
                counts: tuple[int | None, int], seconds: float) -> TableResult:
        target, writer, planner = ends
        source_rows, target_rows = counts
        copied = job.rows
        if target_rows != copied:
            raise SnapshotError(
                f"{job.name}: the target table {job.target} holds {target_rows} rows, the copy loaded {copied}: "
                "something else writes to it while its change events are held",
                hint="stop other writers of the target table, then run replicator snapshot --restart "
                     f"{job.name}")
        if source_rows is not None and source_rows != copied:
            raise SnapshotError(f"{job.name}: {source_rows} rows in the source snapshot, {copied} copied",
                                hint=f"run replicator snapshot --restart {job.name}")
        sequences = orjson.dumps(planner.sequences(job.source)).decode()
        target.finish_table(job.name, "copied", source_rows, target_rows, sequences)
        faults.reach("snapshot.before-release")
        positions = {index: position for index, (_, position) in job.done.items()}
        writer.write_gate(job.name, "filter", filter_json(job.plan, positions), [self._partition(job.source)])
        target.finish_table(job.name, "released", None, None, None)
        self._sensor.on_snapshot_table(job.name, copied, True)
        counted = f"{source_rows} in the source snapshot" if source_rows is not None else \
            "chunks read in several snapshots (resumed)"
        self._say(f"{job.name}: {copied} rows copied in {len(job.done)} chunk(s), {target_rows} in the target, "
                  f"{counted}; released to the change stream")
        return TableResult(job.name, "released", len(job.done), copied, target_rows, source_rows, seconds)


class _Proof(threading.Thread):
    """Runs the watermark proof in the background; `wait` returns once it held, or raises its error."""

    def __init__(self, prove: Callable[[], None]) -> None:
        super().__init__(name="replicator-watermark", daemon=True)
        self._prove = prove
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._prove()
        except BaseException as exc:
            self._error = exc

    def wait(self) -> None:
        self.join()
        if self._error is not None:
            raise self._error


class _Settler:
    """Settles each table as soon as its last chunk is committed, while the other tables still copy:
    its target rows counted and its primary key built, each on a target connection of its own (at
    once, or in turns where the key build locks reads out), several tables at once; its source rows counted in the
    coordinator's read view (on its one connection, one table at a time, on the `background` thread)
    when every chunk of the table was read at the coordinator's position."""

    def __init__(self, count_target: Callable[[TableJob], int], build_key: Callable[[TableJob], None],
                 planner: SnapshotSource, background: ThreadPoolExecutor, *, width: int, position: str | None) -> None:
        self._count_target = count_target
        self._build_key = build_key
        self._planner = planner
        self._background = background
        self._pool = ThreadPoolExecutor(max_workers=2 * max(width, 1), thread_name_prefix="replicator-settle")
        self._position = position
        self._lock = threading.Lock()
        self._targets: dict[str, Future[int]] = {}
        self._keys: dict[str, Future[None]] = {}
        self._sources: dict[str, Future[int]] = {}

    def table_done(self, job: TableJob) -> None:
        with self._lock:
            if job.name in self._targets:
                return
            self._keys[job.name] = self._pool.submit(self._build_key, job)
            self._targets[job.name] = self._pool.submit(self._count_target, job)
            if self._position is not None and all(p == self._position for _, p in job.done.values()):
                self._sources[job.name] = self._background.submit(self._planner.count, job.source)

    def results(self) -> tuple[dict[str, int], dict[str, int]]:
        """(source rows, target rows) by table, once every table settled; a settling error raises."""
        with self._lock:
            targets, keys, sources = dict(self._targets), dict(self._keys), dict(self._sources)
        for future in keys.values():
            future.result()
        return ({name: f.result() for name, f in sources.items()},
                {name: f.result() for name, f in targets.items()})

    def close(self) -> None:
        """Waits for what runs (a key being built), drops what has not started."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            sources = list(self._sources.values())
        for future in sources:  # the coordinator's connection is free again before it is left
            future.cancel()
            if not future.cancelled():
                try:
                    future.exception()
                except BaseException as exc:  # reported by results(), or superseded by the error raised
                    log.debug("a source count: %s", exc)


class _Counted:
    """Iterates a stream of blocks and keeps what it returned at the end (rows read from the source)."""

    def __init__(self, blocks: Generator[Block, None, int]) -> None:
        self._blocks = blocks
        self.rows: int | None = None

    def __iter__(self) -> Iterator[Block]:
        self.rows = yield from self._blocks


class _Reporter:
    """One progress line every few seconds: rows of finished chunks, MB streamed, rate, ETA."""

    def __init__(self, jobs: list[TableJob], say: Say, every_s: float = 5.0) -> None:
        self._jobs = jobs
        self._say = say
        self._every = every_s
        self._started = time.monotonic()
        self._base_rows = sum(j.rows for j in jobs)
        self._next = self._started + every_s

    def maybe_report(self) -> None:
        if time.monotonic() >= self._next:
            self.report()

    def report(self) -> None:
        now = time.monotonic()
        self._next = now + self._every
        rows = sum(j.rows for j in self._jobs)
        expected = sum(max(j.shape.estimated_rows, j.rows) for j in self._jobs)
        megabytes = sum(j.bytes for j in self._jobs) / 1e6
        finished = sum(1 for j in self._jobs if not j.pending)
        elapsed = max(now - self._started, 1e-6)
        rate = (rows - self._base_rows) / elapsed
        eta = f", ETA {max(expected - rows, 0) / rate:.0f} s" if rate > 0 and expected > rows else ""
        self._say(f"snapshot: {finished}/{len(self._jobs)} tables, {rows:,} of ~{expected:,} rows, "
                  f"{megabytes:,.0f} MB streamed, {rate:,.0f} rows/s{eta}")
        for job in self._jobs:  # the tables being copied now
            total = len(job.plan.chunks)
            if job.pending and (job.done or job.bytes):
                self._say(f"  {job.name}: {len(job.done)}/{total} chunks, {job.rows:,} of "
                          f"~{max(job.shape.estimated_rows, job.rows):,} rows, {job.bytes / 1e6:,.0f} MB")
