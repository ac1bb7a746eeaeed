"""Snapshot copy benchmark: `replicator snapshot` beside the raw pipe limit, same data, same run.

Data (on the source, kept between invocations, rebuilt with --reseed): `wide` — 1M rows × 8 mixed
columns (bigint PK, int, bigint, numeric(12,3), text, boolean, timestamp, timestamptz) — and `narrow`
— 2M rows (bigint PK, int). `--wide-text long` (the default): a ~140-char text, about 225 bytes a row
as text, the width of the shared reference's wide rows (baselines.md), in schema `snapbenchl`;
`--wide-text short`: a ~45-char text, about 131 bytes a row, the data of earlier sessions, in
schema `snapbench`.

Per run (target tables emptied before each, not timed):
* limit — PostgreSQL source: `psql -c "COPY t TO STDOUT (FORMAT binary)" | psql -c "COPY t FROM STDIN
  (FORMAT binary)"`, one pipe per table; MariaDB source: `mariadb --batch --quick -e "SELECT …" |
  psql -c "COPY t FROM STDIN"`. Both tables' pipes run at once and one after the other; the faster
  of the two is the limit;
* replicator — `replicator snapshot --restart` as its own process (workers from --workers), from an
  empty target schema: its data copy time (its "copied … in X s" line) and its whole run (schema
  translation, copy, indexes, hand-off); its peak RSS (VmHWM);
* with --peers — the peer doing the same whole job: `pgcopydb clone` (PG source; 2 table and 2 index
  jobs) or `pgloader` (MariaDB source; its defaults), installed from Debian's packages if missing.
The result is checked: row count and an in-database hash of every row equal on both sides
(`WRONG` and exit 1 otherwise). Medians of --runs; last line: ratio_to_limit=<limit rate ÷ ours>.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml
from bench_support import rss_kb, say, stack_info

from replicator.dialects.mysql import open_connection
from replicator.stack.launcher import Database, StackInfo

# by --wide-text: the schema, the MySQL/MariaDB VARCHAR width of the wide table's text (and its
# PostgreSQL varchar), and that text on PostgreSQL and on MySQL/MariaDB ({n}: the row number)
WIDE_TEXTS = {"short": ("snapbench", 64, "md5({n}::text) || ' row ' || {n}", "CONCAT(MD5({n}), ' row ', {n})"),
              "long": ("snapbenchl", 160,
                       "md5({n}::text) || md5(({n} + 1)::text) || md5(({n} + 2)::text) || md5(({n} + 3)::text)"
                       " || ' row ' || {n}",
                       "CONCAT(MD5({n}), MD5({n} + 1), MD5({n} + 2), MD5({n} + 3), ' row ', {n})")}
SCHEMA, TEXT_WIDTH, PG_TEXT, MY_TEXT = WIDE_TEXTS["long"]  # the default; configure() sets them
WIDE = ("id bigint PRIMARY KEY, a int NOT NULL, b bigint, c numeric(12,3), d text, e boolean,"
        " f timestamp(6), g timestamptz")
NARROW = "id bigint PRIMARY KEY, v int"
TABLES = {"wide": (WIDE, 1_000_000), "narrow": (NARROW, 2_000_000)}
MY_WIDE = ("id BIGINT PRIMARY KEY, a INT NOT NULL, b BIGINT, c DECIMAL(12,3), d VARCHAR({w}), e TINYINT(1),"
           " f DATETIME(6), g TIMESTAMP(6) NULL")
MY_NARROW = "id BIGINT PRIMARY KEY, v INT"
PG_FOR_MY_WIDE = ("id bigint PRIMARY KEY, a int NOT NULL, b bigint, c numeric(12,3), d varchar({w}), e boolean,"
                  " f timestamp(6), g timestamptz")


def configure(wide_text: str) -> None:
    """The schema and the wide table's text of this invocation (--wide-text)."""
    global SCHEMA, TEXT_WIDTH, PG_TEXT, MY_TEXT
    SCHEMA, TEXT_WIDTH, PG_TEXT, MY_TEXT = WIDE_TEXTS[wide_text]


def pg(db: Database) -> psycopg.Connection[Any]:
    return psycopg.connect(host=db.host, port=db.port, user=db.user, password=db.password, dbname=db.database,
                           autocommit=True)


def my(db: Database) -> Any:
    return open_connection(host=db.host, port=db.port, user=db.user, password=db.password, database=db.database,
                           autocommit=True)


def seed_pg(db: Database, reseed: bool) -> None:
    with pg(db) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        for name, (ddl, rows) in TABLES.items():
            found = conn.execute(f"SELECT to_regclass('{SCHEMA}.{name}') IS NOT NULL").fetchone()
            count = conn.execute(f"SELECT count(*) FROM {SCHEMA}.{name}").fetchone() if found and found[0] else None
            if not reseed and count and count[0] == rows:
                continue
            say(f"seeding source {SCHEMA}.{name} ({rows:,} rows)")
            conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{name}")
            conn.execute(f"CREATE TABLE {SCHEMA}.{name} ({ddl})")
            if name == "wide":
                conn.execute(f"INSERT INTO {SCHEMA}.wide SELECT g, g % 1000, g * 7, g / 7.0,"
                             f" {PG_TEXT.format(n='g')}, g % 2 = 0, '2024-01-01'::timestamp + g * interval '1 s',"
                             " '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 ms'"
                             f" FROM generate_series(1, {rows}) g")
            else:
                conn.execute(f"INSERT INTO {SCHEMA}.narrow SELECT g, g % 100000 FROM generate_series(1, {rows}) g")
            conn.execute(f"VACUUM ANALYZE {SCHEMA}.{name}")


def seed_my(db: Database, reseed: bool) -> None:
    conn = my(db)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {SCHEMA}")
            for name, ddl in (("wide", MY_WIDE.format(w=TEXT_WIDTH)), ("narrow", MY_NARROW)):
                rows = TABLES[name][1]
                cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
                            " AND TABLE_NAME = %s", (SCHEMA, name))
                exists = cur.fetchone()[0]
                if exists and not reseed:
                    cur.execute(f"SELECT COUNT(*) FROM {SCHEMA}.{name}")
                    if cur.fetchone()[0] == rows:
                        continue
                say(f"seeding source {SCHEMA}.{name} ({rows:,} rows)")
                cur.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{name}")
                cur.execute(f"CREATE TABLE {SCHEMA}.{name} ({ddl}) ENGINE=InnoDB")
                if name == "wide":
                    cur.execute(f"INSERT INTO {SCHEMA}.wide SELECT seq, seq % 1000, seq * 7, seq / 7.0,"
                                f" {MY_TEXT.format(n='seq')}, seq % 2 = 0,"
                                " TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND,"
                                " TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 1000 MICROSECOND"
                                f" FROM seq_1_to_{rows}")
                else:
                    cur.execute(f"INSERT INTO {SCHEMA}.narrow SELECT seq, seq % 100000 FROM seq_1_to_{rows}")
    finally:
        conn.close()


MY_TARGET = {"wide": ("id BIGINT PRIMARY KEY, a INT NOT NULL, b BIGINT, c DECIMAL(12,3), d LONGTEXT, e TINYINT(1),"
                       " f DATETIME(6), g DATETIME(6)"),
             "narrow": "id BIGINT PRIMARY KEY, v INT"}


def my_sql(db: Database, *statements: str) -> None:
    conn = my(db)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def reset_target(db: Database, source_engine: str) -> None:
    if db.engine == "mysql":
        my_sql(db, f"DROP DATABASE IF EXISTS {SCHEMA}", f"CREATE DATABASE {SCHEMA}",
               *[f"CREATE TABLE {SCHEMA}.{name} ({ddl}) ENGINE=InnoDB" for name, ddl in MY_TARGET.items()])
        return
    with pg(db) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        for name, (pg_ddl, _) in TABLES.items():
            ddl = PG_FOR_MY_WIDE.format(w=TEXT_WIDTH) if source_engine == "mysql" and name == "wide" else pg_ddl
            conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{name}")
            conn.execute(f"CREATE TABLE {SCHEMA}.{name} ({ddl})")
        conn.execute("CREATE SCHEMA IF NOT EXISTS replicator")
        for state in ("snapshot_chunks", "snapshot_tables", "table_gates"):
            if conn.execute(f"SELECT to_regclass('replicator.{state}')").fetchone()[0]:
                column = "source_table"
                conn.execute(f"DELETE FROM replicator.{state} WHERE {column} LIKE '{SCHEMA}.%'")


def _has_state(db: Database, table: str) -> bool:
    conn = my(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'replicator' AND TABLE_NAME = %s",
                        (table,))
            return bool(cur.fetchall())
    finally:
        conn.close()


def pipe_command(source: Database, target: Database, name: str) -> str:
    def login(db: Database, port_flag: str, user_flag: str) -> str:
        return f"-h {db.host} {port_flag} {db.port} {user_flag} {db.user}"

    binary = " (FORMAT binary)" if source.engine == "postgres" and target.engine == "postgres" else ""
    if target.engine == "postgres":
        into = (f"PGPASSWORD={shlex.quote(target.password or '')} psql -X -q {login(target, '-p', '-U')}"
                f" -d {target.database} -c \"COPY {SCHEMA}.{name} FROM STDIN{binary}\"")
    else:
        into = (f"MYSQL_PWD={shlex.quote(target.password or '')} mariadb --local-infile=1 {login(target, '-P', '-u')}"
                f" -e \"SET time_zone = '+00:00'; LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE {SCHEMA}.{name}\"")
    if source.engine == "postgres":
        query = f"{SCHEMA}.{name}"
        if target.engine == "mysql" and name == "wide":  # the text MySQL reads: booleans as 0/1, UTC, no zone
            query = (f"(SELECT id, a, b, c, d, e::int, f, to_char(g AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
                     f" FROM {SCHEMA}.{name})")
        out = (f"PGPASSWORD={shlex.quote(source.password or '')} psql -X -q {login(source, '-p', '-U')}"
               f" -d {source.database} -c \"SET TimeZone = 'UTC'\" -c \"COPY {query} TO STDOUT{binary}\"")
    else:
        columns = "*" if name == "narrow" or target.engine == "mysql" else "id, a, b, c, d, e, f, CONCAT(g, '+00')"
        out = (f"MYSQL_PWD={shlex.quote(source.password or '')} mariadb --batch --quick --skip-column-names"
               f" {login(source, '-P', '-u')}"
               f" -e \"SET time_zone = '+00:00'; SELECT {columns} FROM {SCHEMA}.{name}\"")
    return f"set -o pipefail; {out} | {into}"


def raw_pipes(source: Database, target: Database, *, parallel: bool) -> float:
    reset_target(target, source.engine)
    env = dict(os.environ)
    started = time.monotonic()
    if parallel:
        procs = [subprocess.Popen(["bash", "-c", pipe_command(source, target, n)], env=env) for n in TABLES]
        codes = [p.wait() for p in procs]
    else:
        codes = [subprocess.run(["bash", "-c", pipe_command(source, target, n)], env=env, check=False).returncode
                 for n in TABLES]
    seconds = time.monotonic() - started
    if any(codes):
        raise RuntimeError(f"a raw pipe failed: {codes}")
    return seconds


def ensure_tool(name: str) -> str:
    """The peer's binary, installed from Debian's packages when missing (as root)."""
    import shutil

    found = shutil.which(name)
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", name], check=True, capture_output=True)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed and could not be installed")
    return found


def drop_target(target: Database) -> None:
    if target.engine == "mysql":
        my_sql(target, f"DROP DATABASE IF EXISTS {SCHEMA}",
               *[f"DELETE FROM replicator.{t} WHERE source_table LIKE '{SCHEMA}.%'"
                 for t in ("snapshot_chunks", "snapshot_tables", "table_gates") if _has_state(target, t)])
        return
    with pg(target) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        for state in ("snapshot_chunks", "snapshot_tables", "table_gates"):
            if conn.execute(f"SELECT to_regclass('replicator.{state}')").fetchone()[0]:
                conn.execute(f"DELETE FROM replicator.{state} WHERE source_table LIKE '{SCHEMA}.%'")


def uri(db: Database, database: str | None = None) -> str:
    scheme = "postgresql" if db.engine == "postgres" else "mysql"
    return f"{scheme}://{db.user}:{db.password or ''}@{db.host}:{db.port}/{database or db.database}"


def peer_target(target: Database) -> Database:
    """A fresh database `peerbench` on the target server for the peer (pgcopydb restores every schema
    of the source database, ours included)."""
    with pg(target) as conn:
        conn.execute("DROP DATABASE IF EXISTS peerbench WITH (FORCE)")
        conn.execute("CREATE DATABASE peerbench")
    return dataclasses.replace(target, database="peerbench")


def run_peer(source: Database, target: Database) -> float:
    """The peer doing the whole job (schema, data, indexes) end to end, into a fresh database:
    pgcopydb clone (PG source, 2 table and 2 index jobs) or pgloader (MariaDB source, its defaults).
    Seconds; the result is checked like ours."""
    target = peer_target(target)
    work = Path(tempfile.mkdtemp(prefix="snapbench-peer-"))
    if source.engine == "postgres":
        tool = ensure_tool("pgcopydb")
        filters = work / "filters.ini"
        filters.write_text(f"[include-only-schema]\n{SCHEMA}\n")
        command = [tool, "clone", "--source", uri(source), "--target", uri(target), "--table-jobs", "2",
                   "--index-jobs", "2", "--filters", str(filters), "--dir", str(work / "run"), "--no-owner",
                   "--no-acl", "--skip-extensions", "--not-consistent"]
    else:
        tool = ensure_tool("pgloader")
        script = work / "load.pgl"  # only the two tables (our watermark table's DEFAULT trips pgloader 3.6)
        script.write_text(f"LOAD DATABASE FROM {uri(source, SCHEMA)} INTO {uri(target)}\n"
                          "INCLUDING ONLY TABLE NAMES MATCHING 'wide', 'narrow';\n")
        command = [tool, str(script)]
    started = time.monotonic()
    # a session of its own: pgcopydb signals its whole process group when it ends, which was us
    done = subprocess.run(command, capture_output=True, text=True, check=False, start_new_session=True)
    seconds = time.monotonic() - started
    if done.returncode != 0 or "FATAL" in done.stdout + done.stderr:  # pgloader can fail and exit 0
        raise RuntimeError(f"{command[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    check(source, target)
    return seconds


def config_file(info: StackInfo, source: Database, target: Database, workers: int, chunk_rows: int) -> Path:
    prefix = f"{SCHEMA}{source.engine[:2]}{target.engine[:2]}"
    config = {
        "source": {"engine": source.engine, "host": source.host, "port": source.port,
                   "database": SCHEMA if source.engine == "mysql" else source.database,
                   "user": source.user, "password": source.password},
        "target": {"engine": target.engine, "host": target.host, "port": target.port, "database": target.database,
                   "user": target.user, "password": target.password},
        "kafka": {"bootstrap_servers": info.bootstrap_servers, "topic_prefix": prefix},
        "connect": {"url": info.connect_url, "ready_timeout_s": 60},
        "tables": {"include": [f"{SCHEMA}.*"]},
        # an id per pair: a connector another pair's interrupted run left registered is no clash
        "connector": {"server_id": (7707 if target.engine == "postgres" else 7708) + (SCHEMA != "snapbench") * 10,
                      "history_file": str(info.run_dir / "connect" / f"history-{prefix}.dat")},
        "snapshot": {"workers": workers, "chunk_rows": chunk_rows},
    }
    path = Path(tempfile.mkdtemp(prefix="snapbench-")) / "migration.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("replicator")), *args]


def run_ours(config: Path, target: Database, source_engine: str) -> tuple[float, float, int]:
    """(data copy seconds, whole run seconds, peak RSS kB) of `replicator snapshot --restart`, from an
    empty target: the whole run creates the tables (schema translation), copies, builds the indexes."""
    del source_engine
    drop_target(target)
    started = time.monotonic()
    proc = subprocess.Popen(cli("-c", str(config), "snapshot", "--restart"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = [0]

    def watch() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], rss_kb(proc.pid, "VmHWM") or 0)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    whole = time.monotonic() - started
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"replicator snapshot failed ({proc.returncode}):\n{out}\n{err}")
    found = re.search(r"copied \d+ chunk\(s\) in ([0-9.]+) s", err)
    if not found:
        raise RuntimeError(f"no copy time in the output:\n{err}")
    # PostgreSQL targets load without the primary key and build it after: that time counts as copy time
    # (the raw pipes load into tables that have it)
    keys = sum(float(m) for m in re.findall(r"built \d+ primary key\(s\) in ([0-9.]+) s", err))  # with the counts
    return float(found.group(1)) + keys, whole, peak[0]


def digest_pg(db: Database, name: str, columns: str = "t") -> tuple[int, int]:
    with pg(db) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        row = conn.execute(f"SELECT count(*), sum(hashtextextended({columns}::text, 0)) FROM {SCHEMA}.{name} t"
                           ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1] or 0)


def aggregates(db: Database, name: str) -> tuple[int, ...]:
    """Count and column sums, the same on both engines (the MariaDB → PG check)."""
    other = "a + b + c + LENGTH(d) + e" if name == "wide" else "v"
    query = f"SELECT COUNT(*), SUM(id), SUM({other}) FROM {SCHEMA}.{name}"
    if db.engine == "postgres":
        query = query.replace("+ e", "+ e::int")
        with pg(db) as conn:
            row = conn.execute(query).fetchone()
    else:
        conn = my(db)
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                row = cur.fetchone()
        finally:
            conn.close()
    assert row is not None
    return tuple(int(v or 0) for v in row)


def check(source: Database, target: Database) -> None:
    for name in TABLES:
        same = digest_pg(target, name) == digest_pg(source, name) if source.engine == target.engine == "postgres" \
            else aggregates(target, name) == aggregates(source, name)
        if not same:
            say(f"WRONG: {SCHEMA}.{name} differs between source and target")
            sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("pg", "mariadb"), default="pg")
    parser.add_argument("--target", choices=("pg", "mariadb"), default="pg")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--wide-text", choices=sorted(WIDE_TEXTS), default="long",
                        help="the wide table's text: long (~225-byte rows, as the shared reference's) or short"
                             " (~131-byte rows, the data of earlier sessions)")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--peers", action="store_true",
                        help="also time pgcopydb clone (PG source) or pgloader (MariaDB source), Debian packages")
    args = parser.parse_args()
    configure(args.wide_text)
    info = stack_info(args.run_dir)
    source = info.database("pg-source" if args.source == "pg" else "my-source")
    target = info.database("pg-target" if args.target == "pg" else "my-target")
    (seed_pg if args.source == "pg" else seed_my)(source, args.reseed)
    config = config_file(info, source, target, args.workers, args.chunk_rows)
    done = subprocess.run(cli("-c", str(config), "connectors", "apply", "--fix-replica-identity"),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"connectors apply failed:\n{done.stdout}{done.stderr}")
    rows = sum(r for _, r in TABLES.values())
    limits, copies, wholes, peaks, peers = [], [], [], [], []
    try:
        for run in range(1, args.runs + 1):
            parallel = raw_pipes(source, target, parallel=True)
            serial = raw_pipes(source, target, parallel=False)
            check(source, target)
            if args.peers and target.engine == "postgres":
                peers.append(run_peer(source, target))
            copy_s, whole_s, peak = run_ours(config, target, source.engine)
            check(source, target)
            limits.append(min(parallel, serial))
            copies.append(copy_s)
            wholes.append(whole_s)
            peaks.append(peak)
            say(f"run {run}: raw pipes {parallel:.2f} s at once, {serial:.2f} s one after the other; replicator "
                f"data copy {copy_s:.2f} s (whole run {whole_s:.2f} s), peak RSS {peak / 1024:.0f} MB")
    finally:
        subprocess.run(cli("-c", str(config), "connectors", "delete", "--drop-slot"), capture_output=True,
                       check=False)
    limit, copy, whole = (statistics.median(v) for v in (limits, copies, wholes))
    say(f"limit (raw pipe): median {limit:.2f} s = {rows / limit:,.0f} rows/s")
    say(f"replicator data copy: median {copy:.2f} s = {rows / copy:,.0f} rows/s; whole run {whole:.2f} s; "
        f"peak RSS {max(peaks) / 1024:.0f} MB")
    if peers:
        peer = statistics.median(peers)
        name = "pgcopydb clone" if source.engine == "postgres" else "pgloader"
        say(f"{name} (whole job): median {peer:.2f} s; replicator whole run is {peer / whole:.2f}x as fast")
    say(f"ratio_to_limit={limit / copy:.3f}")


if __name__ == "__main__":
    main()
