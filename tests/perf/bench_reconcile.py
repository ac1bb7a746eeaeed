"""Reconcile benchmark: `replicator reconcile` beside the in-database limit and reladiff, same data, same run.

    .venv/bin/python tests/perf/bench_reconcile.py --pair both --runs 3 [--threads 1] [--rows 1000000]

Data (kept between invocations, recognised by a table comment; `--reseed` rebuilds it): a wide table
of `--rows` rows × 8 mixed columns, the shape of bench_snapshot.py's `wide` (bigint PK, int, bigint,
numeric(12,3), ~40-char text, boolean, timestamp(6), timestamptz). PG pair: `reconbench.wide` in
database app of pg-source, copied to `reconbench.wide` of pg-target by `psql COPY … (FORMAT binary)`
piped into `psql COPY … FROM STDIN`; MariaDB pair: `reconbench.wide` on my-source, copied to
`reconbench.wide_my` of pg-target by `mariadb --batch --quick` piped into `psql COPY`. Each copy is
checked independently (PG: count and the sum of hashtextextended(row::text) on both sides; MariaDB:
count and column sums), then once by the reconciler (it must find the tables equal) before measuring.

Per run and pair, two cases:
* identical —
  - limit: the whole table's checksum in one query per side, both sides at once (two threads), with
    exactly the reconciler's canonical SQL (its own HashSide.checksum over the pair `describe` builds);
    the two checksums must be equal;
  - replicator: `replicator -c CONFIG reconcile --json FILE` as its own process, wall-clock; the
    report must say equal, every row counted on both sides, no difference;
  - reladiff 0.6.0 (its own venv, tests/perf/.reladiff-venv, created when missing): its CLI on the
    same two tables, key id, the 7 other columns, the same --threads, wall-clock; keys it reports;
* `--diffs` scattered differences (100: column d of ids chosen with a fixed seed gets one more
  character, on the target) — replicator and reladiff again; the reconciler must name every changed
  id as a "different" row and nothing else (`WRONG`, exit 1 otherwise); keys reladiff reports beyond
  them are counted as its false positives, changed ids it misses as its misses. Then the rows are
  restored (the comment marks the target dirty meanwhile, so an interrupted run recopies it).

Printed per run: seconds and rows/s of each tool, the reconciler's own time from its report, its
peak RSS (VmHWM, read while it runs) and CPU seconds (wait4), the databases' CPU seconds and the
load average; `--profile DIR` adds one more reconciler run per case under py-spy. Then the
medians and the bars: identical ≥ 0.60 of the limit and ≥ 1.5× reladiff; with differences ≥ 3×
reladiff. Last line: ratio_to_limit=<ours ÷ limit, identical case, the lower of the pairs measured>.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import psycopg
import yaml
from bench_snapshot import MY_WIDE, PG_FOR_MY_WIDE, WIDE, WIDE_TEXTS
from bench_support import rss_kb, say, stack_info
from psycopg import sql

from replicator.canonical import Checksum
from replicator.config import MigrationConfig, parse_config
from replicator.dialects import hash_side_for
from replicator.dialects.mysql import open_connection
from replicator.model import TableId
from replicator.reconcile.checker import describe
from replicator.reconcile.report import TableReport
from replicator.stack.launcher import Database, StackInfo

SCHEMA = "reconbench"
TEXT_WIDTH = WIDE_TEXTS["short"][1]  # the VARCHAR of its text, which is bench_snapshot's short one
COLUMNS = ("a", "b", "c", "d", "e", "f", "g")  # compared besides the key `id`
HERE = Path(__file__).resolve().parent
RELADIFF_VENV = HERE / ".reladiff-venv"
RELADIFF_PACKAGES = ("reladiff==0.6.0", "psycopg2-binary", "mysql-connector-python")
DIFF_SEED = 20261123
BARS = {"limit": 0.60, "reladiff identical": 1.5, "reladiff diffs": 3.0}


@dataclass(frozen=True)
class PairSpec:
    name: str  # pg | mariadb
    label: str  # PG→PG | MariaDB→PG
    source: Database
    target: Database
    target_table: str  # in SCHEMA on pg-target

    @property
    def source_table(self) -> str:
        return f"{SCHEMA}.wide"


# -- connections ---------------------------------------------------------------------------------
def pg(db: Database) -> psycopg.Connection[Any]:
    return psycopg.connect(host=db.host, port=db.port, user=db.user, password=db.password, dbname=db.database,
                           autocommit=True)


def my(db: Database, database: str | None = None) -> Any:
    return open_connection(host=db.host, port=db.port, user=db.user, password=db.password,
                           database=database or db.database, autocommit=True)


def my_rows(db: Database, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    conn = my(db)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def pg_comment(db: Database, table: str) -> str | None:
    with pg(db) as conn:
        row = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (table,)).fetchone()
    return None if row is None else row[0]


def set_pg_comment(db: Database, table: str, text: str) -> None:
    with pg(db) as conn:
        conn.execute(f"COMMENT ON TABLE {table} IS {sql.quote(text)}")


# -- the data ------------------------------------------------------------------------------------
def seed_text(rows: int) -> str:
    return f"reconbench seed rows={rows} stamp={uuid.uuid4().hex[:8]}"


def seeded(comment: str | None, rows: int) -> bool:
    return bool(comment) and str(comment).startswith(f"reconbench seed rows={rows} ")


def seed_source(spec: PairSpec, rows: int, reseed: bool) -> str:
    """The source table (built when missing, of another size, or --reseed); returns its comment."""
    db = spec.source
    if db.engine == "postgres":
        comment = pg_comment(db, spec.source_table)
        if seeded(comment, rows) and not reseed:
            return str(comment)
        say(f"seeding {spec.name} source {spec.source_table} ({rows:,} rows)")
        text = seed_text(rows)
        with pg(db) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            conn.execute(f"DROP TABLE IF EXISTS {spec.source_table}")
            conn.execute(f"CREATE TABLE {spec.source_table} ({WIDE})")
            conn.execute(f"INSERT INTO {spec.source_table} SELECT g, g % 1000, g * 7, g / 7.0,"
                         " md5(g::text) || ' row ' || g, g % 2 = 0, '2024-01-01'::timestamp + g * interval '1 s',"
                         " '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 ms'"
                         f" FROM generate_series(1, {rows}) g")
            conn.execute(f"VACUUM ANALYZE {spec.source_table}")
            conn.execute(f"COMMENT ON TABLE {spec.source_table} IS {sql.quote(text)}")
        return text
    found = my_rows(db, "SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
                        " AND TABLE_NAME = 'wide'", (SCHEMA,))
    if found and seeded(found[0][0], rows) and not reseed:
        return str(found[0][0])
    say(f"seeding {spec.name} source {spec.source_table} ({rows:,} rows)")
    text = seed_text(rows)
    conn = my(db)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {SCHEMA}")
            cur.execute(f"DROP TABLE IF EXISTS {spec.source_table}")
            cur.execute(f"CREATE TABLE {spec.source_table} ({MY_WIDE.format(w=TEXT_WIDTH)}) ENGINE=InnoDB"
                        " COMMENT=%s", (text,))
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(f"INSERT INTO {spec.source_table} SELECT seq, seq % 1000, seq * 7, seq / 7.0,"
                        " CONCAT(MD5(seq), ' row ', seq), seq % 2 = 0,"
                        " TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND,"
                        " TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 1000 MICROSECOND"
                        f" FROM seq_1_to_{rows}")
            cur.execute(f"ANALYZE TABLE {spec.source_table}")
            cur.fetchall()
    finally:
        conn.close()
    return text


def copy_command(spec: PairSpec) -> str:
    """The raw pipe from the source table into the (empty) target table."""
    src, dst = spec.source, spec.target
    into = (f"PGPASSWORD={shlex.quote(dst.password or '')} psql -X -q -v ON_ERROR_STOP=1 -h {dst.host} -p {dst.port}"
            f" -U {dst.user} -d {dst.database}")
    if src.engine == "postgres":
        return (f"set -o pipefail; PGPASSWORD={shlex.quote(src.password or '')} psql -X -q -h {src.host}"
                f" -p {src.port} -U {src.user} -d {src.database}"
                f" -c \"COPY {spec.source_table} TO STDOUT (FORMAT binary)\""
                f" | {into} -c \"COPY {SCHEMA}.{spec.target_table} FROM STDIN (FORMAT binary)\"")
    return (f"set -o pipefail; MYSQL_PWD={shlex.quote(src.password or '')} mariadb --batch --quick"
            f" --skip-column-names -h {src.host} -P {src.port} -u {src.user}"
            f" -e \"SET time_zone = '+00:00'; SELECT id, a, b, c, d, e, f, CONCAT(g, '+00') FROM {spec.source_table}"
            f" ORDER BY id\" | {into} -c \"COPY {SCHEMA}.{spec.target_table} FROM STDIN\"")


def digest(spec: PairSpec, side: str) -> tuple[Decimal, ...]:
    """Independent of the reconciler: PG→PG count and sum of hashtextextended(row::text) (same DDL on
    both sides); MariaDB→PG count and column sums, timestamps as epoch seconds (exact decimals)."""
    db = spec.source if side == "source" else spec.target
    table = spec.source_table if side == "source" else f"{SCHEMA}.{spec.target_table}"
    if spec.source.engine == "postgres":
        query = f"SELECT count(*), sum(hashtextextended(t::text, 0)) FROM {table} t"
    elif db.engine == "postgres":
        query = (f"SELECT count(*), sum(id), sum(a + b + c + length(d) + e::int), sum(extract(epoch FROM f)),"
                 f" sum(extract(epoch FROM g)) FROM {table}")
    else:
        query = (f"SELECT COUNT(*), SUM(id), SUM(a + b + c + CHAR_LENGTH(d) + e), SUM(UNIX_TIMESTAMP(f)),"
                 f" SUM(UNIX_TIMESTAMP(g)) FROM {table}")
    if db.engine == "postgres":
        with pg(db) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            row = conn.execute(query).fetchone()
    else:
        conn = my(db)
        try:
            with conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
                cur.execute(query)
                row = cur.fetchone()
        finally:
            conn.close()
    assert row is not None
    return tuple(Decimal(v or 0) for v in row)


def copy_to_target(spec: PairSpec, comment: str) -> None:
    ddl = WIDE if spec.source.engine == "postgres" else PG_FOR_MY_WIDE.format(w=TEXT_WIDTH)
    table = f"{SCHEMA}.{spec.target_table}"
    say(f"copying {spec.name} source {spec.source_table} to target {table}")
    with pg(spec.target) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ({ddl})")
    started = time.monotonic()
    done = subprocess.run(["bash", "-c", copy_command(spec)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the copy failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    with pg(spec.target) as conn:
        conn.execute(f"VACUUM ANALYZE {table}")
    say(f"   copied in {time.monotonic() - started:.1f} s")
    source, target = digest(spec, "source"), digest(spec, "target")
    if source != target:
        say(f"WRONG: the copy of {spec.source_table} differs (source {source}, target {target})")
        sys.exit(1)
    set_pg_comment(spec.target, table, comment)


def prepare_data(spec: PairSpec, rows: int, reseed: bool) -> None:
    comment = seed_source(spec, rows, reseed)
    if pg_comment(spec.target, f"{SCHEMA}.{spec.target_table}") != comment:  # absent, stale, or left dirty
        copy_to_target(spec, comment)


def change_rows(spec: PairSpec, ids: list[int], *, restore: bool) -> None:
    """Column d of `ids` on the target gets one more character ('*'), or loses it again (exactly the
    seeded value back). The table comment says 'dirty' in between, so an interrupted run recopies."""
    table = f"{SCHEMA}.{spec.target_table}"
    with pg(spec.target) as conn:
        if not restore:
            clean = pg_comment(spec.target, table)
            conn.execute(f"COMMENT ON TABLE {table} IS {sql.quote(f'dirty: {clean}')}")
            done = conn.execute(f"UPDATE {table} SET d = d || '*' WHERE id = ANY(%s)", (ids,))
        else:
            done = conn.execute(f"UPDATE {table} SET d = left(d, -1) WHERE id = ANY(%s) AND right(d, 1) = '*'",
                                (ids,))
            dirty = pg_comment(spec.target, table) or ""
            conn.execute(f"COMMENT ON TABLE {table} IS {sql.quote(dirty.removeprefix('dirty: '))}")
    if done.rowcount != len(ids):
        raise RuntimeError(f"{'restored' if restore else 'changed'} {done.rowcount} rows, not {len(ids)}")


# -- config --------------------------------------------------------------------------------------
def config_text(info: StackInfo, spec: PairSpec, workers: int) -> str:
    """The stack's example config for the engine pair, on our table, with a reconcile section."""
    name = "pg-to-pg" if spec.name == "pg" else "mariadb-to-pg"
    raw = yaml.safe_load((info.run_dir / "configs" / f"{name}.yaml").read_text())
    if spec.source.engine == "mysql":
        raw["source"]["database"] = SCHEMA
    raw["tables"] = {"include": [spec.source_table]}
    if spec.target_table != "wide":
        raw["tables"]["rename"] = {spec.source_table: f"{SCHEMA}.{spec.target_table}"}
    raw["reconcile"] = {"workers": workers, "chunk_rows": 100_000, "chunk_seconds": 0.5, "leaf_rows": 2000,
                        "max_reported": 1000}
    return yaml.safe_dump(raw, sort_keys=False)


# -- timed processes -----------------------------------------------------------------------------
_TICKS = os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds spent by database servers during a phase: a server's own ticks and those of its
    reaped children (PostgreSQL's postmaster reaps the backends of connections that ended) plus its
    live descendants' ticks, from /proc. (bench_support.ServerCpu misses backends that end during the
    phase: here every tool's connections do.)"""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self._start: dict[str, float] = {}

    @staticmethod
    def _stats() -> dict[int, tuple[int, int, int]]:
        """pid -> (parent pid, own ticks, reaped children's ticks)."""
        stats: dict[int, tuple[int, int, int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                    fields = handle.read().rpartition(")")[2].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
        return stats

    def _sample(self) -> dict[str, float]:
        stats = self._stats()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        totals: dict[str, float] = {}
        for name, root in self.roots.items():
            ticks = stats[root][2] if root in stats else 0
            todo = [root]
            while todo:
                pid = todo.pop()
                if pid in stats:
                    ticks += stats[pid][1]
                    todo.extend(children.get(pid, ()))
            totals[name] = ticks / _TICKS
        return totals

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> str:
        end = self._sample()
        return "db cpu s: " + ", ".join(f"{name} {end[name] - self._start[name]:.1f}" for name in self.roots)


@dataclass
class Timed:
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    peak_kb: int  # the process's peak RSS (VmHWM)
    cpu_s: float  # user + system of the process
    servers: str = ""  # the databases' CPU seconds during it


def run_timed(command: list[str], meter: ServerCpu) -> Timed:
    """Wall-clock of a subprocess from its start to its exit; its peak RSS (VmHWM, read every 20 ms
    while it runs: wait4's ru_maxrss would count the pages of this process it was forked from) and
    its CPU seconds (wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        meter.start()
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=out, stderr=err)
        peak = [0]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_kb(proc.pid, "VmHWM") or 0)
                done.wait(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        done.set()
        watcher.join()
        servers = meter.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Timed(seconds, proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                     peak[0], usage.ru_utime + usage.ru_stime, servers)


@dataclass
class OurRun:
    timed: Timed
    report: dict[str, Any]
    different: set[int]
    other: int  # missing + extra rows, and different rows beyond the listed ones

    @property
    def table(self) -> dict[str, Any]:
        return dict(self.report["tables"][0])


def run_ours(config: Path, meter: ServerCpu, options: tuple[str, ...] = ()) -> OurRun:
    report_file = config.with_name(f"report-{uuid.uuid4().hex[:6]}.json")
    cli = str(Path(sys.executable).with_name("replicator"))
    timed = run_timed([cli, "-c", str(config), "reconcile", *options, "--json", str(report_file)], meter)
    if timed.returncode not in (0, 1) or not report_file.exists():
        raise RuntimeError(f"replicator reconcile failed ({timed.returncode}):\n{timed.stdout}\n{timed.stderr}")
    report = orjson.loads(report_file.read_bytes())
    report_file.unlink()
    table = report["tables"][0]
    different = {int(r["key"]["id"]) for r in table["rows"] if r["kind"] == "different"}
    listed = sum(1 for r in table["rows"] if r["kind"] == "different")
    other = table["counts"]["missing"] + table["counts"]["extra"] + table["counts"]["different"] - listed
    other += listed - len(different)
    return OurRun(timed, report, different, other)


def ensure_reladiff() -> Path:
    exe = RELADIFF_VENV / "bin" / "reladiff"
    if exe.exists():
        return exe
    say(f"creating {RELADIFF_VENV} with {' '.join(RELADIFF_PACKAGES)}")
    subprocess.run([sys.executable, "-m", "venv", str(RELADIFF_VENV)], check=True)
    subprocess.run([str(RELADIFF_VENV / "bin" / "pip"), "install", "-q", *RELADIFF_PACKAGES], check=True)
    return exe


def uri(db: Database, database: str) -> str:
    scheme = "postgresql" if db.engine == "postgres" else "mysql"
    return f"{scheme}://{quote(db.user, safe='')}:{quote(db.password or '', safe='')}@{db.host}:{db.port}/{database}"


@dataclass
class PeerRun:
    timed: Timed
    keys: set[int]  # keys of the rows it reports (- and + lines)


def run_reladiff(exe: Path, spec: PairSpec, threads: int, meter: ServerCpu) -> PeerRun:
    if spec.source.engine == "postgres":
        source = [uri(spec.source, spec.source.database), spec.source_table]
    else:
        source = [uri(spec.source, SCHEMA), "wide"]
    target = [uri(spec.target, spec.target.database), f"{SCHEMA}.{spec.target_table}"]
    columns = [arg for c in COLUMNS for arg in ("-c", c)]
    timed = run_timed([str(exe), *source, *target, "-k", "id", *columns, "-j", str(threads)], meter)
    if timed.returncode != 0:
        raise RuntimeError(f"reladiff failed ({timed.returncode}):\n{timed.stdout[-2000:]}\n{timed.stderr[-3000:]}")
    keys: set[int] = set()
    for line in timed.stdout.splitlines():  # "- ('123', 'a', …)" / "+ ('123', …)"
        if line[:2] in ("- ", "+ "):
            first = line[2:].lstrip("(").split(",", 1)[0].strip().strip("'\"")
            keys.add(int(first))
    return PeerRun(timed, keys)


# -- the limit -----------------------------------------------------------------------------------
def run_limit(config: MigrationConfig, meter: ServerCpu) -> tuple[float, Checksum, Checksum, str]:
    """The reconciler's own whole-table checksum query, one per side, both at once; seconds from
    submitting both to having both results (connections opened before)."""
    source, target = hash_side_for(config.source, "source"), hash_side_for(config.target, "target")
    try:
        table = TableId(SCHEMA, "wide")
        pair = describe(config, source, target, table, TableReport(table.qualified, "?"))
        if pair is None:
            raise RuntimeError("the reconciler cannot compare the table")
        with ThreadPoolExecutor(2) as pool:
            meter.start()
            started = time.monotonic()
            first = pool.submit(source.checksum, pair.source, None, None)
            second = pool.submit(target.checksum, pair.target, None, None)
            a, b = first.result(), second.result()
            seconds = time.monotonic() - started
            servers = meter.stop()
    finally:
        source.close()
        target.close()
    return seconds, a, b, servers


# -- py-spy ---------------------------------------------------------------------------------------
def profile_ours(config: Path, out: Path, options: tuple[str, ...] = (), rate: int = 200) -> list[str]:
    """One more `replicator reconcile` under py-spy (wall clock: waits sampled too), raw stacks to
    `out`; returns where each thread's time went, by the deepest replicator frame of each sample."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        raise RuntimeError(f"{exe} not found: .venv/bin/pip install py-spy")
    cli = str(Path(sys.executable).with_name("replicator"))
    done = subprocess.run([str(exe), "record", "--idle", "--threads", "--rate", str(rate), "--format", "raw",
                           "--output", str(out), "--", cli, "-c", str(config), "reconcile", *options],
                          capture_output=True, text=True, check=False)
    if not out.exists():
        raise RuntimeError(f"py-spy failed:\n{done.stdout}\n{done.stderr}")
    threads: dict[str, dict[str, int]] = {}
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        name = frames[0].partition(": ")[2] or "(not yet named)"
        ours = [f for f in frames[1:] if "replicator/" in f]
        if not ours:
            key = "(outside replicator code: interpreter start, idle pool thread)"
        elif ours[-1].startswith("<module>"):
            key = "(imports)"
        else:
            key = re.sub(r":\d+\)$", ")", ours[-1])
        by_key = threads.setdefault(name.rstrip("_0123456789"), {})
        by_key[key] = by_key.get(key, 0) + int(count)
    lines = [f"py-spy {out} ({rate} samples/s, wall clock), by the deepest replicator frame:"]
    for name, by_key in threads.items():
        total = sum(by_key.values())
        lines.append(f"   thread {name}: {total / rate:.2f} s")
        for key, n in sorted(by_key.items(), key=lambda kv: -kv[1])[:8]:
            lines.append(f"      {n / rate:6.2f} s {100 * n / total:5.1f}%  {key}")
    return lines


# -- the measurement -----------------------------------------------------------------------------
@dataclass
class Figures:
    limit: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)
    ours_diff: list[float] = field(default_factory=list)
    peer_diff: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    cpu_diff: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    peer_false: list[int] = field(default_factory=list)  # keys reladiff reported beyond the changed ones
    peer_missed: list[int] = field(default_factory=list)
    ours_false: list[int] = field(default_factory=list)  # rows it reported beyond the changed ones
    inner: list[float] = field(default_factory=list)  # the report's own seconds (after start-up), identical
    inner_diff: list[float] = field(default_factory=list)


def rate(rows: int, seconds: float) -> str:
    return f"{seconds:6.2f} s {rows / seconds:9,.0f} rows/s"


def wrong(text: str) -> None:
    say(f"WRONG: {text}")
    sys.exit(1)


def check_equal(run: OurRun, rows: int, what: str) -> None:
    table = run.table
    if table["state"] != "equal" or table["source_rows"] != rows or table["target_rows"] != rows \
            or sum(table["counts"].values()):
        wrong(f"{what}: the reconciler reports {table['state']} on identical data: {table['counts']},"
              f" rows {table['source_rows']}/{table['target_rows']}, chunks {table['chunks']},"
              f" mismatched {table['mismatched_chunks']}, false alarms {table['false_alarms']},"
              f" first rows {table['rows'][:3]}, error {table.get('error')}")


def describe_ours(run: OurRun, rows: int) -> str:
    t = run.table
    return (f"{rate(rows, run.timed.seconds)} (report {t['seconds']:.2f} s; {t['chunks']} chunks, "
            f"{t['mismatched_chunks']} mismatched, {t['false_alarms']} false alarms; peak RSS "
            f"{run.timed.peak_kb / 1024:.0f} MB, cpu {run.timed.cpu_s:.1f} s)")


def measure_pair(info: StackInfo, spec: PairSpec, args: argparse.Namespace, reladiff: Path | None) -> Figures:
    rows = args.rows
    prepare_data(spec, rows, args.reseed)
    work = Path(tempfile.mkdtemp(prefix="reconbench-"))
    config_path = work / f"{spec.name}-to-pg.yaml"
    text = config_text(info, spec, args.threads)
    config_path.write_text(text)
    config = parse_config(text, {}, origin=str(config_path))
    options = tuple(args.reconcile_option)
    meter = ServerCpu({"source": info.processes[spec.source.name].pid, "target": info.processes[spec.target.name].pid})
    say(f"== {spec.label}: {SCHEMA}.wide, {rows:,} rows, threads {args.threads}, config {config_path}")
    check = run_ours(config_path, meter, options)  # once, before measuring: the copy is identical
    check_equal(check, rows, "check of the copy")
    say(f"   check of the copy by the reconciler: equal, {check.timed.seconds:.2f} s")
    ids = sorted(random.Random(DIFF_SEED).sample(range(1, rows + 1), args.diffs))
    figures = Figures()
    for run in range(1, args.runs + 1):
        load = os.getloadavg()
        seconds, a, b, servers = run_limit(config, meter)
        if a != b or a.rows != rows:
            wrong(f"the limit's checksums differ on identical data: source {a}, target {b}")
        ours = run_ours(config_path, meter, options)
        check_equal(ours, rows, f"run {run}")
        peer = run_reladiff(reladiff, spec, args.threads, meter) if reladiff else None
        figures.limit.append(seconds)
        figures.ours.append(ours.timed.seconds)
        figures.peaks.append(ours.timed.peak_kb)
        figures.cpu.append(ours.timed.cpu_s)
        figures.inner.append(ours.table["seconds"])
        say(f"run {run} identical (load {load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end):")
        say(f"   limit       {rate(rows, seconds)}  [{servers}]")
        say(f"   replicator  {describe_ours(ours, rows)}  [{ours.timed.servers}]")
        line = f"   ours/limit {seconds / ours.timed.seconds:.3f}"
        if peer is not None:
            figures.peer.append(peer.timed.seconds)
            figures.peer_false.append(len(peer.keys))
            say(f"   reladiff    {rate(rows, peer.timed.seconds)} ({len(peer.keys)} keys reported; peak RSS "
                f"{peer.timed.peak_kb / 1024:.0f} MB, cpu {peer.timed.cpu_s:.1f} s)  [{peer.timed.servers}]")
            line += f", ours/reladiff {peer.timed.seconds / ours.timed.seconds:.2f}x"
        say(line)
        figures.loads += [load[0], os.getloadavg()[0]]

        change_rows(spec, ids, restore=False)
        try:
            load = os.getloadavg()
            ours = run_ours(config_path, meter, options)
            peer = run_reladiff(reladiff, spec, args.threads, meter) if reladiff else None
        finally:
            change_rows(spec, ids, restore=True)
        t = ours.table
        figures.ours_false.append(len(ours.different - set(ids)) + ours.other)
        if ours.different != set(ids) or ours.other or t["state"] != "different":
            wrong(f"run {run} with {args.diffs} differences: the reconciler named {len(ours.different)} of them"
                  f" ({len(set(ids) - ours.different)} missed, {len(ours.different - set(ids))} others),"
                  f" counts {t['counts']}, state {t['state']}")
        bad_columns = [r for r in t["rows"] if [c["column"] for c in r["columns"]] != ["d"]]
        if bad_columns:
            wrong(f"run {run}: rows reported with columns other than d: {bad_columns[:3]}")
        figures.ours_diff.append(ours.timed.seconds)
        figures.cpu_diff.append(ours.timed.cpu_s)
        figures.peaks.append(ours.timed.peak_kb)
        figures.inner_diff.append(t["seconds"])
        say(f"run {run} {args.diffs} diffs (load {load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end):")
        say(f"   replicator  {describe_ours(ours, rows)}; {len(ours.different)} named  [{ours.timed.servers}]")
        if peer is not None:
            false, missed = peer.keys - set(ids), set(ids) - peer.keys
            figures.peer_diff.append(peer.timed.seconds)
            figures.peer_false[-1] += len(false)
            figures.peer_missed.append(len(missed))
            say(f"   reladiff    {rate(rows, peer.timed.seconds)} ({len(peer.keys)} keys reported, {len(false)}"
                f" beyond the changed ones, {len(missed)} missed; peak RSS {peer.timed.peak_kb / 1024:.0f} MB,"
                f" cpu {peer.timed.cpu_s:.1f} s)  [{peer.timed.servers}]")
            say(f"   ours/reladiff {peer.timed.seconds / ours.timed.seconds:.2f}x")
        figures.loads += [load[0], os.getloadavg()[0]]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        for line in profile_ours(config_path, args.profile / f"{spec.name}-identical.raw", options):
            say(line)
        change_rows(spec, ids, restore=False)
        try:
            lines = profile_ours(config_path, args.profile / f"{spec.name}-diffs.raw", options)
        finally:
            change_rows(spec, ids, restore=True)
        for line in lines:
            say(line)
    return figures


def runs_text(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def summary(spec: PairSpec, figures: Figures, rows: int, diffs: int) -> float:
    med = statistics.median
    limit, ours, ours_diff = med(figures.limit), med(figures.ours), med(figures.ours_diff)
    say(f"== {spec.label}: medians of {len(figures.ours)} runs ({rows:,} rows; load average "
        f"{min(figures.loads):.2f}-{max(figures.loads):.2f})")
    say(f"identical   limit       {rate(rows, limit)}   (runs {runs_text(figures.limit)} s)")
    say(f"identical   replicator  {rate(rows, ours)}   (runs {runs_text(figures.ours)} s;"
        f" cpu {med(figures.cpu):.1f} s; its report's own time {med(figures.inner):.2f} s, after start-up:"
        f" {limit / med(figures.inner):.3f} of the limit)")
    ratio = limit / ours
    bars = [f"ours/limit {ratio:.3f} (bar ≥ {BARS['limit']:.2f}: {'met' if ratio >= BARS['limit'] else 'NOT met'})"]
    if figures.peer:
        peer = med(figures.peer)
        x = peer / ours
        say(f"identical   reladiff    {rate(rows, peer)}   (runs {runs_text(figures.peer)} s)")
        bars.append(f"ours/reladiff {x:.2f}x (bar ≥ {BARS['reladiff identical']}x: "
                    f"{'met' if x >= BARS['reladiff identical'] else 'NOT met'})")
    say(f"identical   {'; '.join(bars)}")
    say(f"{diffs} diffs   replicator  {rate(rows, ours_diff)}   (runs {runs_text(figures.ours_diff)} s;"
        f" cpu {med(figures.cpu_diff):.1f} s; report's own time {med(figures.inner_diff):.2f} s); every difference"
        f" named in every run, false positives: {max(figures.ours_false)}")
    if figures.peer_diff:
        peer_diff = med(figures.peer_diff)
        x = peer_diff / ours_diff
        say(f"{diffs} diffs   reladiff    {rate(rows, peer_diff)}   (runs {runs_text(figures.peer_diff)} s);"
            f" false positives (both cases): {max(figures.peer_false)}, missed: {max(figures.peer_missed)}")
        say(f"{diffs} diffs   ours/reladiff {x:.2f}x (bar ≥ {BARS['reladiff diffs']}x: "
            f"{'met' if x >= BARS['reladiff diffs'] else 'NOT met'})")
    say(f"replicator peak RSS {max(figures.peaks) / 1024:.0f} MB")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=("pg", "mariadb", "both"), default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--diffs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="reconcile.workers and reladiff --threads")
    parser.add_argument("--reseed", action="store_true", help="rebuild the source tables and recopy them")
    parser.add_argument("--no-reladiff", action="store_true", help="leave reladiff out (faster while developing)")
    parser.add_argument("--reconcile-option", action="append", default=[], metavar="OPTION",
                        help="an option for `replicator reconcile`, as --reconcile-option=--no-anchor; repeatable")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="after the runs, one more reconciler run per case under py-spy (raw stacks in DIR)")
    parser.add_argument("--run-dir", default=None)
    args = parser.parse_args()
    info = stack_info(args.run_dir)
    target = info.database("pg-target")
    specs = {"pg": PairSpec("pg", "PG→PG", info.database("pg-source"), target, "wide"),
             "mariadb": PairSpec("mariadb", "MariaDB→PG", info.database("my-source"), target, "wide_my")}
    chosen = ["pg", "mariadb"] if args.pair == "both" else [args.pair]
    reladiff = None if args.no_reladiff else ensure_reladiff()
    say(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    results = {name: measure_pair(info, specs[name], args, reladiff) for name in chosen}
    ratios = {name: summary(specs[name], figures, args.rows, args.diffs) for name, figures in results.items()}
    say("ratio_to_limit per pair: " + ", ".join(f"{specs[n].label} {r:.3f}" for n, r in ratios.items()))
    say(f"ratio_to_limit={min(ratios.values()):.3f}")


if __name__ == "__main__":
    main()
