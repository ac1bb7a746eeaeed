"""Integration fixtures: the real local stack (started once per session through the CLI, exactly as
a user starts it) and per-test isolation: a unique schema/database, topic prefix, connector, slot."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from replicator.dialects.mysql import open_connection
from replicator.stack.launcher import Database, LocalStack, StackInfo

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = Path(os.environ.get("REPLICATOR_TEST_STACK", ROOT / ".stack-test"))  # another dir: a second stack
CLI = [sys.executable, "-m", "replicator.cli"]

pytestmark = pytest.mark.integration

# Child processes a test started (appliers): whatever a failing test leaves running is killed after it.
CHILDREN: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    yield
    while CHILDREN:
        child = CHILDREN.pop()
        if child.poll() is None:
            child.kill()
            child.wait(30)


def run_cli(*args: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and result.returncode != 0:
        command = " ".join(args)
        raise AssertionError(f"replicator {command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    local = LocalStack(RUN_DIR)
    was_running = local.load() is not None and all(alive for _, _, alive in local.status())
    run_cli("stack", "up", "--run-dir", str(RUN_DIR))
    yield local.info()
    if not was_running:
        run_cli("stack", "down", "--run-dir", str(RUN_DIR))


def pg_connect(db: Database, dbname: str | None = None) -> psycopg.Connection[Any]:
    return psycopg.connect(host=db.host, port=db.port, user=db.user, password=db.password,
                           dbname=dbname or db.database, autocommit=True)


def my_connect(db: Database, database: str | None = None) -> Any:
    return open_connection(host=db.host, port=db.port, user=db.user, password=db.password,
                           database=database or db.database, autocommit=True)


class Scenario:
    """One test's private corner of the stack and a config file that points at it."""

    def __init__(self, stack: StackInfo, source: str, target: str, tmp_path: Path) -> None:
        self.stack = stack
        self.id = uuid.uuid4().hex[:8]
        self.prefix = f"t{self.id}"
        self.source = stack.database(source)
        self.target = stack.database(target)
        # PostgreSQL: a schema of our own in the shared database; MariaDB: a database of our own.
        self.namespace = f"s_{self.id}"
        self.config_path = tmp_path / "migration.yaml"
        self.connector = f"{self.prefix}-source"
        self.server_id = 10000 + int(self.id[:7], 16)  # unique among the tests' binlog readers
        self.extra: dict[str, Any] = {}

    def endpoint(self, db: Database, database: str) -> dict[str, Any]:
        return {"engine": db.engine, "host": db.host, "port": db.port, "database": database,
                "user": db.user, "password": db.password}

    def write_config(self, **overrides: Any) -> Path:
        source_db = self.namespace if self.source.engine == "mysql" else self.source.database
        config: dict[str, Any] = {
            "source": self.endpoint(self.source, source_db),
            "target": self.endpoint(self.target, self.target.database),
            "kafka": {"bootstrap_servers": self.stack.bootstrap_servers, "topic_prefix": self.prefix},
            "connect": {"url": self.stack.connect_url, "ready_timeout_s": 60},
            "tables": {"include": [f"{self.namespace}.*"]},
            "connector": {"heartbeat_interval_ms": 1000, "keep_alive_interval_ms": 3000,
                          "server_id": self.server_id,
                          "history_file": str(self.stack.run_dir / "connect" / f"history-{self.prefix}.dat")},
        }
        for key, value in overrides.items():
            section, _, name = key.partition("__")
            if name:
                config.setdefault(section, {})[name] = value
            else:
                config[section] = value
        self.config_path.write_text(yaml.safe_dump(config))
        return self.config_path

    def source_sql(self, *statements: str) -> None:
        if self.source.engine == "postgres":
            with pg_connect(self.source) as conn:
                for statement in statements:
                    conn.execute(statement)
        else:
            conn = my_connect(self.source, self.namespace)
            try:
                with conn.cursor() as cur:
                    for statement in statements:
                        cur.execute(statement)
            finally:
                conn.close()

    def create_namespace(self) -> None:
        if self.source.engine == "postgres":
            with pg_connect(self.source) as conn:
                conn.execute(f'CREATE SCHEMA "{self.namespace}"')
        else:
            conn = my_connect(self.source)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE `{self.namespace}`")
            finally:
                conn.close()

    def cleanup(self) -> None:
        if self.config_path.exists():
            run_cli("-c", str(self.config_path), "connectors", "delete", "--drop-slot", check=False)


def _scenario(stack: StackInfo, source: str, tmp_path: Path) -> Iterator[Scenario]:
    scenario = Scenario(stack, source, "pg-target", tmp_path)
    scenario.create_namespace()
    yield scenario
    scenario.cleanup()


@pytest.fixture
def pg_scenario(stack: StackInfo, tmp_path: Path) -> Iterator[Scenario]:
    yield from _scenario(stack, "pg-source", tmp_path)


@pytest.fixture
def my_scenario(stack: StackInfo, tmp_path: Path) -> Iterator[Scenario]:
    yield from _scenario(stack, "my-source", tmp_path)
