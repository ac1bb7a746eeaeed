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
The last line printed is `ratio_to_limit=<(c) events/s ÷ min((a), (b)) events/s>` (medians); the line
before it says whether the bars are met (PostgreSQL: ≥ 70% of the lower limit and ≥ 24,000 events/s;
MariaDB: ≥ 60% of the lower limit). `--profile FILE` adds one more, untimed applier run under
py-spy and prints its hot spots.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from apply_workload import SCHEMA, SHAPES, TABLE, Workload
from bench_support import (
    Kafka,
    bench_config,
    maybe_profile,
    median_line,
    profile_top,
    rss_kb,
    run_applier,
    say,
    stack_info,
    target_bench,
    unique_prefix,
)

BARS = {"pg": (0.70, 24_000.0), "mariadb": (0.60, 0.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("pg", "mariadb"), default="pg")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shape", choices=SHAPES, default="template",
                        help="template: this project's connector settings (source types propagated; PG transaction "
                             "metadata); plain: Debezium defaults")
    parser.add_argument("--batch-max-events", type=int, default=None, help="apply.batch_max_events (default: config)")
    parser.add_argument("--run-dir", default=".stack-test", help="the local stack's run directory")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw output of one extra applier run")
    parser.add_argument("--reseed", action="store_true", help="rebuild bench.w_seed even if it is there")
    parser.add_argument("--keep", action="store_true", help="keep the topic and bench.w afterwards")
    parser.add_argument("--drop-seed", action="store_true", help="also drop the bench schema/database at the end")
    args = parser.parse_args()

    info = stack_info(args.run_dir)
    kafka = Kafka(info.bootstrap_servers)
    prefix = unique_prefix(args.target)
    topic = f"{prefix}.{SCHEMA}.{TABLE}"
    bench = target_bench(info, args.target)
    broker_pid = info.processes["broker"].pid if "broker" in info.processes else None
    say(f"apply benchmark: target {args.target}, {args.events:,} events on {args.rows:,} rows, {args.runs} runs, "
        f"shape {args.shape}, topic {topic}")
    try:
        started = time.monotonic()
        rebuilt = bench.prepare(args.rows, args.reseed)
        say(f"seed {SCHEMA}.w_seed: {'built' if rebuilt else 'reused'} ({time.monotonic() - started:.1f} s)")

        workload = Workload(args.target, prefix, args.rows, args.events, shape=args.shape)
        kafka.create_topic(topic)
        kafka.create_topic(f"__debezium-heartbeat.{prefix}")
        broker_before = rss_kb(broker_pid) if broker_pid else None
        count, size, seconds = kafka.produce(topic, workload.messages_iter())
        broker_after = rss_kb(broker_pid) if broker_pid else None
        high = kafka.high_watermark(topic)
        if high != count:
            raise RuntimeError(f"the topic holds {high} messages, we produced {count}")
        counts = workload.counts
        say(f"produced {count:,} messages ({counts['u']:,} u, {counts['c']:,} c, {counts['d']:,} d + tombstones), "
            f"{size / count / 1024:.2f} KiB per value on average, {seconds:.1f} s incl. generation"
            + (f"; broker RSS {broker_before / 1024:.0f} -> {broker_after / 1024:.0f} MiB"
               if broker_before and broker_after else ""))
        upserts, deletes = workload.final_rows()
        expected_rows = workload.expected_count()
        say(f"final state: {len(upserts):,} rows to upsert, {len(deletes):,} keys to delete, "
            f"{expected_rows:,} rows expected")

        results = measure(args, bench, kafka, info, prefix, topic, count, upserts, deletes, expected_rows)
        if results is None:
            return 1
        a_s, b_s, c_s = results
        return report(args, a_s, b_s, c_s, bench, kafka, info, prefix, topic, count)
    finally:
        if not args.keep:
            kafka.delete_topics([topic, f"__debezium-heartbeat.{prefix}"])
            bench.clear_offsets(topic)
            bench.drop_work(args.drop_seed)
        bench.close()


def measure(args: argparse.Namespace, bench, kafka: Kafka, info, prefix: str, topic: str, count: int,  # noqa: ANN001
            upserts, deletes, expected_rows: int) -> tuple[list[float], list[float], list[float]] | None:  # noqa: ANN001
    a_s: list[float] = []
    b_s: list[float] = []
    c_s: list[float] = []
    expected = None
    for run in range(1, args.runs + 1):
        a = kafka.consume_and_parse(topic, count, f"{prefix}-limit-{run}")
        a_s.append(a)

        bench.reset()
        b = bench.write_final(upserts, deletes)
        b_s.append(b)
        written = bench.state()
        if written.rows != expected_rows:
            say(f"WRONG: the limit (b) left {written.rows:,} rows, the workload expects {expected_rows:,}")
            return None
        if expected is None:
            expected = written
        elif written != expected:
            say(f"WRONG: run {run}'s (b) wrote {written}, run 1 wrote {expected}")
            return None

        bench.reset()
        bench.clear_offsets(topic)
        _, config = bench_config(info, args.target, prefix, f"{prefix}-apply-{run}",
                                 batch_max_events=args.batch_max_events)
        applied = run_applier(config, bench, topic, count)
        c_s.append(applied.seconds)
        got = bench.state()
        verdict = "correct" if got == expected else "WRONG"
        say(f"run {run}: (a) {a:6.2f} s {args.events / a:9,.0f} ev/s | (b) {b:6.2f} s {args.events / b:9,.0f} ev/s | "
            f"(c) {applied.seconds:6.2f} s {args.events / applied.seconds:9,.0f} ev/s "
            f"({applied.batches} batches, {applied.seconds_with_startup:.2f} s incl. start and group join) | "
            f"target {got}: {verdict}")
        if got != expected:
            say(f"WRONG: after the applier bench.w is {got}; expected {expected}")
            return None
    return a_s, b_s, c_s


def report(args: argparse.Namespace, a_s: list[float], b_s: list[float], c_s: list[float],  # noqa: PLR0917
           bench, kafka: Kafka, info, prefix: str, topic: str, count: int) -> int:  # noqa: ANN001
    events = args.events
    say("")
    say(median_line("(a) limit: consume + orjson.loads", a_s, events))
    say(median_line("(b) limit: COPY/LOAD DATA temp + merge", b_s, events))
    say(median_line("(c) ChangeApplier", c_s, events))
    a_rate, b_rate, c_rate = (events / statistics.median(s) for s in (a_s, b_s, c_s))
    limit = min(a_rate, b_rate)
    ratio = c_rate / limit
    share, floor = BARS[args.target]

    if args.profile is not None:
        bench.reset()
        bench.clear_offsets(topic)
        _, config = bench_config(info, args.target, prefix, f"{prefix}-apply-profile",
                                 batch_max_events=args.batch_max_events)
        with maybe_profile(args.profile):
            applied = run_applier(config, bench, topic, count)
        say(f"\nprofiled run (py-spy attached, not in the medians): {applied.seconds:.2f} s, "
            f"{events / applied.seconds:,.0f} ev/s; raw stacks in {args.profile}")
        for line in profile_top(args.profile):
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
