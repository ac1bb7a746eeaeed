"""MySQL/MariaDB: connections with one-line errors, and the source catalog facts CDC needs.

Identifiers are quoted with `quote_identifier` (backticks doubled); values always go as parameters.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from typing import Any

import pymysql
import pymysql.connections

from replicator.config import Endpoint
from replicator.errors import ServiceUnreachableError, SourceError
from replicator.model import SourceTable, TableId

ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
CR_CONN_HOST_ERROR = 2003
CR_UNKNOWN_HOST = 2005


class _Connection(pymysql.connections.Connection):  # type: ignore[misc]  # pymysql is untyped
    """pymysql's connection, with the TLS context of its "preferred" mode (no TLS option given: TLS
    when the server offers it, without verification) built once per process, and only once a server
    offers TLS, instead of for every connection: building it loads the system's CA store (40-45 ms of
    CPU here), which made every connection 48 ms instead of 1 ms. The context is the one pymysql
    builds, shared: it is not changed after it is built, and an `ssl.SSLContext` may serve many
    connections and threads. (pymysql uses the context only to wrap the socket.)"""

    _preferred: ssl.SSLContext | None = None
    _lock = threading.Lock()

    def _create_ssl_ctx(self, sslp: Any) -> Any:
        if sslp:  # explicit options: built as pymysql builds them
            return super()._create_ssl_ctx(sslp)
        return _PreferredContext(self)

    def _preferred_context(self) -> ssl.SSLContext:
        with _Connection._lock:
            if _Connection._preferred is None:
                _Connection._preferred = super()._create_ssl_ctx({})
            return _Connection._preferred


class _PreferredContext:
    """Stands for the shared preferred-mode context until a server asks for TLS."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def wrap_socket(self, sock: Any, server_hostname: str | None = None) -> ssl.SSLSocket:
        return self._connection._preferred_context().wrap_socket(sock, server_hostname=server_hostname)


def open_connection(**options: Any) -> Any:  # pymysql is untyped: a Connection
    """pymysql.connect(**options), without rebuilding a TLS context per connection (see _Connection)."""
    return _Connection(**options)


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_literal(value: str) -> str:
    """A string literal for DDL, where values cannot be parameters (defaults, ENUM labels). Valid
    unless the session's sql_mode has NO_BACKSLASH_ESCAPES (our DDL session never has it)."""
    escaped = value.replace("\\", "\\\\").replace("'", "''").replace("\0", "\\0")
    return "'" + escaped + "'"


def connect(endpoint: Endpoint, role: str, *, client_flag: int = 0,
            local_infile: bool = False) -> Any:  # pymysql is untyped: a Connection
    """An autocommit utf8mb4 connection; `client_flag` adds protocol flags (e.g. CLIENT.FOUND_ROWS);
    `local_infile` lets LOAD DATA LOCAL send our staging files (the server must be trusted)."""
    try:
        return open_connection(
            host=endpoint.host,
            port=endpoint.port,
            user=endpoint.user,
            password=endpoint.secret(),
            database=endpoint.database,
            connect_timeout=10,
            autocommit=True,
            charset="utf8mb4",
            client_flag=client_flag,
            local_infile=local_infile,
        )
    except pymysql.MySQLError as exc:
        code = exc.args[0] if exc.args else None
        where = endpoint.describe()
        if code == ER_ACCESS_DENIED:
            raise SourceError(f"{role} {where}: access denied",
                              hint=f"check {role}.user and {role}.password (or {role}.password_file)") from None
        if code == ER_BAD_DB:
            raise SourceError(f"{role} {where}: database {endpoint.database!r} does not exist",
                              hint=f"check {role}.database") from None
        if code in (CR_CONN_HOST_ERROR, CR_UNKNOWN_HOST):
            raise ServiceUnreachableError(
                f"cannot connect to the {role} {where}: {exc.args[1] if len(exc.args) > 1 else exc}",
                hint=f"check {role}.host and {role}.port, and that MySQL/MariaDB listens there",
            ) from None
        raise SourceError(f"cannot connect to the {role} {where}: {exc}") from None


# information_schema answers a query from the data dictionary of only the tables its WHERE names by
# constants; a table of it joined (or correlated) by another's columns is read for every table of
# every database (seconds on a server with many schemas). So each query here names its own schema
# and table, and what belongs together is joined in Python.
_TABLES = """
SELECT TABLE_NAME, COALESCE(ENGINE, '') FROM information_schema.TABLES
WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1
"""
_KEYED_TABLES = """
SELECT TABLE_NAME FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = %s AND CONSTRAINT_TYPE = 'PRIMARY KEY'
"""
_KEY_POSITIONS = """
SELECT COLUMN_NAME, SEQ_IN_INDEX FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY'
"""


def base_tables(cur: Any, database: str) -> list[tuple[str, str, bool]]:
    """(name, engine, has a primary key) of each base table of `database`, by name."""
    cur.execute(_KEYED_TABLES, (database,))
    keyed = {str(r[0]) for r in cur.fetchall()}
    cur.execute(_TABLES, (database,))
    return [(str(name), str(engine), str(name) in keyed) for name, engine in cur.fetchall()]


def key_positions(rows: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]], table: TableId) -> dict[str, int]:
    """The primary key's columns of `table` and their positions in it (1, 2…), read by the caller's
    `rows(query, params)` (its errors are the caller's)."""
    return {str(n): int(p) for n, p in rows(_KEY_POSITIONS, (table.schema, table.name))}


class MySQLCatalog:
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._conn = connect(endpoint, "source")

    def list_tables(self) -> list[SourceTable]:
        database = self._endpoint.database
        with self._conn.cursor() as cur:
            rows = base_tables(cur, database)
        return [SourceTable(table=TableId(database, name), has_primary_key=has_pk) for name, _, has_pk in rows]

    def set_replica_identity_full(self, table: TableId) -> None:
        """Nothing to do: a full row image (binlog_row_image=FULL) carries every column."""

    def ensure_watermark(self, table: TableId) -> None:
        try:
            with self._conn.cursor() as cur:
                name = f"{quote_identifier(table.schema)}.{quote_identifier(table.name)}"
                cur.execute(f"CREATE TABLE IF NOT EXISTS {name} (id INT PRIMARY KEY, token VARCHAR(64) NOT NULL,"
                            " written_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB")
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in (1142, 1044):  # command denied / access denied
                raise SourceError(f"the source user may not create our watermark table {table}",
                                  hint=f"GRANT CREATE, INSERT, UPDATE ON {table.schema}.* to the source user") from None
            raise

    def write_watermark(self, table: TableId, token: str) -> None:
        with self._conn.cursor() as cur:
            name = f"{quote_identifier(table.schema)}.{quote_identifier(table.name)}".replace("%", "%%")
            cur.execute(f"INSERT INTO {name} (id, token)"
                        " VALUES (1, %s) ON DUPLICATE KEY UPDATE token = VALUES(token),"
                        " written_at = CURRENT_TIMESTAMP(6)", (token,))

    def drop_capture_objects(self, slot_name: str, publication_name: str, wait_s: float) -> list[str]:
        return []  # a binlog reader leaves nothing behind on the server

    def close(self) -> None:
        self._conn.close()
