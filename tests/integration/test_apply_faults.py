"""Exactly-once effect under faults, through real Debezium and a real broker: kill -9 of the applier
at random moments, kill -9 of Kafka Connect (which then re-sends events under new offsets), a
zombie instance (SIGSTOP past its session timeout), and two instances in one group.

Each test runs a steady stream of source writes on a table with a primary key and on a table
without one. The no-PK table is the witness of double application: its inserts append, so an
insert applied twice leaves a duplicate row that the final comparison (all rows, duplicates
included) catches; its updates change exactly one of several identical rows.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from replicator.stack.launcher import LocalStack
from tests.integration.apply_support import ApplyProcess, target_sql, wait_equal, wait_until
from tests.integration.conftest import RUN_DIR, Scenario, pg_connect, run_cli

pytestmark = pytest.mark.integration


class SourceLoad(threading.Thread):
    """Steady writes on the PostgreSQL source: inserts, updates, deletes, and no-PK appends."""

    def __init__(self, s: Scenario, seed: int = 7) -> None:
        super().__init__(daemon=True)
        self.s = s
        self.stop = threading.Event()
        self.random = random.Random(seed)
        self.transactions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        ns = self.s.namespace
        try:
            with pg_connect(self.s.source) as conn:
                next_id = 1
                while not self.stop.is_set():
                    with conn.transaction():
                        for _ in range(self.random.randint(1, 5)):
                            conn.execute(f"INSERT INTO {ns}.items VALUES (%s, %s, 0)", (next_id, f"n{next_id}"))
                            next_id += 1
                        target = self.random.randint(1, next_id)
                        conn.execute(f"UPDATE {ns}.items SET qty = qty + 1 WHERE id = %s", (target,))
                        if self.random.random() < 0.3:
                            conn.execute(f"DELETE FROM {ns}.items WHERE id = %s", (self.random.randint(1, next_id),))
                        # identical rows on purpose: only exact, one-row matching keeps them right
                        conn.execute(f"INSERT INTO {ns}.journal VALUES (%s, 'same')", (next_id % 7,))
                        if self.random.random() < 0.3:
                            conn.execute(f"UPDATE {ns}.journal SET n = n + 100 WHERE ctid = "
                                         f"(SELECT ctid FROM {ns}.journal WHERE n = %s LIMIT 1)",
                                         (self.random.randint(0, 6),))
                    self.transactions += 1
                    time.sleep(0.01)
        except BaseException as exc:
            self.error = exc


def prepare(s: Scenario) -> Path:
    ns = s.namespace
    tables = (f"CREATE TABLE {ns}.items (id int PRIMARY KEY, name text, qty int NOT NULL)",
              f"CREATE TABLE {ns}.journal (n int, tag text)")
    s.source_sql(*tables, f"ALTER TABLE {ns}.journal REPLICA IDENTITY FULL")
    target_sql(s, f"CREATE SCHEMA {ns}", *tables)
    config = s.write_config(apply={"batch_max_events": 200, "session_timeout_ms": 6000,
                                   "max_poll_interval_ms": 10000})
    run_cli("-c", str(config), "connectors", "apply")
    return config


def assert_converged(s: Scenario, proc: ApplyProcess | None = None) -> None:
    ns = s.namespace
    wait_equal(s, f"SELECT * FROM {ns}.items ORDER BY id", timeout_s=120, proc=proc)
    wait_equal(s, f"SELECT n, tag, count(*) FROM {ns}.journal GROUP BY n, tag ORDER BY n, tag", timeout_s=60,
               proc=proc)


def test_kill9_applier_ten_times_under_a_steady_stream(pg_scenario: Scenario, tmp_path: Path) -> None:
    """Killed at random moments and at the named points around the commit, then restarted."""
    s = pg_scenario
    config = prepare(s)
    load = SourceLoad(s)
    load.start()
    log = tmp_path / "apply.log"
    chance = random.Random(11)
    proc = ApplyProcess(config, log)
    try:
        for round_ in range(12):
            point = ("apply.before-commit", "apply.after-commit", None)[round_ % 3]
            fault = None if point is None else f"{point}:kill:{chance.randint(1, 4)}"
            proc = ApplyProcess(config, log, fault=fault).start()
            if point is None:
                time.sleep(chance.uniform(0.5, 3.0))
                proc.kill()
            else:
                wait_until(lambda p=proc: not p.alive(), 60,  # type: ignore[misc]
                           f"the applier to kill itself at {point}")
        proc = ApplyProcess(config, log).start()
        load.stop.set()
        load.join(30)
        assert load.error is None, load.error
        assert load.transactions > 100
        assert_converged(s, proc)
    finally:
        load.stop.set()
        proc.stop()
    assert proc.proc is not None and proc.proc.returncode == 0


def test_kill9_kafka_connect_resent_events_change_nothing(pg_scenario: Scenario, tmp_path: Path) -> None:
    s = pg_scenario
    config = prepare(s)
    load = SourceLoad(s, seed=3)
    load.start()
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    local = LocalStack(RUN_DIR)
    try:
        time.sleep(4)
        local.stop("connect", kill=True)
        time.sleep(2)
        run_cli("stack", "up", "--run-dir", str(RUN_DIR))  # restarts only Connect
        run_cli("-c", str(config), "connectors", "apply")  # waits until the connector runs again
        time.sleep(4)
        load.stop.set()
        load.join(30)
        assert load.error is None, load.error
        assert_converged(s, proc)
        # Connect re-sent what it had not flushed as its offset: those events arrived twice in Kafka,
        # under new offsets, and were recognised by their source position.
        assert proc.metric('replicator_apply_skipped_events_total{reason="duplicate"}') > 0
    finally:
        load.stop.set()
        proc.stop()


def committed_batches(proc: ApplyProcess) -> float:
    try:
        return proc.metric("replicator_apply_batch_seconds_count")
    except httpx.HTTPError:  # its /metrics is not up yet
        return 0.0


def process_state(proc: ApplyProcess) -> str:
    assert proc.proc is not None
    return Path(f"/proc/{proc.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_zombie_instance_writes_nothing_stale_and_two_instances_converge(pg_scenario: Scenario,
                                                                          tmp_path: Path) -> None:
    """The first instance stops itself holding a fetched batch, just before its transaction (as a
    process stuck past max.poll.interval/session timeout would); the group gives its partitions to
    the second, which applies on; woken up, the first must find its offsets moved and roll back."""
    s = pg_scenario
    config = prepare(s)
    load = SourceLoad(s, seed=5)
    load.start()
    first = ApplyProcess(config, tmp_path / "first.log", fault="apply.before-lock:stop:3").start()
    wait_until(lambda: process_state(first) == "T", 60, "the first instance to stop at apply.before-lock")
    second = ApplyProcess(config, tmp_path / "second.log").start()
    try:
        # Past the session timeout the group gives every partition to the second, which applies
        # on: wait for a few of its batches, so that the first's held batch is stale for sure.
        wait_until(lambda: committed_batches(second) >= 3, 90, "the second instance to apply batches", second)
        time.sleep(2)
        first.signal(signal.SIGCONT)
        time.sleep(5)
        load.stop.set()
        load.join(30)
        assert load.error is None, load.error
        assert_converged(s)
        assert first.alive() and second.alive()
        assert first.metric('replicator_apply_skipped_events_total{reason="fenced"}') > 0, first.output()
    finally:
        load.stop.set()
        first.signal(signal.SIGCONT)
        codes = (first.stop(), second.stop())
    assert codes == (0, 0), first.output() + second.output()


def test_target_connection_killed_under_load_is_retried(pg_scenario: Scenario, tmp_path: Path) -> None:
    """The target drops the applier's connection mid-stream (pg_terminate_backend): the batch rolls
    back, the applier reconnects, re-reads its offsets and goes on; nothing lost, nothing doubled."""
    s = pg_scenario
    config = prepare(s)
    load = SourceLoad(s, seed=9)
    load.start()
    proc = ApplyProcess(config, tmp_path / "apply.log").start()
    try:
        for _ in range(5):
            time.sleep(1.5)
            target_sql(s, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'replicator' AND pid <> pg_backend_pid()")
        load.stop.set()
        load.join(30)
        assert load.error is None, load.error
        assert_converged(s, proc)
        assert proc.metric("replicator_apply_retries_total") >= 1, proc.output()
    finally:
        load.stop.set()
        code = proc.stop()
    assert code == 0, proc.output()
