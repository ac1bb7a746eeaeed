"""PostgreSQL as a snapshot target: chunk loads and the chunk ledger in our state schema.

A table's copy starts (`start_table`) in one transaction that resets its ledger entry, empties the
table (rows the applier wrote before the hold are in the snapshot anyway) and drops its primary key
for the load. A chunk is then one target transaction: COPY the rows in, record the chunk in
`snapshot_chunks` with the snapshot position it was read at, commit. Rows and ledger entry commit
together: after a crash a chunk is either wholly there and recorded, or absent and unrecorded
(copied again on resume); the primary key is added back before the table is released.
The session runs with `session_replication_role = replica`, as the applier's: foreign keys between
tables copied in any order do not block. Its time zone is UTC: a MySQL source writes timestamps for
timestamptz columns as their UTC text without a zone.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from replicator.config import Endpoint
from replicator.dialects.base import ChunkLoad, LedgerTable, SourceRows, verify_rows
from replicator.dialects.postgres_target import _DESCRIBE, writing_session
from replicator.model import TableId


class PostgresSnapshotTarget:
    def __init__(self, endpoint: Endpoint, state_schema: str) -> None:
        self._conn = writing_session(endpoint)
        self._state = sql.Identifier(state_schema)

    def close(self) -> None:
        self._conn.close()

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
                          | psycopg.errors.LockNotAvailable | psycopg.OperationalError)

    def is_broken(self) -> bool:
        return bool(self._conn.closed or self._conn.broken)

    def column_types(self, table: TableId) -> dict[str, str] | None:
        regclass = sql.Identifier(table.schema, table.name).as_string(self._conn)
        exists = self._conn.execute("SELECT to_regclass(%s)", (regclass,)).fetchone()
        if exists is None or exists[0] is None:
            return None
        return {str(name): str(kind) for name, kind, _, _ in self._conn.execute(_DESCRIBE, (regclass,)).fetchall()}

    def load_chunk(self, load: ChunkLoad, blocks: SourceRows) -> tuple[int, int]:
        """One transaction: replace the chunk's key range by the streamed rows and record the chunk.
        Returns (rows, bytes)."""
        target = sql.Identifier(load.table.schema, load.table.name)
        size = 0
        with self._conn.transaction(), self._conn.cursor() as cur:
            statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
                target, sql.SQL(", ").join(sql.Identifier(c) for c in load.columns),
                sql.SQL(" (FORMAT binary)" if load.transfer.binary else ""))
            with cur.copy(statement) as copy:
                for block in blocks:
                    size += len(block)
                    copy.write(block)
            rows = cur.rowcount
            verify_rows(load, blocks, rows)
            cur.execute(sql.SQL("INSERT INTO {}.snapshot_chunks (source_table, chunk, rows, bytes, position)"
                                " VALUES (%s, %s, %s, %s, %s)").format(self._state),
                        (load.source_table, load.chunk, rows, size, load.position))
        return rows, size

    # -- the ledger ----------------------------------------------------------------------------
    def ledger_table(self, source_table: str) -> LedgerTable | None:
        row = self._conn.execute(
            sql.SQL("SELECT target_table, plan, state, source_rows, target_rows, deferred_key"
                    " FROM {}.snapshot_tables WHERE source_table = %s").format(self._state), (source_table,)).fetchone()
        if row is None:
            return None
        chunks = self._conn.execute(
            sql.SQL("SELECT chunk, rows, position FROM {}.snapshot_chunks WHERE source_table = %s ORDER BY chunk"
                    ).format(self._state), (source_table,)).fetchall()
        return LedgerTable(source_table, str(row[0]), str(row[1]), str(row[2]),
                           {int(c): (int(r), str(p)) for c, r, p in chunks},
                           None if row[3] is None else int(row[3]), None if row[4] is None else int(row[4]),
                           None if row[5] is None else str(row[5]))

    def start_table(self, source_table: str, target: TableId, plan: str) -> str | None:
        table = sql.Identifier(target.schema, target.name)
        regclass = table.as_string(self._conn)
        with self._conn.transaction():
            self._conn.execute(sql.SQL("DELETE FROM {}.snapshot_chunks WHERE source_table = %s").format(self._state),
                               (source_table,))
            previous = self._conn.execute(
                sql.SQL("SELECT deferred_key FROM {}.snapshot_tables WHERE source_table = %s").format(self._state),
                (source_table,)).fetchone()
            self._empty(table)
            # An empty table loads faster without its primary key, built once afterwards from all the
            # rows instead of maintained row by row (measured here: 1.49 + 1.28 s against 3.87 s for
            # 2M narrow rows). The statement that adds the key back is in the ledger, committed with
            # the drop (and carried over when a restart finds the key still dropped). Not when a
            # foreign key refers to the table (the key cannot go).
            restore = previous[0] if previous is not None and previous[0] is not None else None
            key = self._conn.execute(
                "SELECT conname, pg_get_indexdef(conindid), condeferrable, condeferred FROM pg_constraint"
                " WHERE conrelid = %s::regclass AND contype = 'p'"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.confrelid = %s::regclass)",
                (regclass, regclass)).fetchone()
            if key is not None:
                # added back as its unique index, then the constraint over that index: the index build
                # holds a SHARE lock, so the table's row count runs beside it instead of after it (an
                # ADD PRIMARY KEY would hold ACCESS EXCLUSIVE for the whole build); the columns stay
                # NOT NULL, so attaching the index scans nothing
                name = sql.Identifier(str(key[0]))
                timing = sql.SQL(" DEFERRABLE INITIALLY DEFERRED" if key[3] else " DEFERRABLE" if key[2] else "")
                restore = sql.SQL("{}; ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}{}").format(
                    sql.SQL(str(key[1])), table, name, name, timing).as_string(self._conn)
                self._conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, name))
            self._conn.execute(
                sql.SQL("INSERT INTO {}.snapshot_tables (source_table, target_table, plan, state, deferred_key)"
                        " VALUES (%s, %s, %s, 'copying', %s) ON CONFLICT (source_table) DO UPDATE SET"
                        " target_table = EXCLUDED.target_table, plan = EXCLUDED.plan, state = 'copying',"
                        " source_rows = NULL, target_rows = NULL, sequences = NULL, started_at = now(),"
                        " finished_at = NULL, deferred_key = EXCLUDED.deferred_key").format(self._state),
                (source_table, target.qualified, plan, restore))
        return restore

    def _empty(self, table: sql.Identifier) -> None:
        """TRUNCATE (transactional here); DELETE when a foreign key refers to the table."""
        try:
            with self._conn.transaction():  # a savepoint
                self._conn.execute(sql.SQL("TRUNCATE {}").format(table))
        except psycopg.errors.FeatureNotSupported:
            self._conn.execute(sql.SQL("DELETE FROM {}").format(table))

    def restore_key(self, table: TableId, statement: str, memory_mb: int, *, empty: bool = False) -> None:
        target = sql.Identifier(table.schema, table.name)
        with self._conn.transaction():
            if empty:
                self._empty(target)
            present = self._conn.execute(
                "SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
                (target.as_string(self._conn),)).fetchone()
            if present is None:
                # the sort of all the keys in memory: with the server's default (64 MB) 2M bigint keys
                # spill to disk (0.75 s here, 0.52 s at 256 MB); for this transaction only
                self._conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(
                    sql.Literal(f"{memory_mb}MB")))
                self._conn.execute(statement)  # statistics: autovacuum analyses the freshly loaded table

    def finish_table(self, source_table: str, state: str, source_rows: int | None, target_rows: int | None,
                     sequences: str | None) -> None:
        self._conn.execute(
            sql.SQL("UPDATE {}.snapshot_tables SET state = %s, source_rows = COALESCE(%s, source_rows),"
                    " target_rows = COALESCE(%s, target_rows), sequences = COALESCE(%s, sequences),"
                    " finished_at = now() WHERE source_table = %s").format(self._state),
            (state, source_rows, target_rows, sequences, source_table))

    def count(self, table: TableId) -> int:
        row = self._conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(table.schema, table.name))).fetchone()
        return int(row[0]) if row else 0
