"""The applier's memory with a large backlog: `replicator apply` as its own process, RSS sampled.

    .venv/bin/python tests/perf/bench_apply_memory.py --target pg --events 2000000 --rows 1000000

Setup (not timed): bench.w reset to the seed of `--rows` rows; `--events` real-shaped Debezium change
events (the same generator and mix as bench_apply.py) produced to a fresh single-partition topic
before the applier starts, so the whole backlog waits in Kafka. Then `replicator -c <config> apply`
runs as a subprocess with a fresh consumer group and no stored offsets; its VmRSS is read from
/proc every `--interval` seconds until our stored next_offset reaches the end of the topic, then it
gets SIGTERM and must exit 0. The kernel's own peak (VmHWM) is read just before, so a spike
between two samples is not missed.

Result: peak RSS, the RSS over the backlog's progress (deciles: flat means bounded), events/s, and
the target checked against the expected final state (row count and an in-database hash of a copy
of the seed with the expected final rows written by COPY/LOAD DATA + merge). The broker keeps the
backlog in memory (Tansu, memory storage): the script checks MemAvailable first and shrinks the
backlog, saying so, if it would not fit with room to spare. Last line:
`peak_rss_mb=<n> ratio_to_limit=<peak / --limit-mb>`.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from apply_workload import SCHEMA, SHAPES, TABLE, Workload
from bench_support import (
    Kafka,
    bench_config,
    rss_kb,
    say,
    stack_info,
    unique_prefix,
)
from bench_targets import MariaDBBench, PostgresBench, target_bench

from replicator.stack.components import free_port

# Broker (Tansu, memory storage) RSS per change event, its tombstone and keys included: measured
# +12,535 MiB for 2M PG events and +11,342 MiB for 1.9M MariaDB events (template shape); plain is
# scaled by the value sizes (3.48 vs 6.15 KiB). Rounded up by ~3%.
BROKER_BYTES_PER_EVENT = {("pg", "template"): 6_800, ("mariadb", "template"): 6_500,
                          ("pg", "plain"): 4_000, ("mariadb", "plain"): 4_300}


def mem_available_kb() -> int:
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def fitting_events(wanted: int, target: str, shape: str, share: float) -> int:
    """The largest backlog (≤ wanted) whose messages the in-memory broker can hold within `share`
    of the memory available now."""
    budget = mem_available_kb() * 1024 * share
    return min(wanted, int(budget / BROKER_BYTES_PER_EVENT[(target, shape)]) // 100_000 * 100_000)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("pg", "mariadb"), default="pg")
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shape", choices=SHAPES, default="template")
    parser.add_argument("--interval", type=float, default=0.5, help="RSS sampling period, seconds")
    parser.add_argument("--limit-mb", type=float, default=300.0)
    parser.add_argument("--memory-share", type=float, default=0.7,
                        help="largest share of MemAvailable the broker may take for the backlog")
    parser.add_argument("--kafka-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a librdkafka option for the applier (kafka.options in its config), repeatable")
    parser.add_argument("--batch-max-events", type=int, default=None)
    parser.add_argument("--run-dir", default=None,
                        help="the local stack's run directory (default tests/perf/.stack; brought up if needed)")
    parser.add_argument("--no-verify", action="store_true", help="skip the final-state check (saves ~30 s)")
    parser.add_argument("--keep", action="store_true", help="keep the topic, tables and the applier's log")
    return parser.parse_args()


@dataclass
class Watch:
    """What was seen of the applier process while it worked through the backlog."""

    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (s since start, next_offset, RSS kB)
    first_commit: float | None = None
    peak_hwm_kb: int = 0
    failure: str | None = None


def watch(proc: subprocess.Popen[bytes], target: PostgresBench | MariaDBBench, topic: str, count: int, *,
          interval: float, started: float, log_path: Path) -> Watch:
    """Sample RSS and our stored offset until the backlog is applied; then SIGTERM, exit 0 expected."""
    seen = Watch()
    last_report = 0.0
    while True:
        time.sleep(interval)
        now = time.monotonic() - started
        if proc.poll() is not None:
            seen.failure = f"the applier exited {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}"
            return seen
        rss = rss_kb(proc.pid) or 0
        seen.peak_hwm_kb = max(seen.peak_hwm_kb, rss_kb(proc.pid, "VmHWM") or 0)
        offset = target.next_offset(topic) or 0
        seen.samples.append((now, offset, rss))
        if offset > 0 and seen.first_commit is None:
            seen.first_commit = now
        if now - last_report >= 15:
            last_report = now
            say(f"   {now:6.1f} s: next_offset {offset:,} of {count:,}, RSS {rss / 1024:.0f} MiB")
        if offset >= count:
            break
        if now > 3600:
            seen.failure = "not caught up within an hour"
            return seen
    seen.peak_hwm_kb = max(seen.peak_hwm_kb, rss_kb(proc.pid, "VmHWM") or 0)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(120)
    if code != 0:
        seen.failure = f"the applier exited {code} after SIGTERM:\n{log_path.read_text(errors='replace')[-3000:]}"
    return seen


def summarize(seen: Watch, events: int, count: int, interval: float, limit_mb: float) -> float:
    """Print throughput and the RSS profile; return the peak in MB (10^6 bytes)."""
    caught_up = seen.samples[-1][0]
    first = seen.first_commit or 0.0
    say(f"caught up {caught_up:.1f} s after start ({first:.1f} s to the first commit seen); "
        f"{events / caught_up:,.0f} events/s incl. start and group join, "
        f"{events / max(caught_up - first, 1e-9):,.0f} events/s from the first commit seen")
    say("RSS over the backlog (highest sample while applying each tenth of the messages, MiB):")
    marks = []
    for decile in range(10):
        low, high = count * decile / 10, count * (decile + 1) / 10
        window = [r for _, o, r in seen.samples if low <= o < high or (decile == 9 and o >= high)]
        marks.append(f"{decile * 10}-{decile * 10 + 10}%: {max(window) / 1024:.0f}" if window
                     else f"{decile * 10}-{decile * 10 + 10}%: -")
    say("   " + ", ".join(marks))
    peak_sampled = max(r for _, _, r in seen.samples)
    idle = [r for t, _, r in seen.samples if t < first] or [seen.samples[0][2]]
    say(f"RSS before the first commit (imports, connections, group join): {max(idle) / 1024:.0f} MiB")
    peak_mb = seen.peak_hwm_kb * 1024 / 1e6
    say(f"peak RSS: {peak_sampled / 1024:.0f} MiB sampled every {interval} s, {seen.peak_hwm_kb / 1024:.0f} MiB "
        f"= {peak_mb:.0f} MB VmHWM (the kernel's peak); limit {limit_mb:.0f} MB")
    return peak_mb


def main() -> int:
    args = parse_args()
    events = fitting_events(args.events, args.target, args.shape, args.memory_share)
    if events < args.events:
        say(f"NOTE: {args.events:,} events would not fit in the broker's memory with room to spare "
            f"(MemAvailable {mem_available_kb() / 1024**2:.1f} GiB); using the largest that does: {events:,}")
    if events <= 0:
        say("not enough memory for any backlog")
        return 1
    info = stack_info(args.run_dir)
    kafka = Kafka(info.bootstrap_servers)
    prefix = unique_prefix(f"mem{args.target}")
    topic = f"{prefix}.{SCHEMA}.{TABLE}"
    heartbeat = f"__debezium-heartbeat.{prefix}"
    target = target_bench(info, args.target)
    workdir = Path(tempfile.mkdtemp(prefix="bench-apply-memory-"))
    proc: subprocess.Popen[bytes] | None = None
    say(f"apply memory benchmark: target {args.target}, backlog {events:,} events on {args.rows:,} rows, "
        f"shape {args.shape}, topic {topic}, applier kafka.options {args.kafka_option or 'none'}")
    try:
        target.prepare(args.rows, reseed=False)
        target.reset()
        kafka.create_topic(topic)
        kafka.create_topic(heartbeat)
        workload = Workload(args.target, prefix, args.rows, events, shape=args.shape)
        count = produce_backlog(kafka, topic, workload, info.processes["broker"].pid)

        options = dict(option.split("=", 1) for option in args.kafka_option)
        text, _ = bench_config(info, args.target, prefix, f"{prefix}-apply", kafka_options=options,
                               batch_max_events=args.batch_max_events, metrics_port=free_port())
        config_path = workdir / "apply.yaml"
        config_path.write_text(text)
        log_path = workdir / "apply.log"
        target.clear_offsets(topic)
        cli = Path(sys.executable).with_name("replicator")
        with open(log_path, "wb") as log:
            started = time.monotonic()
            proc = subprocess.Popen([str(cli), "-c", str(config_path), "apply"], stdout=log, stderr=log)
        seen = watch(proc, target, topic, count, interval=args.interval, started=started, log_path=log_path)
        if seen.failure is not None:
            say(f"FAILED: {seen.failure}")
            return 1
        peak_mb = summarize(seen, events, count, args.interval, args.limit_mb)
        if not args.no_verify and not verify(target, workload):
            return 1
        say(f"bar: under {args.limit_mb:.0f} MB: {'met' if peak_mb < args.limit_mb else 'NOT met'}")
        say(f"peak_rss_mb={peak_mb:.0f} ratio_to_limit={peak_mb / args.limit_mb:.3f}")
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if not args.keep:
            kafka.delete_topics([topic, heartbeat])
            target.clear_offsets(topic)
            target.drop_work(seed=False)
            for path in workdir.glob("*"):
                path.unlink()
            workdir.rmdir()
        else:
            say(f"kept: topic {topic}, the applier's config and log in {workdir}")
        target.close()


def produce_backlog(kafka: Kafka, topic: str, workload: Workload, broker: int) -> int:
    before = rss_kb(broker) or 0
    step = max(workload.events // 4, 10_000)
    printed = [0]

    def progress(n: int) -> None:
        if n // step > printed[0]:
            printed[0] = n // step
            say(f"   produced {n:,} messages; broker RSS {(rss_kb(broker) or 0) / 1024:,.0f} MiB, "
                f"MemAvailable {mem_available_kb() / 1024**2:.1f} GiB")

    count, size, seconds = kafka.produce(topic, workload.messages_iter(), progress)
    say(f"backlog: {count:,} messages ({workload.counts}), {size / 1024**3:.2f} GiB of values, produced in "
        f"{seconds:.0f} s; broker RSS {before / 1024:,.0f} -> {(rss_kb(broker) or 0) / 1024:,.0f} MiB")
    return count


def verify(target: PostgresBench | MariaDBBench, workload: Workload) -> bool:
    """bench.w against a copy of the seed with the expected final rows written into it."""
    got = target.state()
    upserts, deletes = workload.final_rows()
    target.reset("w_expected")
    target.write_final(upserts, deletes, table="w_expected")
    expected = target.state("w_expected")
    if got.rows != workload.expected_count() or got != expected:
        say(f"WRONG: bench.w is {got}; expected {expected} ({workload.expected_count():,} rows)")
        return False
    say(f"bench.w {got}: correct")
    return True


if __name__ == "__main__":
    sys.exit(main())
