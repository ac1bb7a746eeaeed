"""MySQL/MariaDB preflight (`replicator check`): what the binlog connector, the snapshot copy and the
applier need of a MySQL/MariaDB source or target, read from the server.

Nothing here changes the server. Privileges are read from information_schema (USER_PRIVILEGES,
SCHEMA_PRIVILEGES, TABLE_PRIVILEGES) for the account the server authenticated (CURRENT_USER());
privileges that reach the user only through a role are not seen there and are reported missing.
SELECT on the migrated tables is tried (`SELECT 1 … LIMIT 0`), which sees roles too.
"""

from __future__ import annotations

from typing import Any

import pymysql

from replicator.config import MigrationConfig
from replicator.dialects.base import PresentTable
from replicator.dialects.mysql import base_tables, connect, quote_identifier
from replicator.model import Finding, Level, TableId

_VARIABLES = ("log_bin", "binlog_format", "binlog_row_image", "server_id", "sql_mode")
ER_TABLEACCESS_DENIED = 1142
ER_DBACCESS_DENIED = 1044

# MariaDB-only column types: Debezium's MySQL connector (3.0) cannot parse DDL that names them
_MARIADB_ONLY = ("uuid", "inet4", "inet6")
_CAPTURED_ONLY = "schema.history.internal.store.only.captured.tables.ddl"
_MARIADB_ONLY_COLUMNS = """
SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS
WHERE DATA_TYPE IN (%s, %s, %s)
  AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION
"""

_COLUMNS = """
SELECT COLUMN_NAME FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND EXTRA NOT LIKE %s ORDER BY ORDINAL_POSITION
"""


def _table(table: TableId) -> str:
    # Queries always go with a params tuple, so pymysql %-formats them: a '%' in a name is doubled.
    return f"{quote_identifier(table.schema)}.{quote_identifier(table.name)}".replace("%", "%%")


class _Session:
    """One connection and the privileges of its account."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        user, _, host = str(self.rows("SELECT CURRENT_USER()")[0][0]).rpartition("@")
        self.grantee = f"'{user}'@'{host}'"
        self.global_privileges = {str(r[0]).upper() for r in self.rows(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = %s", (self.grantee,))}

    def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def has(self, privilege: str, database: str, table: str | None = None) -> bool:
        """`privilege` on `database` (or one of its tables): granted globally, on a database pattern that
        matches it, or on the table."""
        if privilege in self.global_privileges:
            return True
        if self.rows("SELECT 1 FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = %s AND PRIVILEGE_TYPE = %s"
                     " AND %s LIKE TABLE_SCHEMA", (self.grantee, privilege, database)):
            return True
        return table is not None and bool(self.rows(
            "SELECT 1 FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = %s AND PRIVILEGE_TYPE = %s"
            " AND TABLE_SCHEMA = %s AND TABLE_NAME = %s", (self.grantee, privilege, database, table)))

    def exists(self, table: TableId) -> bool:
        return bool(self.rows("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                              (table.schema, table.name)))

    def version(self) -> str:
        return str(self.rows("SELECT VERSION()")[0][0])

    def columns(self, tables: list[TableId]) -> dict[TableId, tuple[str, ...]]:
        found: dict[TableId, tuple[str, ...]] = {}
        for table in tables:
            rows = self.rows(_COLUMNS, (table.schema, table.name, "%GENERATED%"))
            if rows:
                found[table] = tuple(str(r[0]) for r in rows)
        return found


def _server_name(version: str) -> str:
    return f"MariaDB {version.partition('-')[0]}" if "mariadb" in version.lower() else f"MySQL {version}"


class MySQLSourceInspector:
    def __init__(self, config: MigrationConfig) -> None:
        self._user = config.source.user
        self._session = _Session(connect(config.source, "source"))

    def close(self) -> None:
        self._session.conn.close()

    def findings(self, config: MigrationConfig) -> list[Finding]:
        s = self._session
        variables = {str(k).lower(): str(v) for k, v in s.rows(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN (%s, %s, %s, %s, %s)", _VARIABLES)}
        return [
            Finding(Level.OK, "source", "server", _server_name(s.version())),
            *_binlog_findings(variables),
            _server_id(variables.get("server_id", "0"), config.connector.server_id),
            _sql_mode(variables.get("sql_mode", "")),
            *self._privileges(config.source.database),
            *self._tables(config),
            *self._mariadb_only_types(config),
            self._watermark(config.watermark_table),
        ]

    def _privileges(self, database: str) -> list[Finding]:
        s = self._session
        # MariaDB 10.5+ calls REPLICATION CLIENT "BINLOG MONITOR" (the same privilege).
        needed = {"REPLICATION SLAVE": {"REPLICATION SLAVE"},
                  "REPLICATION CLIENT": {"REPLICATION CLIENT", "BINLOG MONITOR"}}
        missing = [name for name, aliases in needed.items() if not aliases & s.global_privileges]
        if missing:
            replication = Finding(Level.ERROR, "source", "replication privileges",
                                  f"user {self._user!r} lacks {', '.join(missing)}: the connector reads the binlog "
                                  "as a replica", f"GRANT {', '.join(missing)} ON *.* TO {self._user}")
        else:
            replication = Finding(Level.OK, "source", "replication privileges",
                                  f"user {self._user!r} has {', '.join(needed)}")
        return [replication, self._lock_privilege(database)]

    def _lock_privilege(self, database: str) -> Finding:
        """The connector locks while it reads the tables' schema at its start (a global read lock with
        RELOAD, else LOCK TABLES on the tables; seen: a task failing for want of either). MariaDB
        reports the binlog position of a consistent snapshot (binlog_snapshot_*); MySQL does not, so
        our copier takes a brief global read lock there too, which needs RELOAD."""
        s = self._session
        reload = "RELOAD" in s.global_privileges
        if not s.rows("SHOW SESSION STATUS LIKE 'binlog_snapshot_file'"):
            if reload:
                return Finding(Level.OK, "source", "lock privileges", f"user {self._user!r} has RELOAD")
            return Finding(Level.ERROR, "source", "lock privileges",
                           f"user {self._user!r} lacks RELOAD: the connector and the snapshot copy take a brief "
                           "global read lock", f"GRANT RELOAD ON *.* TO {self._user}")
        if reload or s.has("LOCK TABLES", database):
            held = "RELOAD" if reload else "LOCK TABLES"
            return Finding(Level.OK, "source", "lock privileges", f"user {self._user!r} has {held}")
        return Finding(Level.ERROR, "source", "lock privileges",
                       f"user {self._user!r} lacks RELOAD and LOCK TABLES: the connector locks the tables briefly "
                       "while it reads their schema", f"GRANT LOCK TABLES ON {database}.* TO {self._user} "
                       "(or RELOAD ON *.*)")

    def _tables(self, config: MigrationConfig) -> list[Finding]:
        database = config.source.database
        with self._session.conn.cursor() as cur:
            rows = [(TableId(database, name), engine, has_pk) for name, engine, has_pk in base_tables(cur, database)]
        selected = [row for row in rows if config.selects(row[0])]
        if not selected:
            return [Finding(Level.ERROR, "source", "tables", f"no table of {config.source.describe()} matches "
                            "tables.include", "check tables.include / tables.exclude (patterns over database.table)")]
        found: list[Finding] = []
        for table, engine, has_pk in selected:
            if engine.lower() != "innodb":
                found.append(Finding(Level.ERROR, "source", f"table {table}",
                                     f"uses the {engine or 'unknown'} engine: the consistent snapshot copy needs "
                                     "InnoDB", f"ALTER TABLE {table} ENGINE=InnoDB, or exclude it in tables.exclude"))
            if not self._readable(table):
                found.append(Finding(Level.ERROR, "source", f"table {table}",
                                     f"user {self._user!r} may not SELECT it (the snapshot and the connector read it)",
                                     f"GRANT SELECT ON {table} TO {self._user}"))
            if not has_pk:
                found.append(Finding(Level.WARNING, "source", f"table {table}",
                                     "has no primary key: it is copied in one chunk and each change matches the "
                                     "whole row", "add a primary key if the table is large or busy"))
        if not found:
            found.append(Finding(Level.OK, "source", "tables",
                                 f"{len(selected)} selected, all InnoDB with a primary key, readable"))
        return found

    def _mariadb_only_types(self, config: MigrationConfig) -> list[Finding]:
        """Columns of type UUID, INET4, INET6 anywhere on the server (as far as the user sees): Debezium
        3.0's MySQL connector fails on them (a NullPointerException in its DDL parser), again on every
        restart: in a migrated table always; elsewhere at start, when it reads the schema of every
        database, unless told to read the captured tables' only — and then still on a CREATE or ALTER
        naming such a type while it streams (it parses the DDL of every database)."""
        found: list[Finding] = []
        elsewhere: list[str] = []
        for schema, name, column, data_type in self._session.rows(_MARIADB_ONLY_COLUMNS, _MARIADB_ONLY):
            table = TableId(str(schema), str(name))
            wider = "CHAR(36)" if str(data_type).lower() == "uuid" else "VARCHAR(39)"
            if config.selects(table):
                found.append(Finding(Level.ERROR, "source", f"table {table}",
                                     f"column {column} is of MariaDB's type {str(data_type).upper()}, which "
                                     "Debezium's MySQL connector cannot read",
                                     f"ALTER TABLE {table} MODIFY {column} {wider} (same text), or exclude the "
                                     "table in tables.exclude"))
            else:
                elsewhere.append(f"{table}.{column}")
        if elsewhere:
            shown = ", ".join(elsewhere[:5]) + (f" and {len(elsewhere) - 5} more" if len(elsewhere) > 5 else "")
            if config.connector.overrides.get(_CAPTURED_ONLY, "").lower() == "true":
                found.append(Finding(Level.WARNING, "source", "MariaDB-only types",
                                     f"{shown} (not migrated) use UUID/INET4/INET6: the connector parses the DDL "
                                     "of every database while it streams, and a CREATE or ALTER naming one of "
                                     "these types stops it", "run no such DDL on this server during the migration"))
            else:
                found.append(Finding(Level.ERROR, "source", "MariaDB-only types",
                                     f"{shown} (not migrated) use UUID/INET4/INET6: Debezium's MySQL connector "
                                     "reads the schema of every database on the server at start and fails on "
                                     "these types", f"convert them (UUID → CHAR(36), INET → VARCHAR(39)), or set "
                                     f"connector.overrides: {{{_CAPTURED_ONLY}: 'true'}} (the connector then "
                                     "reads only the migrated tables' schemas; a table added to the selection "
                                     "later needs the connector re-created)"))
        return found

    def _readable(self, table: TableId) -> bool:
        try:
            self._session.rows(f"SELECT 1 FROM {_table(table)} LIMIT 0")
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in (ER_TABLEACCESS_DENIED, ER_DBACCESS_DENIED):
                return False
            raise
        return True

    def _watermark(self, table: TableId) -> Finding:
        s = self._session
        if s.exists(table):
            allowed = all(s.has(p, table.schema, table.name) for p in ("INSERT", "UPDATE"))
        else:
            allowed = all(s.has(p, table.schema) for p in ("CREATE", "INSERT", "UPDATE"))
        if allowed:
            return Finding(Level.OK, "source", f"watermark table {table}", "can be created and written")
        return Finding(Level.ERROR, "source", f"watermark table {table}",
                       f"user {self._user!r} may not create or write our watermark table (the snapshot proves "
                       "with it that the connector streams)",
                       f"GRANT CREATE, INSERT, UPDATE ON {table.schema}.* TO {self._user}")

    def columns(self, config: MigrationConfig) -> dict[TableId, tuple[str, ...]]:
        database = config.source.database
        with self._session.conn.cursor() as cur:
            tables = [TableId(database, name) for name, _, _ in base_tables(cur, database)]
        return self._session.columns(list(filter(config.selects, tables)))


def _binlog_findings(variables: dict[str, str]) -> list[Finding]:
    found = []
    log_bin = variables.get("log_bin", "OFF").upper()
    if log_bin != "ON":
        found.append(Finding(Level.ERROR, "source", "log_bin", "the binary log is off: there is no change stream",
                             "start the server with log_bin (and binlog_format=ROW, binlog_row_image=FULL)"))
    else:
        found.append(Finding(Level.OK, "source", "log_bin", "ON"))
    for name, wanted in (("binlog_format", "ROW"), ("binlog_row_image", "FULL")):
        value = variables.get(name, "?").upper()
        if value == wanted:
            found.append(Finding(Level.OK, "source", name, wanted))
        else:
            found.append(Finding(Level.ERROR, "source", name, f"is {value}; the connector needs {wanted}",
                                 f"SET GLOBAL {name} = {wanted} and set it in the server's config file"))
    return found


def _sql_mode(value: str) -> Finding:
    """ALLOW_INVALID_DATES lets the source hold dates such as 2020-02-31: the connector's task stops on
    such a value in the binlog, and PostgreSQL (or a strict MySQL target) refuses it in the copy."""
    modes = {m.strip().upper() for m in value.split(",") if m.strip()}
    if "ALLOW_INVALID_DATES" in modes:
        return Finding(Level.WARNING, "source", "sql_mode",
                       "has ALLOW_INVALID_DATES: a date such as 2020-02-31 stops the connector's task when it is "
                       "written and is refused by the target in the copy",
                       "remove ALLOW_INVALID_DATES from the global sql_mode (and from the applications' sessions); "
                       "find such values with WHERE d IS NOT NULL AND DAYOFMONTH(d) > DAYOFMONTH(LAST_DAY(d))")
    return Finding(Level.OK, "source", "sql_mode", "invalid dates are refused (no ALLOW_INVALID_DATES)")


def _server_id(server_value: str, connector_id: int) -> Finding:
    server_id = int(server_value) if server_value.isdigit() else 0
    if server_id == 0:
        return Finding(Level.ERROR, "source", "server_id", "is 0: the server refuses replicas",
                       "set server_id to a unique non-zero number in the server's config file")
    if server_id == connector_id:
        return Finding(Level.ERROR, "source", "server_id",
                       f"the server's server_id and connector.server_id are both {server_id}: the connector joins "
                       "as a replica and needs an id of its own", "set connector.server_id to another number")
    return Finding(Level.OK, "source", "server_id", f"{server_id}; the connector uses {connector_id}")


class MySQLTargetInspector:
    def __init__(self, config: MigrationConfig) -> None:
        self._user = config.target.user
        self._session = _Session(connect(config.target, "target"))

    def close(self) -> None:
        self._session.conn.close()

    def findings(self, config: MigrationConfig, absent: list[TableId]) -> list[Finding]:
        s = self._session
        found = [Finding(Level.OK, "target", "server", _server_name(s.version()))]
        state = config.state_schema
        if all(s.has(p, state) for p in ("CREATE", "SELECT", "INSERT", "UPDATE", "DELETE")):
            found.append(Finding(Level.OK, "target", f"state database {state}", "can be created and used"))
        else:
            found.append(Finding(Level.ERROR, "target", f"state database {state}",
                                 f"user {self._user!r} may not create or use our state database",
                                 f"GRANT ALL ON {state}.* TO {self._user}"))
        for database in sorted({t.schema for t in absent}):
            if not s.has("CREATE", database):
                found.append(Finding(Level.ERROR, "target", f"database {database}",
                                     f"user {self._user!r} may not create the migrated tables in it",
                                     f"GRANT CREATE ON {database}.* TO {self._user}"))
        return found

    def present(self, tables: list[TableId]) -> dict[TableId, PresentTable]:
        s = self._session
        columns = s.columns(tables)
        found: dict[TableId, PresentTable] = {}
        for table, names in columns.items():
            writable = all(s.has(p, table.schema, table.name) for p in ("SELECT", "INSERT", "UPDATE", "DELETE"))
            has_rows = writable and bool(s.rows(f"SELECT 1 FROM {_table(table)} LIMIT 1"))
            found[table] = PresentTable(names, has_rows, writable)
        return found
