"""Shared machinery of the apply benchmarks: the local stack, the target table, Kafka, timing.

Nothing here is timed by itself; each function that is part of a measured phase says what its
returned seconds cover. The target side (`PostgresBench`, `MariaDBBench`) owns the table `bench.w`,
its seed `bench.w_seed` (kept between invocations, checked by a table comment), the physical write
limit (b) and the in-database row hash that decides whether a result is right.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from apply_workload import COLUMNS, MARIADB_DDL, PG_DDL, SCHEMA, TABLE, python_row
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from replicator.config import MigrationConfig, parse_config
from replicator.sensor import NullSensor
from replicator.stack.launcher import Database, LocalStack, StackInfo

ROOT = Path(__file__).resolve().parents[2]
SEED_MARK = "apply-bench seed v1 rows={rows}"
HEARTBEAT_PREFIX = "__debezium-heartbeat."
# The limit (a) consumer: librdkafka defaults except the fetch-queue backoff. With the default
# (1000 ms), whenever the application parses slower than the broker delivers, the prefetch queue
# fills (queued.max.messages.kbytes, 64 MiB) and the next fetch waits up to a second: consume +
# parse then runs at ~16k messages/s instead of ~28k here. 10 ms keeps the queue topped up.
LIMIT_CONSUMER_OPTIONS: dict[str, Any] = {"fetch.queue.backoff.ms": 10}


def quiet_heap() -> None:
    """Before a timed phase: move everything the benchmark holds (the expected rows, …) out of the
    cyclic GC's reach, so that its collections in the phase cost what they would in a process of
    its own (`replicator apply` does not hold 150k expected rows)."""
    gc.collect()
    gc.freeze()


def say(line: str) -> None:
    print(line, flush=True)


DEFAULT_RUN_DIR = Path(__file__).resolve().parent / ".stack"


def stack_info(run_dir: str | Path | None = None, *, start: bool = True) -> StackInfo:
    """The benchmarks' local stack, started (or repaired) first by `replicator stack up`, which is
    idempotent. Its own run directory by default (tests/perf/.stack, git-ignored): the test suite
    takes .stack-test down and up again, which would kill a benchmark half-way."""
    path = Path(run_dir) if run_dir else DEFAULT_RUN_DIR
    if start:
        cli = Path(sys.executable).with_name("replicator")
        done = subprocess.run([str(cli), "stack", "up", "--run-dir", str(path)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"replicator stack up --run-dir {path} failed:\n{done.stdout}{done.stderr}")
    return LocalStack(path).info()


def rss_kb(pid: int, field_name: str = "VmRSS") -> int | None:
    """A process's resident set (or VmHWM, its peak) from /proc, in kB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime ticks) of one process, all its threads included."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12])


class CpuMeter:
    """CPU seconds spent during a phase by named process trees (a root pid and its descendants),
    read from /proc: on 2 cores, where the CPU goes says what bounds each phase. Processes that end
    during the phase are missed (their ticks go to their parent only once reaped)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def _sample(self) -> dict[str, float]:
        stats: dict[int, tuple[int, int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                found = _cpu_ticks(int(entry))
                if found is not None:
                    stats[int(entry)] = found
        children: dict[int, list[int]] = defaultdict(list)
        for pid, (ppid, _) in stats.items():
            children[ppid].append(pid)
        totals: dict[str, float] = {}
        for name, root in self.roots.items():
            ticks, todo = 0, [root]
            while todo:
                pid = todo.pop()
                if pid in stats:
                    ticks += stats[pid][1]
                    todo.extend(children.get(pid, ()))
            totals[name] = ticks / _TICKS
        return totals

    def start(self) -> None:
        self._start = self._sample()
        self._wall = time.monotonic()

    def stop(self) -> str:
        end = self._sample()
        wall = time.monotonic() - self._wall
        parts = [f"{name} {end[name] - self._start.get(name, 0.0):.1f}" for name in self.roots]
        return f"cpu s: {', '.join(parts)} (wall {wall:.1f} s, load {os.getloadavg()[0]:.1f})"


def unique_prefix(kind: str) -> str:
    return f"bench{kind}{uuid.uuid4().hex[:8]}"


def median_line(name: str, seconds: list[float], events: int) -> str:
    med = statistics.median(seconds)
    spread = " / ".join(f"{s:.2f}" for s in seconds)
    return f"{name:<44} median {med:7.2f} s  {events / med:10,.0f} events/s   (runs: {spread})"


# -- the migration config ------------------------------------------------------------------------
def bench_config(info: StackInfo, target: str, prefix: str, group_id: str, *, batch_max_events: int | None = None,
                 metrics_port: int | None = None,
                 kafka_options: dict[str, str] | None = None) -> tuple[str, MigrationConfig]:
    """The stack's example config for the engine pair, pointed at our topic prefix, group and table.
    Returns the YAML text (for `replicator -c`) and the parsed config (for in-process runs)."""
    name = "pg-to-pg" if target == "pg" else "mariadb-to-mariadb"
    raw = yaml.safe_load((info.run_dir / "configs" / f"{name}.yaml").read_text())
    raw["kafka"]["topic_prefix"] = prefix
    raw["tables"] = {"include": [f"{SCHEMA}.{TABLE}"]}
    raw.setdefault("connector", {}).pop("history_file", None)
    raw["apply"] = {"group_id": group_id}
    if kafka_options:
        raw["kafka"]["options"] = dict(kafka_options)
    if batch_max_events is not None:
        raw["apply"]["batch_max_events"] = batch_max_events
    if metrics_port is not None:
        raw["metrics"] = {"address": f"127.0.0.1:{metrics_port}"}
    text = yaml.safe_dump(raw, sort_keys=False)
    return text, parse_config(text, {}, origin=f"bench config ({name})")


# -- Kafka ---------------------------------------------------------------------------------------
class Kafka:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def create_topic(self, topic: str) -> None:
        """Exactly one partition: Tansu would auto-create several."""
        futures = self.admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=30)
        futures[topic].result(timeout=60)
        for _ in range(50):
            metadata = self.admin.list_topics(topic, timeout=10)
            found = metadata.topics.get(topic)
            if found is not None and found.error is None and len(found.partitions) == 1:
                return
            time.sleep(0.1)
        raise RuntimeError(f"topic {topic} did not appear with exactly one partition")

    def delete_topics(self, topics: list[str]) -> None:
        if not topics:
            return
        for topic, future in self.admin.delete_topics(topics, operation_timeout=30).items():
            try:
                future.result(timeout=60)
            except KafkaException as exc:
                say(f"(could not delete topic {topic}: {exc})")

    def produce(self, topic: str, messages: Iterable[tuple[bytes, bytes | None]],
                progress: Callable[[int], None] | None = None) -> tuple[int, int, float]:
        """Produce in order to partition 0; (messages, value bytes, seconds incl. generation)."""
        producer = Producer({
            "bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 20, "batch.size": 1_000_000,
            "queue.buffering.max.kbytes": 262_144, "queue.buffering.max.messages": 200_000,
            "enable.idempotence": True, "compression.type": "none",
        })
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        started = time.monotonic()
        count = size = 0
        for key, value in messages:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, partition=0, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            count += 1
            size += len(value) if value else 0
            if count % 10_000 == 0:
                producer.poll(0)
                if progress is not None:
                    progress(count)
            if failures:
                raise RuntimeError(f"produce failed: {failures[0]}")
        left = producer.flush(300)
        if left or failures:
            raise RuntimeError(f"produce failed: {left} messages undelivered; {failures[:1]}")
        return count, size, time.monotonic() - started

    def high_watermark(self, topic: str) -> int:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-watermarks"})
        try:
            return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
        finally:
            consumer.close()

    def consume_and_parse(self, topic: str, expected: int, group_id: str) -> float:
        """Physical limit (a): every message of the topic fetched by confluent-kafka and its key and
        value parsed by orjson.loads; nothing else. Seconds from the partition's assignment (a local
        `assign`, no group join) to the last message parsed — the same span as the applier's figure.
        The consumer is connected and has the topic's metadata before the clock starts, as the
        applier's is when the group assigns it the partition (that saves ~0.45 s here)."""
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": group_id, "enable.auto.commit": False,
            "enable.auto.offset.store": False, "auto.offset.reset": "error", **LIMIT_CONSUMER_OPTIONS,
        })
        loads = orjson.loads
        try:
            consumer.list_topics(topic, timeout=10)
            consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)  # connects to the leader
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            started = time.monotonic()
            seen = 0
            while seen < expected:
                batch = consumer.consume(num_messages=10_000, timeout=1.0)
                for message in batch:
                    if message.error() is not None:
                        raise RuntimeError(f"consumer error: {message.error()}")
                    value = message.value()
                    if value is not None:
                        loads(value)
                    loads(message.key())
                seen += len(batch)
                if time.monotonic() - started > 600:
                    raise RuntimeError(f"consumed only {seen} of {expected} messages in 600 s")
            return time.monotonic() - started
        finally:
            consumer.close()


# -- the target ----------------------------------------------------------------------------------
@dataclass
class TableState:
    rows: int
    digest: str

    def __str__(self) -> str:
        return f"{self.rows:,} rows, hash {self.digest}"


class PostgresBench:
    """bench.w on the PostgreSQL target (session TimeZone UTC)."""

    flavour = "pg"

    def __init__(self, db: Database) -> None:
        import psycopg

        self._psycopg = psycopg
        self.db = db
        self.conn = self._connect()

    def _connect(self) -> Any:
        conn = self._psycopg.connect(host=self.db.host, port=self.db.port, user=self.db.user,
                                     password=self.db.password, dbname=self.db.database, autocommit=True)
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    def close(self) -> None:
        self.conn.close()

    def prepare(self, rows: int, reseed: bool) -> bool:
        """The seed table of `rows` version-0 rows; True when it had to be (re)built."""
        self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        mark = SEED_MARK.format(rows=rows)
        found = self.conn.execute(f"SELECT obj_description(to_regclass('{SCHEMA}.w_seed'), 'pg_class')").fetchone()
        if not reseed and found is not None and found[0] == mark:
            return False
        self.conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.w_seed")
        self.conn.execute(PG_DDL.format(name=f"{SCHEMA}.w_seed"))
        cols = ", ".join(COLUMNS)
        with self.conn.cursor() as cur, cur.copy(f"COPY {SCHEMA}.w_seed ({cols}) FROM STDIN") as copy:
            for id_ in range(1, rows + 1):
                copy.write_row(python_row("pg", id_, 0))
        self.conn.execute(f"VACUUM ANALYZE {SCHEMA}.w_seed")
        self.conn.execute(f"COMMENT ON TABLE {SCHEMA}.w_seed IS '{mark}'")
        return True

    def reset(self, table: str = TABLE) -> None:
        """bench.<table> := the seed, with its primary key, vacuumed, analysed and checkpointed."""
        c = self.conn
        c.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
        c.execute(f"CREATE TABLE {SCHEMA}.{table} (LIKE {SCHEMA}.w_seed INCLUDING DEFAULTS)")
        c.execute(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM {SCHEMA}.w_seed")
        c.execute(f"ALTER TABLE {SCHEMA}.{table} ADD PRIMARY KEY (id)")
        c.execute(f"VACUUM ANALYZE {SCHEMA}.{table}")
        c.execute("CHECKPOINT")

    def write_final(self, upserts: list[tuple[Any, ...]], deletes: list[int], table: str = TABLE) -> float:
        """Physical limit (b): the final rows by COPY (psycopg write_row, text format) into a temp
        table, one INSERT … ON CONFLICT DO UPDATE, the deleted keys by COPY into a second temp
        table and one DELETE … USING; one transaction. Seconds from BEGIN to COMMIT, COPY
        serialisation included (the rows were computed before)."""
        cols = ", ".join(COLUMNS)
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
        started = time.monotonic()
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE bench_up ON COMMIT DROP AS SELECT * FROM {SCHEMA}.{table} WITH NO DATA")
            cur.execute("CREATE TEMP TABLE bench_del (id bigint) ON COMMIT DROP")
            with cur.copy(f"COPY bench_up ({cols}) FROM STDIN") as copy:
                for row in upserts:
                    copy.write_row(row)
            with cur.copy("COPY bench_del (id) FROM STDIN") as copy:
                for id_ in deletes:
                    copy.write_row((id_,))
            cur.execute(f"INSERT INTO {SCHEMA}.{table} ({cols}) SELECT {cols} FROM bench_up "
                        f"ON CONFLICT (id) DO UPDATE SET {sets}")
            cur.execute(f"DELETE FROM {SCHEMA}.{table} t USING bench_del s WHERE t.id = s.id")
        return time.monotonic() - started

    def abandon(self) -> None:
        """After a failed (b): nothing to undo (its transaction block rolled back)."""

    def state(self, table: str = TABLE) -> TableState:
        """Row count and the sum of a 60-bit slice of md5(row text) over all rows, in the database."""
        count, total = self.conn.execute(
            f"SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) "
            f"FROM {SCHEMA}.{table} t").fetchone()
        return TableState(int(count), str(total))

    def clear_offsets(self, topic: str, state_schema: str = "replicator") -> None:
        if self.conn.execute("SELECT to_regclass(%s)", (f"{state_schema}.apply_offsets",)).fetchone()[0]:
            self.conn.execute(f"DELETE FROM {state_schema}.apply_offsets WHERE topic = %s", (topic,))

    def next_offset(self, topic: str, state_schema: str = "replicator") -> int | None:
        try:
            row = self.conn.execute(f"SELECT next_offset FROM {state_schema}.apply_offsets "
                                    "WHERE topic = %s AND kafka_partition = 0", (topic,)).fetchone()
        except self._psycopg.errors.UndefinedTable:
            return None
        return None if row is None or row[0] is None else int(row[0])

    def drop_work(self, seed: bool) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{TABLE}, {SCHEMA}.w_expected")
        if seed:
            self.conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def _tsv(value: Any) -> str:
    """One LOAD DATA field (FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\', NULL as \\N)."""
    if value is None:
        return "\\N"
    kind = type(value)
    if kind is str:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    if kind is bool:
        return "1" if value else "0"
    if hasattr(value, "tzinfo"):  # datetime: the session is UTC, the aware values are UTC
        return value.replace(tzinfo=None).isoformat(" ")
    return str(value)


class MariaDBBench:
    """bench.w on the MariaDB target (session time_zone +00:00)."""

    flavour = "mariadb"

    def __init__(self, db: Database) -> None:
        import pymysql

        self._pymysql = pymysql
        self.db = db
        self.conn = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password,
                                    database=db.database, autocommit=True, local_infile=True, charset="utf8mb4")
        self.run("SET SESSION time_zone = '+00:00'")
        self._dir = Path(tempfile.mkdtemp(prefix="bench-apply-"))

    def run(self, query: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def close(self) -> None:
        self.conn.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _load(self, table: str, lines: Iterable[str], columns: tuple[str, ...]) -> None:
        path = self._dir / f"{table.replace('.', '_')}.tsv"
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(lines)
        self.run(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} CHARACTER SET utf8mb4 "
                 f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({', '.join(columns)})")

    def prepare(self, rows: int, reseed: bool) -> bool:
        self.run(f"CREATE DATABASE IF NOT EXISTS {SCHEMA} CHARACTER SET utf8mb4")
        mark = SEED_MARK.format(rows=rows)
        found = self.run("SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                         "AND TABLE_NAME = 'w_seed'", (SCHEMA,))
        if not reseed and found and found[0][0] == mark:
            return False
        self.run(f"DROP TABLE IF EXISTS {SCHEMA}.w_seed")
        self.run(MARIADB_DDL.format(name=f"{SCHEMA}.w_seed") + f" COMMENT='{mark}'")
        lines = ("\t".join(map(_tsv, python_row("mariadb", id_, 0))) + "\n" for id_ in range(1, rows + 1))
        self.run("BEGIN")
        self._load(f"{SCHEMA}.w_seed", lines, COLUMNS)
        self.run("COMMIT")
        self.run(f"ANALYZE TABLE {SCHEMA}.w_seed")
        return True

    def reset(self, table: str = TABLE) -> None:
        """bench.<table> := the seed, then wait (≤ 60 s) for InnoDB to flush what that dirtied,
        so the timed phase does not pay for the reset's writes."""
        self.run(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
        self.run(f"CREATE TABLE {SCHEMA}.{table} LIKE {SCHEMA}.w_seed")
        self.run(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM {SCHEMA}.w_seed")
        self.run(f"ANALYZE TABLE {SCHEMA}.{table}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            dirty = self.run("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
            if not dirty or int(dirty[0][1]) < 500:
                break
            time.sleep(0.5)

    def write_final(self, upserts: list[tuple[Any, ...]], deletes: list[int], table: str = TABLE) -> float:
        """Physical limit (b): the final rows written as a tab-separated file and LOAD DATA LOCAL
        INFILE into a temporary table, then UPDATE … JOIN for the rows that exist, INSERT … SELECT …
        WHERE NOT EXISTS for the new ones, and the deleted keys by LOAD DATA into a second
        temporary table and one DELETE … JOIN; one transaction. Seconds from writing the file to
        COMMIT (the rows were computed before)."""
        target = f"{SCHEMA}.{table}"
        sets = ", ".join(f"t.{c} = s.{c}" for c in COLUMNS[1:])
        cols = ", ".join(COLUMNS)
        started = time.monotonic()
        self.run("BEGIN")
        self.run(f"CREATE TEMPORARY TABLE bench_up LIKE {target}")
        self.run("CREATE TEMPORARY TABLE bench_del (id BIGINT NOT NULL PRIMARY KEY)")
        self._load("bench_up", ("\t".join(map(_tsv, row)) + "\n" for row in upserts), COLUMNS)
        self._load("bench_del", (f"{id_}\n" for id_ in deletes), ("id",))
        self.run(f"UPDATE {target} t JOIN bench_up s ON t.id = s.id SET {sets}")
        self.run(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM bench_up s "
                 f"WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.id = s.id)")
        self.run(f"DELETE t FROM {target} t JOIN bench_del s ON t.id = s.id")
        self.run("COMMIT")
        elapsed = time.monotonic() - started
        self.run("DROP TEMPORARY TABLE bench_up, bench_del")
        return elapsed

    def abandon(self) -> None:
        """After a failed (b): roll back and drop its temporary tables."""
        self.run("ROLLBACK")
        self.run("DROP TEMPORARY TABLE IF EXISTS bench_up, bench_del")

    def state(self, table: str = TABLE) -> TableState:
        """Row count and the sum of a 60-bit slice of md5(the row's fields) over all rows, in the database."""
        parts = ", ".join(f"IFNULL({c}, '~')" for c in COLUMNS)
        count, total = self.run(
            f"SELECT COUNT(*), IFNULL(SUM(CAST(CONV(SUBSTRING(MD5(CONCAT_WS('|', {parts})), 1, 15), 16, 10) "
            f"AS UNSIGNED)), 0) FROM {SCHEMA}.{table}")[0]
        return TableState(int(count), str(total))

    def clear_offsets(self, topic: str, state_schema: str = "replicator") -> None:
        exists = self.run("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                          "AND TABLE_NAME = 'apply_offsets'", (state_schema,))
        if exists:
            self.run(f"DELETE FROM {state_schema}.apply_offsets WHERE topic = %s", (topic,))

    def next_offset(self, topic: str, state_schema: str = "replicator") -> int | None:
        try:
            rows = self.run(f"SELECT next_offset FROM {state_schema}.apply_offsets "
                            "WHERE topic = %s AND kafka_partition = 0", (topic,))
        except self._pymysql.err.ProgrammingError:
            return None
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def drop_work(self, seed: bool) -> None:
        self.run(f"DROP TABLE IF EXISTS {SCHEMA}.{TABLE}, {SCHEMA}.w_expected")
        if seed:
            self.run(f"DROP DATABASE IF EXISTS {SCHEMA}")


def target_bench(info: StackInfo, target: str) -> PostgresBench | MariaDBBench:
    return PostgresBench(info.database("pg-target")) if target == "pg" else MariaDBBench(info.database("my-target"))


# -- the applier, in process ----------------------------------------------------------------------
class TimingSensor(NullSensor):
    """Stamps every committed batch (the applier calls on_apply_batch right after COMMIT)."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, int, float]] = []  # (monotonic at commit, messages, batch seconds)
        self.messages = 0
        self.skipped: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()

    def on_apply_batch(self, counts: dict[tuple[str, str], int], events: int, seconds: float) -> None:
        self.batches.append((time.monotonic(), events, seconds))
        self.messages += events

    def on_apply_retry(self, reason: str) -> None:
        self.retries[reason] += 1

    def on_apply_skipped(self, reason: str, count: int) -> None:
        self.skipped[reason] += count


@dataclass
class ApplierRun:
    seconds: float  # partition assigned -> last batch committed
    seconds_with_startup: float  # ChangeApplier() constructed -> last batch committed
    batches: int
    batch_seconds: list[float] = field(default_factory=list)


def run_applier(config: MigrationConfig, bench: PostgresBench | MariaDBBench, topic: str, messages: int,
                timeout_s: float = 900) -> ApplierRun:
    """(c): the real ChangeApplier in a thread until our stored next_offset reaches the topic's end.
    Seconds from the moment the group assigned the partition (after the join, as for (a)) to the
    commit of the last batch."""
    from replicator.apply.applier import ChangeApplier
    from replicator.dialects import target_writer_for

    class TimedApplier(ChangeApplier):
        assigned_at: float | None = None

        def _on_assigned(self, partitions: list[tuple[str, int]]) -> None:
            if self.assigned_at is None and partitions:
                self.assigned_at = time.monotonic()
            super()._on_assigned(partitions)

    sensor = TimingSensor()
    stop = threading.Event()
    failure: list[BaseException] = []
    constructed = time.monotonic()
    applier = TimedApplier(config, lambda: target_writer_for(config.target, config.state_schema), sensor, stop)

    def body() -> None:
        try:
            applier.run()
        except BaseException as exc:
            failure.append(exc)
            stop.set()

    thread = threading.Thread(target=body, name="applier", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not stop.is_set():
            time.sleep(0.05)
            if sensor.messages >= messages:
                stored = bench.next_offset(topic, config.state_schema)
                if stored is not None and stored >= messages:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the applier did not catch up within {timeout_s:.0f} s "
                                   f"({sensor.messages} of {messages} messages)")
    finally:
        stop.set()
        thread.join(120)
    if failure:
        raise RuntimeError(f"the applier failed: {failure[0]!r}") from failure[0]
    if applier.assigned_at is None or not sensor.batches:
        raise RuntimeError("the applier committed nothing")
    last = sensor.batches[-1][0]
    if sensor.retries or sensor.skipped:
        say(f"   note: retries {dict(sensor.retries)}, skipped {dict(sensor.skipped)}")
    return ApplierRun(last - applier.assigned_at, last - constructed, len(sensor.batches),
                      [b[2] for b in sensor.batches])


# -- py-spy ---------------------------------------------------------------------------------------
class Profiler:
    """py-spy attached to this process for one phase; raw (collapsed) stacks to `path`.
    `idle`: waits (Kafka fetch, database round trips) are sampled too, so shares are of wall time;
    otherwise only samples where the thread was running count (CPU time)."""

    def __init__(self, path: Path, *, idle: bool, rate: int = 200) -> None:
        exe = Path(sys.executable).with_name("py-spy")
        if not exe.exists():
            raise RuntimeError(f"{exe} not found: .venv/bin/pip install py-spy")
        self.path = path
        command = [str(exe), "record", "--pid", str(os.getpid()), "--rate", str(rate), "--format", "raw",
                   "--nonblocking", "--output", str(path)] + (["--idle"] if idle else [])
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)  # attach

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _function(frame: str) -> str:
    """py-spy raw frame "name (path/file.py:123)" -> "name (dir/file.py)" (lines merged)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0] or where.rstrip(")")
    return f"{name} ({'/'.join(Path(path).parts[-2:])})"


def profile_top(path: Path, limit: int = 12, thread_marker: str = "ChangeApplier.run") -> list[str]:
    """Self and inclusive shares of the applier thread's samples per function (py-spy raw stacks)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        frames = stack.split(";")
        if not any(thread_marker in f for f in frames):
            continue
        count = int(count_text)
        total += count
        names = [_function(f) for f in frames if f]
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return ["no samples of the applier thread"]
    lines = [f"{total} samples of the applier thread; by self time:", f"{'self %':>7} {'incl %':>7}  function"]
    lines += [f"{100 * n / total:7.1f} {100 * inclusive[f] / total:7.1f}  {f}" for f, n in own.most_common(limit)]
    lines.append("by inclusive time (replicator code):")
    ours = [(f, n) for f, n in inclusive.most_common() if "apply/" in f or "dialects/" in f]
    lines += [f"{'':7} {100 * n / total:7.1f}  {f}" for f, n in ours[:limit + 8]]
    return lines


@contextlib.contextmanager
def maybe_profile(path: Path | None, *, idle: bool = False) -> Any:
    profiler = Profiler(path, idle=idle) if path is not None else None
    try:
        yield profiler
    finally:
        if profiler is not None:
            profiler.stop()
