"""The target database side of the apply benchmarks: bench.w, its seed, the limit (b), the hash.

`PostgresBench` and `MariaDBBench` own the table `bench.w`, its seed `bench.w_seed` (kept between
invocations, recognised by a table comment), the physical write limit (b) and the in-database row
hash (count + sum of a 60-bit md5 slice per row) that decides whether a result is right. Their
sessions run in UTC, as the applier's do.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apply_workload import COLUMNS, MARIADB_DDL, PG_DDL, SCHEMA, TABLE, python_row

from replicator.stack.launcher import Database, StackInfo

SEED_MARK = "apply-bench seed v1 rows={rows}"


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
        from replicator.dialects.mysql import open_connection
        self.db = db
        self.conn = open_connection(host=db.host, port=db.port, user=db.user, password=db.password,
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
        INFILE into a temporary table, then one INSERT … SELECT … ON DUPLICATE KEY UPDATE (the
        table's only unique key is its primary key), and the deleted keys by DELETE … WHERE id IN
        (…) of 1000 keys each (faster than staging them, as the applier found); one transaction.
        Seconds from writing the file to COMMIT (the rows were computed before)."""
        target = f"{SCHEMA}.{table}"
        sets = ", ".join(f"{c} = s.{c}" for c in COLUMNS[1:])
        cols = ", ".join(COLUMNS)
        started = time.monotonic()
        self.run("BEGIN")
        self.run(f"CREATE TEMPORARY TABLE bench_up LIKE {target}")
        self._load("bench_up", ("\t".join(map(_tsv, row)) + "\n" for row in upserts), COLUMNS)
        self.run(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM bench_up s ON DUPLICATE KEY UPDATE {sets}")
        for start in range(0, len(deletes), 1000):
            part = tuple(deletes[start:start + 1000])
            self.run(f"DELETE FROM {target} WHERE id IN ({', '.join(['%s'] * len(part))})", part)
        self.run("COMMIT")
        elapsed = time.monotonic() - started
        self.run("DROP TEMPORARY TABLE bench_up")
        return elapsed

    def abandon(self) -> None:
        """After a failed (b): roll back and drop its temporary tables."""
        self.run("ROLLBACK")
        self.run("DROP TEMPORARY TABLE IF EXISTS bench_up")

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
