"""PostgreSQL preflight (`replicator check`): what logical replication, the snapshot copy and the
applier need of a PostgreSQL source or target, read from the catalog.

Nothing here changes the server: privileges are read with `has_*_privilege` (which answer for
superusers and role membership too), and the one setting that can only be tried (the apply session's
`session_replication_role`) is set inside a transaction that is rolled back.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from replicator.config import MigrationConfig
from replicator.dialects.base import PresentTable
from replicator.dialects.postgres import connect
from replicator.model import Finding, Level, SourceTable, TableId

_SETTINGS = """
SELECT name, setting FROM pg_settings
WHERE name IN ('wal_level', 'max_replication_slots', 'max_wal_senders', 'server_version')
"""

# Every user table with what preflight needs: key, replica identity, SELECT, ownership (Debezium
# creates the publication FOR TABLE …, which PostgreSQL allows only to the tables' owner).
_TABLES = """
SELECT n.nspname, c.relname, c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident),
       has_table_privilege(c.oid, 'SELECT') AND has_schema_privilege(n.oid, 'USAGE'),
       pg_has_role(c.relowner, 'USAGE'), c.oid
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""

# By oid, never by a name cast to regclass: that needs USAGE on the schema, which preflight checks.
_COLUMNS = """
SELECT a.attname FROM pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum
"""


def _oid(conn: psycopg.Connection[Any], table: TableId) -> int | None:
    row = conn.execute("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                       " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
                       (table.schema, table.name)).fetchone()
    return None if row is None else int(row[0])


def _may(conn: psycopg.Connection[Any], oid: int, *privileges: str) -> bool:
    """Every one of `privileges` on the table, and USAGE on its schema."""
    row = conn.execute(
        "SELECT bool_and(has_table_privilege(c.oid, p)) AND has_schema_privilege(c.relnamespace, 'USAGE')"
        " FROM pg_class c, unnest(%s::text[]) AS p WHERE c.oid = %s GROUP BY c.relnamespace",
        (list(privileges), oid)).fetchone()
    return bool(row and row[0])


def _can_create_in(conn: psycopg.Connection[Any], schema: str) -> bool:
    """The user can create tables in `schema`: CREATE and USAGE on it, or CREATE on the database when
    the schema does not exist yet (it is created first)."""
    row = conn.execute(
        "SELECT has_schema_privilege(oid, 'CREATE') AND has_schema_privilege(oid, 'USAGE')"
        " FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if row is not None:
        return bool(row[0])
    row = conn.execute("SELECT has_database_privilege(current_database(), 'CREATE')").fetchone()
    return bool(row and row[0])


class PostgresSourceInspector:
    def __init__(self, config: MigrationConfig) -> None:
        self._user = config.source.user
        self._conn: psycopg.Connection[Any] = connect(config.source, "source")

    def close(self) -> None:
        self._conn.close()

    def findings(self, config: MigrationConfig) -> list[Finding]:
        settings = {str(k): str(v) for k, v in self._conn.execute(_SETTINGS).fetchall()}
        role = self._conn.execute("SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
                                  ).fetchone()
        superuser, replication = (bool(role[0]), bool(role[1])) if role else (False, False)
        tables = [row for row in self._conn.execute(_TABLES).fetchall()
                  if config.selects(TableId(str(row[0]), str(row[1])))]
        return [
            Finding(Level.OK, "source", "server", f"PostgreSQL {settings.get('server_version', '?')}"),
            _wal_level(settings.get("wal_level", "?")),
            _replication_role(self._user, superuser, replication),
            *self._capacity(config, settings),
            *self._publication(config, superuser, tables),
            *_table_findings(config, tables),
            self._watermark(config.watermark_table),
        ]

    def _capacity(self, config: MigrationConfig, settings: dict[str, str]) -> list[Finding]:
        """A new slot needs a free slot; the connector's stream needs a free WAL sender. Our own slot,
        when it exists already, is reused (and its stream, when active, holds its sender)."""
        slots = self._conn.execute("SELECT slot_name, active, database, plugin FROM pg_replication_slots"
                                   ).fetchall()
        ours = next((s for s in slots if s[0] == config.slot_name), None)
        senders = self._conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
        max_slots, max_senders = int(settings.get("max_replication_slots", 0)), int(settings.get("max_wal_senders", 0))
        found: list[Finding] = []
        if ours is not None:
            database, plugin = str(ours[2]), str(ours[3])
            if database != config.source.database or plugin != "pgoutput":
                found.append(Finding(Level.ERROR, "source", f"slot {config.slot_name}",
                                     f"exists for database {database!r} with plugin {plugin!r}; the connector needs "
                                     f"database {config.source.database!r} with pgoutput",
                                     f"drop it (SELECT pg_drop_replication_slot('{config.slot_name}')) if unused, "
                                     "or set connector.slot_name to another name"))
            else:
                found.append(Finding(Level.OK, "source", f"slot {config.slot_name}",
                                     "exists: the connector resumes from it"))
        elif len(slots) >= max_slots:
            found.append(Finding(Level.ERROR, "source", "max_replication_slots",
                                 f"all {max_slots} replication slots are in use; the connector needs one",
                                 "raise max_replication_slots (restart needed), or drop an unused slot with "
                                 "pg_drop_replication_slot(name)"))
        else:
            found.append(Finding(Level.OK, "source", "max_replication_slots",
                                 f"{max_slots - len(slots)} of {max_slots} free"))
        busy = int(senders[0]) if senders else 0
        holds_sender = ours is not None and bool(ours[1])
        if busy >= max_senders and not holds_sender:
            found.append(Finding(Level.ERROR, "source", "max_wal_senders",
                                 f"all {max_senders} WAL senders are busy; the connector needs one",
                                 "raise max_wal_senders (restart needed), or stop an unused replication client"))
        else:
            found.append(Finding(Level.OK, "source", "max_wal_senders", f"{max_senders - busy} of {max_senders} free"))
        return found

    def _publication(self, config: MigrationConfig, superuser: bool, tables: list[Any]) -> list[Finding]:
        name = config.publication_name
        row = self._conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
        if row is not None:
            return [Finding(Level.OK, "source", f"publication {name}", "exists")]
        if superuser:
            return [Finding(Level.OK, "source", f"publication {name}", "the connector creates it")]
        may_create = self._conn.execute("SELECT has_database_privilege(current_database(), 'CREATE')").fetchone()
        found: list[Finding] = []
        if not (may_create and may_create[0]):
            found.append(Finding(Level.ERROR, "source", f"publication {name}",
                                 f"absent, and user {self._user!r} may not create it (no CREATE on the database)",
                                 f"GRANT CREATE ON DATABASE {config.source.database} TO {self._user}, or create "
                                 f"the publication as the tables' owner: CREATE PUBLICATION {name} FOR TABLE …"))
        foreign = [f"{r[0]}.{r[1]}" for r in tables if not r[6]]
        if foreign:
            found.append(Finding(Level.ERROR, "source", f"publication {name}",
                                 f"absent, and user {self._user!r} does not own {_some(foreign)}: only the owner "
                                 "may add a table to a publication",
                                 f"create the publication as their owner: CREATE PUBLICATION {name} FOR TABLE …, "
                                 f"or make {self._user} a member of the owning role"))
        return found or [Finding(Level.OK, "source", f"publication {name}", "the connector creates it")]

    def _watermark(self, table: TableId) -> Finding:
        oid = _oid(self._conn, table)
        allowed = _can_create_in(self._conn, table.schema) if oid is None else _may(self._conn, oid, "INSERT", "UPDATE")
        if allowed:
            return Finding(Level.OK, "source", f"watermark table {table}", "can be created and written")
        return Finding(Level.ERROR, "source", f"watermark table {table}",
                       f"user {self._user!r} may not create or write our watermark table (the snapshot proves "
                       "with it that the connector streams)",
                       f"GRANT CREATE ON DATABASE to {self._user}, or create schema {table.schema} owned by it")

    def columns(self, config: MigrationConfig) -> dict[TableId, tuple[str, ...]]:
        found: dict[TableId, tuple[str, ...]] = {}
        for row in self._conn.execute(_TABLES).fetchall():
            table = TableId(str(row[0]), str(row[1]))
            if config.selects(table):
                found[table] = tuple(str(c[0]) for c in self._conn.execute(_COLUMNS, (row[7],)).fetchall())
        return found


def _wal_level(value: str) -> Finding:
    if value == "logical":
        return Finding(Level.OK, "source", "wal_level", "logical")
    return Finding(Level.ERROR, "source", "wal_level", f"is {value!r}; logical decoding needs 'logical'",
                   "ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL")


def _replication_role(user: str, superuser: bool, replication: bool) -> Finding:
    if superuser or replication:
        held = "SUPERUSER" if superuser else "REPLICATION"
        return Finding(Level.OK, "source", "privileges", f"user {user!r} has {held}")
    return Finding(Level.ERROR, "source", "privileges",
                   f"user {user!r} lacks the REPLICATION attribute: the connector cannot open a replication slot",
                   f"ALTER ROLE {user} REPLICATION (on RDS/Cloud SQL: grant rds_replication / cloudsqlsuperuser)")


def _table_findings(config: MigrationConfig, rows: list[Any]) -> list[Finding]:
    if not rows:
        return [Finding(Level.ERROR, "source", "tables",
                        f"no table of {config.source.describe()} matches tables.include",
                        "check tables.include / tables.exclude (patterns over schema.table)")]
    found: list[Finding] = []
    for schema, name, ident, has_pk, has_index, can_select, *_ in rows:
        table = SourceTable(TableId(str(schema), str(name)), bool(has_pk), str(ident), bool(has_index))
        if not can_select:
            found.append(Finding(Level.ERROR, "source", f"table {table.table}",
                                 f"user {config.source.user!r} may not SELECT it (the snapshot reads it)",
                                 f"GRANT SELECT ON {table.table} TO {config.source.user}"))
        if not table.publishable:
            found.append(Finding(Level.ERROR, "source", f"table {table.table}",
                                 "has no primary key and REPLICA IDENTITY is not FULL: once it is published, "
                                 "PostgreSQL rejects every UPDATE and DELETE on it",
                                 f"add a primary key, or ALTER TABLE {table.table} REPLICA IDENTITY FULL "
                                 "(connectors apply --fix-replica-identity does it)"))
        elif not table.has_primary_key:
            found.append(_no_key_warning(table.table))
    if not found:
        found.append(Finding(Level.OK, "source", "tables",
                             f"{len(rows)} selected, each with a primary key or REPLICA IDENTITY FULL, readable"))
    return found


def _no_key_warning(table: TableId) -> Finding:
    return Finding(Level.WARNING, "source", f"table {table}",
                   "has no primary key: it is copied in one chunk and each change matches the whole row",
                   "add a primary key if the table is large or busy")


def _some(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


class PostgresTargetInspector:
    def __init__(self, config: MigrationConfig) -> None:
        self._user = config.target.user
        self._conn: psycopg.Connection[Any] = connect(config.target, "target")

    def close(self) -> None:
        self._conn.close()

    def findings(self, config: MigrationConfig, absent: list[TableId]) -> list[Finding]:
        version = self._conn.execute("SHOW server_version").fetchone()
        found = [Finding(Level.OK, "target", "server", f"PostgreSQL {version[0] if version else '?'}")]
        state = config.state_schema
        if _can_create_in(self._conn, state):
            found.append(Finding(Level.OK, "target", f"state schema {state}", "can be created and used"))
        else:
            found.append(Finding(Level.ERROR, "target", f"state schema {state}",
                                 f"user {self._user!r} may not create our state schema or tables in it",
                                 f"GRANT CREATE ON DATABASE {config.target.database} TO {self._user}, or create "
                                 f"schema {state} owned by it"))
        found.append(self._replication_role_setting())
        for schema in sorted({t.schema for t in absent}):
            if not _can_create_in(self._conn, schema):
                found.append(Finding(Level.ERROR, "target", f"schema {schema}",
                                     f"user {self._user!r} may not create the migrated tables in it",
                                     f"GRANT CREATE, USAGE ON SCHEMA {schema} TO {self._user} (or CREATE on the "
                                     "database when the schema does not exist)"))
        return found

    def _replication_role_setting(self) -> Finding:
        """The applier sets session_replication_role = replica (foreign keys and triggers do not fire,
        so tables may arrive in any order). Tried in a transaction that is rolled back."""
        try:
            with self._conn.transaction(force_rollback=True):
                self._conn.execute("SET LOCAL session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            return Finding(Level.ERROR, "target", "session_replication_role",
                           f"user {self._user!r} may not set it to replica (the applier does, so that foreign "
                           "keys and triggers do not fire on replicated rows)",
                           f"make {self._user} superuser, or on PostgreSQL 15+: "
                           f"GRANT SET ON PARAMETER session_replication_role TO {self._user}")
        return Finding(Level.OK, "target", "session_replication_role", "can be set to replica")

    def present(self, tables: list[TableId]) -> dict[TableId, PresentTable]:
        found: dict[TableId, PresentTable] = {}
        for table in tables:
            oid = _oid(self._conn, table)
            if oid is None:
                continue
            columns = tuple(str(c[0]) for c in self._conn.execute(_COLUMNS, (oid,)).fetchall())
            if not _may(self._conn, oid, "SELECT", "INSERT", "UPDATE", "DELETE"):
                found[table] = PresentTable(columns, has_rows=False, writable=False)
                continue
            rows = self._conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(
                sql.Identifier(table.schema, table.name))).fetchone()
            found[table] = PresentTable(columns, bool(rows and rows[0]))
        return found
