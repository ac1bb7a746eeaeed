"""Apply throughput beside its two physical limits, on the same messages and rows, in one run.

    .venv/bin/python tests/perf/bench_apply.py --target pg|mariadb --events 200000 --rows 1000000 --runs 3

Setup (not timed): the seed table bench.w_seed of `--rows` rows on the target (kept between
invocations), `--events` real-shaped Debezium change events (≈60% updates, 25% inserts of new ids,
15% deletes, each delete followed by its tombstone) produced to a fresh single-partition topic
`<unique prefix>.bench.w`. Then per run, in this order:

  (a) limit: consume every message of the topic with confluent-kafka and orjson.loads its key and
      value, nothing else (from the partition's assignment to the last message);
  (b) limit: reset bench.w to the seed; write the same final state, computed in Python from the
      generated ops, by COPY into a temp table + one INSERT … ON CONFLICT DO UPDATE + one
      DELETE … USING (PostgreSQL) / LOAD DATA LOCAL INFILE into a temporary table + UPDATE … JOIN,
      INSERT … SELECT, DELETE … JOIN (MariaDB), in one transaction; its row hash is the expected one;
  (c) the real ChangeApplier in this process (a thread), fresh consumer group and no stored offsets
      for the topic, after resetting bench.w to the seed: from the partition's assignment (the group
      join is excluded, as in (a)) to the commit of the last batch; then bench.w must hash equal to
      the state (b) wrote, or the benchmark says WRONG and exits 1.

Events/s is always `--events` (change events, tombstones not counted) divided by the phase's seconds.
Each phase also prints the CPU seconds spent by this process, the broker and the target database
(2 cores: the sum says what bounds the phase). The last line printed is
`ratio_to_limit=<(c) events/s ÷ min((a), (b)) events/s>` (medians); the line before it says whether the
bars are met (PostgreSQL: ≥ 70% of the lower limit and ≥ 24,000 events/s; MariaDB: ≥ 60% of the
lower limit). `--profile FILE` adds one more applier run under py-spy (not in the medians) and
prints its hot spots.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apply_workload import SCHEMA, SHAPES, TABLE, Workload
from bench_support import (
    CpuMeter,
    Kafka,
    bench_config,
    maybe_profile,
    median_line,
    profile_top,
    quiet_heap,
    rss_kb,
    run_applier,
    say,
    stack_info,
    unique_prefix,
)
from bench_targets import MariaDBBench, PostgresBench, TableState, target_bench

from replicator.stack.launcher import StackInfo

BARS = {"pg": (0.70, 24_000.0), "mariadb": (0.60, 0.0)}


@dataclass
class Bench:
    args: argparse.Namespace
    info: StackInfo
    kafka: Kafka
    target: PostgresBench | MariaDBBench
    prefix: str
    topic: str
    messages: int = 0
    upserts: list[tuple[Any, ...]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    expected_rows: int = 0
    times: dict[str, list[float]] = field(default_factory=lambda: {"a": [], "b": [], "c": []})

    def config(self, group_suffix: str) -> Any:
        options = dict(option.split("=", 1) for option in self.args.kafka_option)
        return bench_config(self.info, self.args.target, self.prefix, f"{self.prefix}-apply-{group_suffix}",
                            batch_max_events=self.args.batch_max_events, kafka_options=options)[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("pg", "mariadb"), default="pg")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shape", choices=SHAPES, default="template",
                        help="template: this project's connector settings (source column types propagated; PG "
                             "transaction metadata); plain: Debezium's defaults")
    parser.add_argument("--batch-max-events", type=int, default=None, help="apply.batch_max_events (default: config)")
    parser.add_argument("--kafka-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a librdkafka option for the applier (kafka.options in its config), repeatable")
    parser.add_argument("--run-dir", default=None,
                        help="the local stack's run directory (default tests/perf/.stack; brought up if needed)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw output of one extra applier run")
    parser.add_argument("--profile-wall", action="store_true",
                        help="sample waits too (py-spy --idle): shares of wall time instead of CPU time")
    parser.add_argument("--reseed", action="store_true", help="rebuild bench.w_seed even if it is there")
    parser.add_argument("--keep", action="store_true", help="keep the topic and bench.w afterwards")
    parser.add_argument("--drop-seed", action="store_true", help="also drop the bench schema/database at the end")
    args = parser.parse_args()

    info = stack_info(args.run_dir)
    prefix = unique_prefix(args.target)
    bench = Bench(args, info, Kafka(info.bootstrap_servers), target_bench(info, args.target), prefix,
                  f"{prefix}.{SCHEMA}.{TABLE}")
    say(f"apply benchmark: target {args.target}, {args.events:,} events on {args.rows:,} rows, {args.runs} runs, "
        f"shape {args.shape}, topic {bench.topic}, applier kafka.options {args.kafka_option or 'none'}, "
        f"batch_max_events {args.batch_max_events or 'default'}")
    try:
        setup(bench)
        if not measure(bench):
            return 1
        return report(bench)
    finally:
        if not args.keep:
            bench.kafka.delete_topics([bench.topic, f"__debezium-heartbeat.{prefix}"])
            bench.target.clear_offsets(bench.topic)
            bench.target.drop_work(args.drop_seed)
        bench.target.close()


def setup(bench: Bench) -> None:
    args = bench.args
    started = time.monotonic()
    rebuilt = bench.target.prepare(args.rows, args.reseed)
    say(f"seed {SCHEMA}.w_seed: {'built' if rebuilt else 'reused'} ({time.monotonic() - started:.1f} s)")
    workload = Workload(args.target, bench.prefix, args.rows, args.events, shape=args.shape)
    bench.kafka.create_topic(bench.topic)
    bench.kafka.create_topic(f"__debezium-heartbeat.{bench.prefix}")
    broker = bench.info.processes["broker"].pid
    before = rss_kb(broker)
    # Every message is acknowledged (acks=all, idempotent). Tansu 0.6's ListOffsets(latest) answers
    # the base offset of the last record batch + 1, not the log end, so the count of acknowledged
    # messages is the end offset here; (a) checks it by consuming exactly that many.
    count, size, seconds = bench.kafka.produce(bench.topic, workload.messages_iter())
    after = rss_kb(broker)
    counts = workload.counts
    say(f"produced {count:,} messages ({counts['u']:,} u, {counts['c']:,} c, {counts['d']:,} d + tombstones), "
        f"{size / (count - counts['d']) / 1024:.2f} KiB per value on average, {seconds:.1f} s incl. generation"
        + (f"; broker RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB" if before and after else ""))
    bench.messages = count
    bench.upserts, bench.deletes = workload.final_rows()
    bench.expected_rows = workload.expected_count()
    say(f"final state: {len(bench.upserts):,} rows to upsert, {len(bench.deletes):,} keys to delete, "
        f"{bench.expected_rows:,} rows expected")


def measure(bench: Bench) -> bool:
    """Every run's (a), (b), (c); False when a result is wrong."""
    args, target = bench.args, bench.target
    db_name = "pg-target" if args.target == "pg" else "my-target"
    meter = CpuMeter({"bench": os.getpid(), "broker": bench.info.processes["broker"].pid,
                      "target-db": bench.info.processes[db_name].pid})
    expected: TableState | None = None
    for run in range(1, args.runs + 1):
        quiet_heap()
        meter.start()
        a = bench.kafka.consume_and_parse(bench.topic, bench.messages, f"{bench.prefix}-limit-{run}")
        cpu_a = meter.stop()

        for attempt in (1, 2):
            target.reset()
            meter.start()
            try:
                b = target.write_final(bench.upserts, bench.deletes)
                break
            except Exception as exc:  # e.g. MariaDB losing its own temp file under /tmp to a cleanup
                target.abandon()
                if attempt == 2:
                    raise
                say(f"   (b) failed ({exc!r}); once more after a reset")
        cpu_b = meter.stop()
        written = target.state()
        if written.rows != bench.expected_rows:
            say(f"WRONG: the limit (b) left {written.rows:,} rows, the workload expects {bench.expected_rows:,}")
            return False
        if expected is not None and written != expected:
            say(f"WRONG: run {run}'s (b) wrote {written}, run 1 wrote {expected}")
            return False
        expected = written

        target.reset()
        target.clear_offsets(bench.topic)
        config = bench.config(str(run))
        quiet_heap()
        meter.start()
        applied = run_applier(config, target, bench.topic, bench.messages)
        cpu_c = meter.stop()
        got = target.state()
        events = args.events
        say(f"run {run}: (a) {a:6.2f} s {events / a:9,.0f} ev/s | (b) {b:6.2f} s {events / b:9,.0f} ev/s | "
            f"(c) {applied.seconds:6.2f} s {events / applied.seconds:9,.0f} ev/s "
            f"({applied.batches} batches; {applied.seconds_with_startup:.2f} s incl. start and group join) | "
            f"bench.w {got}: {'correct' if got == expected else 'WRONG'}")
        say(f"       (a) {cpu_a}\n       (b) {cpu_b}\n       (c) {cpu_c} [wall incl. start and join]")
        if got != expected:
            say(f"WRONG: after the applier bench.w is {got}; expected {expected}")
            return False
        for name, seconds in (("a", a), ("b", b), ("c", applied.seconds)):
            bench.times[name].append(seconds)
    return True


def report(bench: Bench) -> int:
    args, events = bench.args, bench.args.events
    times = bench.times
    say("")
    say(median_line("(a) limit: consume + orjson.loads", times["a"], events))
    say(median_line("(b) limit: COPY/LOAD DATA temp + merge", times["b"], events))
    say(median_line("(c) ChangeApplier", times["c"], events))
    a_rate, b_rate, c_rate = (events / statistics.median(times[k]) for k in "abc")
    limit = min(a_rate, b_rate)
    ratio = c_rate / limit
    share, floor = BARS[args.target]

    if args.profile is not None:
        bench.target.reset()
        bench.target.clear_offsets(bench.topic)
        config = bench.config("profile")
        quiet_heap()
        with maybe_profile(args.profile, idle=args.profile_wall):
            applied = run_applier(config, bench.target, bench.topic, bench.messages)
        say(f"\nprofiled run (py-spy attached, {'wall clock' if args.profile_wall else 'CPU'} samples, not in the "
            f"medians): {applied.seconds:.2f} s, {events / applied.seconds:,.0f} ev/s; raw stacks in {args.profile}")
        if args.profile_wall:
            say("   (wall samples also cover the start, the group join and the wait after the last batch, "
                f"{applied.seconds_with_startup - applied.seconds:.1f} s or more, spent in ChangeConsumer.consume)")
        for line in profile_top(args.profile):
            say("   " + line)
        for line in profile_top(args.profile, thread_marker="ChangeApplier._write", thread_name="writer"):
            say("   " + line)

    say("")
    say(f"lower limit: {'(a) consume+parse' if a_rate <= b_rate else '(b) write'} at {limit:,.0f} events/s; "
        f"(c) = {c_rate:,.0f} events/s")
    checks = [f"{share:.0%} of the lower limit: {'met' if ratio >= share else 'NOT met'} ({ratio:.1%})"]
    if floor:
        checks.append(f"≥ {floor:,.0f} events/s: {'met' if c_rate >= floor else 'NOT met'} ({c_rate:,.0f})")
    say("bars: " + "; ".join(checks))
    say(f"ratio_to_limit={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
