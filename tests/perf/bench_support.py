"""Shared machinery of the apply benchmarks: the local stack, Kafka, the in-process applier, CPU
accounting and py-spy. The target database side is `bench_targets`.

Nothing here is timed by itself; each function that is part of a measured phase says what its
returned seconds cover.
"""

from __future__ import annotations

import compileall
import contextlib
import gc
import os
import signal
import statistics
import subprocess
import sys
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
from apply_workload import SCHEMA, TABLE
from bench_targets import MariaDBBench, PostgresBench
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from replicator.config import MigrationConfig, parse_config
from replicator.sensor import NullSensor
from replicator.stack.launcher import LocalStack, StackInfo

# The limit (a) consumer: librdkafka defaults except the fetch-queue backoff. With the default
# (1000 ms), whenever the application parses slower than the broker delivers, the prefetch queue
# fills (queued.max.messages.kbytes, 64 MiB) and the next fetch waits up to a second: consume +
# parse then runs at ~16k messages/s instead of ~28k here. 10 ms keeps the queue topped up.
# The applier's larger partition fetch (8 MiB, replicator.apply.consumer) is given to it as well.
LIMIT_CONSUMER_OPTIONS: dict[str, Any] = {"fetch.queue.backoff.ms": 10, "max.partition.fetch.bytes": 8 * 1024 * 1024}


def quiet_heap() -> None:
    """Before a timed phase: move everything the benchmark holds (the expected rows, …) out of the
    cyclic GC's reach, so that its collections in the phase cost what they would in a process of
    its own (`replicator apply` does not hold 150k expected rows)."""
    gc.collect()
    gc.freeze()


def say(line: str) -> None:
    print(line, flush=True)


DEFAULT_RUN_DIR = Path(__file__).resolve().parent / ".stack"


def compile_package() -> None:
    """Our modules' bytecode, written as an installed package has it (pip compiles at install; an
    editable checkout under PYTHONDONTWRITEBYTECODE=1 would compile every module in every process)."""
    root = Path(__file__).resolve().parents[2]
    for package in ("replicator", "connectors"):
        compileall.compile_dir(str(root / package), quiet=1)


def stack_info(run_dir: str | Path | None = None, *, start: bool = True) -> StackInfo:
    """The benchmarks' local stack, started (or repaired) first by `replicator stack up`, which is
    idempotent. Its own run directory by default (tests/perf/.stack, git-ignored): the test suite
    takes .stack-test down and up again, which would kill a benchmark half-way."""
    path = Path(run_dir) if run_dir else DEFAULT_RUN_DIR
    compile_package()
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


def profile_top(path: Path, limit: int = 12, thread_marker: str = "ChangeApplier.run",
                thread_name: str = "applier") -> list[str]:
    """Self and inclusive shares of one thread's samples per function (py-spy raw stacks): the
    applier's main thread ("ChangeApplier.run") or its writer thread ("ChangeApplier._write")."""
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
        return [f"no samples of the {thread_name} thread"]
    lines = [f"{total} samples of the {thread_name} thread; by self time:", f"{'self %':>7} {'incl %':>7}  function"]
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
