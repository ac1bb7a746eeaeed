"""PostgreSQL: connections with one-line errors, and the source catalog facts CDC needs.

Identifiers are quoted with psycopg's `sql.Identifier`; values always go as parameters.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from replicator.config import Endpoint
from replicator.errors import ServiceUnreachableError, SourceError
from replicator.model import SourceTable, TableId


def connect(endpoint: Endpoint, role: str, *, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection; failures become one line naming the role (source/target) and the fix."""
    try:
        return psycopg.connect(
            host=endpoint.host,
            port=endpoint.port,
            dbname=endpoint.database,
            user=endpoint.user,
            password=endpoint.secret(),
            connect_timeout=10,
            autocommit=autocommit,
            application_name="replicator",
        )
    except psycopg.OperationalError as exc:
        raise _connect_error(endpoint, role, str(exc)) from None


def _connect_error(endpoint: Endpoint, role: str, text: str) -> Exception:
    detail = " ".join(text.split())
    where = endpoint.describe()
    if "password authentication failed" in detail or "no password supplied" in detail:
        return SourceError(
            f"{role} {where}: password authentication failed",
            hint=f"check {role}.user and {role}.password (or {role}.password_file)",
        )
    if "does not exist" in detail and "database" in detail:
        return SourceError(f"{role} {where}: database {endpoint.database!r} does not exist",
                           hint=f"check {role}.database")
    if "Connection refused" in detail or "timeout" in detail.lower() or "could not translate" in detail:
        reason = detail.split(": ")[-1] if ": " in detail else detail
        return ServiceUnreachableError(
            f"cannot connect to the {role} {where}: {reason}",
            hint=f"check {role}.host and {role}.port, and that PostgreSQL listens there",
        )
    return SourceError(f"cannot connect to the {role} {where}: {detail}")


_TABLES = """
SELECT n.nspname, c.relname, c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""


class PostgresCatalog:
    def __init__(self, endpoint: Endpoint) -> None:
        self._conn = connect(endpoint, "source")

    def list_tables(self) -> list[SourceTable]:
        rows = self._conn.execute(_TABLES).fetchall()
        return [
            SourceTable(
                table=TableId(str(schema), str(name)),
                has_primary_key=bool(has_pk),
                replica_identity=str(ident),
                has_identity_index=bool(has_index),
            )
            for schema, name, ident, has_pk, has_index in rows
        ]

    def set_replica_identity_full(self, table: TableId) -> None:
        self._conn.execute(
            sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.Identifier(table.schema, table.name))
        )

    def ensure_watermark(self, table: TableId) -> None:
        try:
            self._conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
            self._conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id integer PRIMARY KEY, token text NOT NULL,"
                " written_at timestamptz NOT NULL DEFAULT now())").format(sql.Identifier(table.schema, table.name)))
        except psycopg.errors.InsufficientPrivilege:
            raise SourceError(f"the source user may not create our watermark table {table}",
                              hint=f"grant CREATE on the source database, or create schema {table.schema} "
                                   "owned by the source user") from None

    def write_watermark(self, table: TableId, token: str) -> None:
        self._conn.execute(sql.SQL(
            "INSERT INTO {} (id, token) VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token,"
            " written_at = now()").format(sql.Identifier(table.schema, table.name)), (token,))

    def drop_capture_objects(self, slot_name: str, publication_name: str, wait_s: float) -> list[str]:
        dropped: list[str] = []
        deadline = time.monotonic() + wait_s
        while True:
            row = self._conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot_name,)
            ).fetchone()
            if row is None:
                break
            if not row[0]:
                self._conn.execute("SELECT pg_drop_replication_slot(%s)", (slot_name,))
                dropped.append(f"replication slot {slot_name}")
                break
            if time.monotonic() > deadline:
                raise SourceError(
                    f"replication slot {slot_name} is still in use after {wait_s:.0f} s",
                    hint="stop whatever reads it (another connector?) and run delete again",
                )
            time.sleep(0.5)
        exists = self._conn.execute(
            "SELECT 1 FROM pg_publication WHERE pubname = %s", (publication_name,)
        ).fetchone()
        if exists:
            self._conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(publication_name)))
            dropped.append(f"publication {publication_name}")
        return dropped

    def close(self) -> None:
        self._conn.close()
