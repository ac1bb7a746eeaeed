"""MySQL/MariaDB as a snapshot target: chunk loads by LOAD DATA LOCAL INFILE, and the chunk ledger.

A table's copy starts by removing its ledger entry (committed), emptying the table, and writing the
new entry with its plan. A table that holds rows is emptied by TRUNCATE: DELETE writes an undo
record per row (10 s for 3M benchmark rows here, where TRUNCATE takes milliseconds), but TRUNCATE
commits on its own, so it cannot share the ledger's transaction; the order keeps a crash exact: one
between the steps leaves no entry, so the next run plans the table again and empties it again.
Where TRUNCATE is refused (the table is referenced by a foreign key, the user lacks DROP, or another
session holds the table past a short wait), a DELETE in a transaction of its own empties it. A
chunk is then one transaction (LOAD DATA, ledger row, COMMIT: none of them commits implicitly), in
a session with FOREIGN_KEY_CHECKS=0, READ COMMITTED and time zone UTC.
pymysql sends LOAD DATA LOCAL from a file it opens by name: a named pipe, which a feeder thread fills
from the source stream, so reading the source and loading the target overlap and memory stays one
pipe buffer whatever the chunk size. `LOCAL` turns errors into warnings, so before the commit the
load must have raised no warning, the source stream must have ended without error (else the rows
loaded are only a part), and the target must have loaded exactly the rows the source sent; otherwise
the chunk rolls back with the cause named.

Formats: `mysql-tsv` (lines a MySQL source built: tab-separated, backslash escapes, \\N for NULL) and
`pg-csv` (PostgreSQL `COPY … (FORMAT csv, NULL 'NULL')`: quoted fields, doubled quotes, unquoted NULL).
Binary columns travel as hex and BIT columns as numbers; `SET col = UNHEX(@v)` / `CAST(@v AS UNSIGNED)`
turns them back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from typing import Any

import pymysql

from replicator import faults
from replicator.config import Endpoint
from replicator.dialects.base import Block, ChunkLoad, LedgerTable, SourceRows, verify_rows
from replicator.dialects.mysql import connect, quote_identifier
from replicator.dialects.mysql_snapshot import SPATIAL_TYPES
from replicator.errors import SnapshotError
from replicator.model import TableId

_SPOOL = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108  (where the named pipe lives)
_TRUNCATE_WAIT_S = 10  # how long TRUNCATE waits for another session's hold on the table before DELETE
# TRUNCATE refused: a foreign key references the table (1701), no DROP privilege (1142), lock wait (1205)
_TRUNCATE_REFUSED = (1701, 1142, 1205)
_BINARY_TARGETS = ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")


def _ident(name: str) -> str:
    return quote_identifier(name).replace("%", "%%")


def _table(table: TableId) -> str:
    return f"{_ident(table.schema)}.{_ident(table.name)}"


def needs_hex(target_type: str) -> bool:
    base = target_type.lower().split("(")[0]
    return base in _BINARY_TARGETS or base in SPATIAL_TYPES


def needs_number(target_type: str) -> bool:
    return target_type.lower().startswith("bit")


class MySQLSnapshotTarget:
    def __init__(self, endpoint: Endpoint, state_schema: str) -> None:
        self._conn = connect(endpoint, "target", local_infile=True)
        self._state = _ident(state_schema)
        with self._conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00', SESSION foreign_key_checks = 0,"
                        " SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
            # Workers load neighbouring key ranges of one table at once: REPEATABLE READ's gap locks on
            # each range's DELETE would block the other's inserts and deadlock. No chunk reads another's.
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")

    def close(self) -> None:
        self._conn.close()

    def _rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, pymysql.err.OperationalError) and exc.args:
            return exc.args[0] in (1205, 1213, 2006, 2013)  # lock wait timeout, deadlock, connection lost
        return isinstance(exc, pymysql.err.InterfaceError)

    def is_broken(self) -> bool:
        return not self._conn.open

    def column_types(self, table: TableId) -> dict[str, str] | None:
        rows = self._rows("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
                          " AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (table.schema, table.name))
        return {str(n): (t.decode() if isinstance(t, bytes) else str(t)).lower() for n, t in rows} or None

    def load_chunk(self, load: ChunkLoad, blocks: SourceRows) -> tuple[int, int]:
        targets, sets = [], []
        for i, column in enumerate(load.columns):
            kind = load.transfer.target_types.get(column, "")
            if needs_hex(kind) or needs_number(kind):
                targets.append(f"@v{i}")
                value = f"UNHEX(@v{i})" if needs_hex(kind) else f"CAST(@v{i} AS UNSIGNED)"
                sets.append(f"{_ident(column)} = {value}")
            else:
                targets.append(_ident(column))
        if load.transfer.format == "pg-csv":
            fields = "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY ''"
        else:
            fields = "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\'"
        statement = (f"LOAD DATA LOCAL INFILE %s INTO TABLE {_table(load.table)} CHARACTER SET utf8mb4 {fields}"
                     f" LINES TERMINATED BY '\\n' ({', '.join(targets)})" + (f" SET {', '.join(sets)}" if sets else ""))
        directory = tempfile.mkdtemp(dir=_SPOOL, prefix="replicator-chunk-")
        fifo = os.path.join(directory, "rows")
        os.mkfifo(fifo, 0o600)
        feeder = _Feeder(fifo, blocks)
        feeder.start()
        try:
            with self._conn.cursor() as cur:
                cur.execute("BEGIN")
                try:
                    rows = int(cur.execute(statement, (fifo,)))
                    feeder.join()  # the server read to the end: the feeder closed the pipe
                    if feeder.error is not None:  # the source failed: what was loaded is a part only
                        raise feeder.error
                    verify_rows(load, blocks, rows)
                    if cur.warning_count:
                        cur.execute("SHOW WARNINGS LIMIT 1")
                        warning = cur.fetchone()
                        raise SnapshotError(f"{load.table}: the target changed a value while loading chunk "
                                            f"{load.chunk}: {warning[2] if warning else 'a warning'}",
                                            hint="the target column cannot hold the source's value: fix its type")
                    cur.execute(f"INSERT INTO {self._state}.snapshot_chunks (source_table, chunk, `rows`, bytes,"
                                " position) VALUES (%s, %s, %s, %s, %s)",
                                (load.source_table, load.chunk, rows, feeder.size, load.position))
                    cur.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(pymysql.MySQLError):  # gone: the server rolled back
                        cur.execute("ROLLBACK")
                    raise
        finally:
            feeder.stop()
            shutil.rmtree(directory, ignore_errors=True)
        return rows, feeder.size

    # -- the ledger ----------------------------------------------------------------------------
    def ledger_table(self, source_table: str) -> LedgerTable | None:
        rows = self._rows(f"SELECT target_table, plan, state, source_rows, target_rows FROM {self._state}"
                          ".snapshot_tables WHERE source_table = %s", (source_table,))
        if not rows:
            return None
        target, plan, state, source_rows, target_rows = rows[0]
        chunks = self._rows(f"SELECT chunk, `rows`, position FROM {self._state}.snapshot_chunks"
                            " WHERE source_table = %s ORDER BY chunk", (source_table,))
        return LedgerTable(source_table, str(target), str(plan), str(state),
                           {int(c): (int(r), str(p)) for c, r, p in chunks},
                           None if source_rows is None else int(source_rows),
                           None if target_rows is None else int(target_rows))

    def restore_key(self, table: TableId, statement: str, memory_mb: int, *, empty: bool = False) -> None:
        raise AssertionError("MySQL targets keep their primary key while they load")  # start_table never drops it

    def start_table(self, source_table: str, target: TableId, plan: str) -> str | None:
        # The entry goes first, then the rows, then the new entry (see the module docstring). The
        # primary key stays: InnoDB stores rows in its order, and dropping it would rebuild the table twice.
        with self._conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(f"DELETE FROM {self._state}.snapshot_chunks WHERE source_table = %s", (source_table,))
            cur.execute(f"DELETE FROM {self._state}.snapshot_tables WHERE source_table = %s", (source_table,))
            cur.execute("COMMIT")
        faults.reach("snapshot.mysql-entry-removed")
        self._empty(target)
        faults.reach("snapshot.mysql-table-emptied")
        with self._conn.cursor() as cur:
            cur.execute(f"INSERT INTO {self._state}.snapshot_tables (source_table, target_table, plan, state)"
                        " VALUES (%s, %s, %s, 'copying')", (source_table, target.qualified, plan))
        return None

    def _empty(self, target: TableId) -> None:
        table = _table(target)
        if not self._rows(f"SELECT 1 FROM {table} LIMIT 1"):
            return  # a table just created: nothing to empty
        with self._conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = %s", (_TRUNCATE_WAIT_S,))
            try:
                cur.execute(f"TRUNCATE TABLE {table}", ())  # () : pymysql %-formats, as `_ident` expects
                return
            except pymysql.MySQLError as exc:
                if not exc.args or exc.args[0] not in _TRUNCATE_REFUSED:
                    raise
            finally:
                cur.execute("SET SESSION lock_wait_timeout = DEFAULT")
            cur.execute("BEGIN")
            cur.execute(f"DELETE FROM {table}", ())
            cur.execute("COMMIT")

    def finish_table(self, source_table: str, state: str, source_rows: int | None, target_rows: int | None,
                     sequences: str | None) -> None:
        with self._conn.cursor() as cur:
            cur.execute(f"UPDATE {self._state}.snapshot_tables SET state = %s, source_rows = COALESCE(%s, source_rows),"
                        " target_rows = COALESCE(%s, target_rows), sequences = COALESCE(%s, sequences),"
                        " finished_at = CURRENT_TIMESTAMP(6) WHERE source_table = %s",
                        (state, source_rows, target_rows, sequences, source_table))

    def count(self, table: TableId) -> int:
        return int(self._rows(f"SELECT COUNT(*) FROM {_table(table)}")[0][0])


class _Feeder(threading.Thread):
    """Writes a chunk's blocks into the named pipe LOAD DATA LOCAL reads, so that reading the source
    and loading the target overlap, with one pipe buffer of memory (pymysql sends LOAD DATA LOCAL from
    a file it opens by name)."""

    def __init__(self, path: str, blocks: Iterable[Block]) -> None:
        super().__init__(name="replicator-load-feeder", daemon=True)
        self._path = path
        self._blocks = blocks
        self.size = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with open(self._path, "wb", buffering=0) as pipe:  # waits for the reader
                for block in self._blocks:
                    pipe.write(block)
                    self.size += len(block)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        """Unblock and finish the feeder if the load ended early (its reader gone or never there)."""
        while self.is_alive():
            with contextlib.suppress(OSError):
                reader = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK)
                with contextlib.suppress(OSError):
                    while os.read(reader, 1 << 16):
                        pass
                os.close(reader)
            self.join(0.05)
