"""Helpers of the apply tests: run `replicator apply` as a real process, compare tables by query."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pymysql

from replicator.stack.components import free_port
from tests.integration.conftest import CHILDREN, CLI, Scenario, my_connect, pg_connect


class ApplyProcess:
    """`replicator -c CONFIG apply` as a child process, with its own metrics port."""

    def __init__(self, config: Path, log: Path, fault: str | None = None,
                 command: tuple[str, ...] = ("apply",)) -> None:
        self.config = config
        self.log = log
        self.fault = fault
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ApplyProcess:
        env = {**os.environ, "REPLICATOR_METRICS__ADDRESS": f"127.0.0.1:{free_port()}"}
        if self.fault:
            env["REPLICATOR_FAULT"] = self.fault
        self.metrics_address = env["REPLICATOR_METRICS__ADDRESS"]
        handle = self.log.open("ab")
        self.proc = subprocess.Popen([*CLI, "-c", str(self.config), *self.command], stdout=handle, stderr=handle,
                                     env=env)
        CHILDREN.append(self.proc)
        handle.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(30)

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def metric(self, selector: str) -> float:
        """Sum of the samples of `name` or `name{label="value",...}` (labels in any order) on /metrics."""
        import re

        import httpx

        name, _, wanted = selector.partition("{")
        want = set(re.findall(r'(\w+)="([^"]*)"', wanted))
        body = httpx.get(f"http://{self.metrics_address}/metrics", timeout=5).text
        total = 0.0
        for line in body.splitlines():
            sample, _, value = line.rpartition(" ")
            sample_name, _, labels = sample.partition("{")
            if sample_name == name and want <= set(re.findall(r'(\w+)="([^"]*)"', labels)):
                total += float(value)
        return total

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def source_rows(s: Scenario, query: str) -> list[tuple[Any, ...]]:
    return fetch(s.source.engine, s, query, source=True)


def target_rows(s: Scenario, query: str) -> list[tuple[Any, ...]]:
    return fetch(s.target.engine, s, query, source=False)


def fetch(engine: str, s: Scenario, query: str, *, source: bool) -> list[tuple[Any, ...]]:
    db = s.source if source else s.target
    if engine == "postgres":
        with pg_connect(db) as conn:
            return [tuple(r) for r in conn.execute(query).fetchall()]
    conn = my_connect(db, s.namespace if source else None)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def target_sql(s: Scenario, *statements: str) -> None:
    if s.target.engine == "postgres":
        with pg_connect(s.target) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    conn = my_connect(s.target)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, proc: ApplyProcess | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.proc is not None and not proc.alive() and proc.proc.returncode != 0:
            raise AssertionError(f"the applier exited {proc.proc.returncode} while waiting for {what}:\n"
                                 f"{proc.output()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}"
                         + (f"\napplier output:\n{proc.output()[-3000:]}" if proc else ""))


def wait_equal(s: Scenario, source_query: str, target_query: str | None = None, timeout_s: float = 90,
               proc: ApplyProcess | None = None) -> list[tuple[Any, ...]]:
    """Wait until both queries return the same rows; return them."""
    target_query = target_query or source_query
    last: dict[str, Any] = {}

    def same() -> bool:
        try:
            last["source"] = source_rows(s, source_query)
            last["target"] = target_rows(s, target_query)
        except (psycopg.Error, pymysql.MySQLError) as exc:  # e.g. a column the applier adds later
            last["error"] = exc
            return False
        return bool(last["source"] == last["target"])

    try:
        wait_until(same, timeout_s, "the target to equal the source", proc)
    except AssertionError as exc:
        src, dst = last.get("source", []), last.get("target", [])
        missing = [r for r in src if r not in dst][:5]
        extra = [r for r in dst if r not in src][:5]
        raise AssertionError(f"{exc}\nlast query error: {last.get('error')}\n"
                             f"source rows {len(src)}, target rows {len(dst)}; "
                             f"missing on target {missing}; extra on target {extra}") from None
    return list(last["source"])
