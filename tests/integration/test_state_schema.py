"""Our state schema on a PostgreSQL target, created by several processes at once (apply, snapshot and
reconcile may start together): none of them fails."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from replicator.config import Endpoint, Engine
from replicator.dialects import target_writer_for
from replicator.stack.launcher import StackInfo
from tests.integration.conftest import pg_connect

pytestmark = pytest.mark.integration


def _create(writer: Any, start: threading.Barrier, errors: list[BaseException]) -> None:
    start.wait()
    try:
        writer.ensure_state()
    except BaseException as exc:  # collected: the assertion names them
        errors.append(exc)


def test_the_state_schema_created_by_several_sessions_at_once(stack: StackInfo) -> None:
    db = stack.database("pg-target")
    endpoint = Endpoint(engine=Engine.POSTGRES, host=db.host, port=db.port, database=db.database, user=db.user,
                        password=db.password)
    for _ in range(3):
        state = f"state_{uuid.uuid4().hex[:10]}"
        writers = [target_writer_for(endpoint, state) for _ in range(6)]
        start = threading.Barrier(len(writers))
        errors: list[BaseException] = []

        threads = [threading.Thread(target=_create, args=(w, start, errors)) for w in writers]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            for writer in writers:
                writer.close()
            with pg_connect(db) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {state} CASCADE")
        assert errors == [], errors
