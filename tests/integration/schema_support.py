"""Helpers of the schema-translation tests: a private source and target namespace per test, the
config pointing at them, SQL on either side, and a row written through the apply stage's writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replicator.config import MigrationConfig, load_config
from replicator.dialects import target_writer_for
from replicator.model import TableId
from replicator.stack.launcher import StackInfo
from tests.integration.conftest import Scenario, my_connect, pg_connect


class SchemaScenario(Scenario):
    """A source namespace and the same-named target namespace (schema or database), both dropped after."""

    def __init__(self, stack: StackInfo, source: str, target: str, tmp_path: Path) -> None:
        super().__init__(stack, source, target, tmp_path)
        self.create_namespace()

    def config(self, **overrides: Any) -> MigrationConfig:
        return load_config(self.write_config(**overrides))

    def table(self, name: str) -> TableId:
        return TableId(self.namespace, name)

    def target_sql(self, *statements: str) -> None:
        run_sql(self.target, statements, self.namespace if self.target.engine == "mysql" else None)

    def target_rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return query_rows(self.target, query, params)

    def source_rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return query_rows(self.source, query, params)

    def write_row(self, table: str, row: dict[str, Any]) -> None:
        """Upsert one row of decoded Python values as the apply stage does (its writer and binding)."""
        config = self.config()
        writer = target_writer_for(config.target, config.state_schema)
        try:
            described = writer.describe(self.table(table))
            assert described is not None, f"{table} is not on the target"
            columns = tuple(row)
            writer.begin()
            if described.key:
                writer.upsert(described, columns, [tuple(row.values())])
            else:
                writer.insert_rows(described, columns, [tuple(row.values())])
            writer.commit()
        finally:
            writer.close()

    def drop(self) -> None:
        for db in (self.source, self.target):
            if db.engine == "postgres":
                with pg_connect(db) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{self.namespace}" CASCADE')
            else:
                conn = my_connect(db)
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"DROP DATABASE IF EXISTS `{self.namespace}`")
                finally:
                    conn.close()


def run_sql(db: Any, statements: tuple[str, ...] | list[str], database: str | None = None) -> None:
    if db.engine == "postgres":
        with pg_connect(db) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    conn = my_connect(db, database) if database else my_connect(db)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def query_rows(db: Any, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if db.engine == "postgres":
        with pg_connect(db) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            return list(conn.execute(query, params or None).fetchall())
    conn = my_connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(query, params or None)
            return list(cur.fetchall())
    finally:
        conn.close()
