"""`replicator serve`: registers the connector, serves /metrics and /healthz, exits 0 on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import pytest

from replicator.stack.components import free_port
from replicator.stack.launcher import StackInfo
from tests.integration.conftest import CLI, RUN_DIR, Scenario, run_cli

pytestmark = pytest.mark.integration


def test_serve_applies_the_connector_and_exposes_metrics(pg_scenario: Scenario) -> None:
    s = pg_scenario
    s.source_sql(f"CREATE TABLE {s.namespace}.t (id int PRIMARY KEY)")
    port = free_port()
    config = s.write_config(metrics={"address": f"127.0.0.1:{port}"})
    proc = subprocess.Popen([*CLI, "-c", str(config), "serve", "--apply-connectors"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        body = ""
        while time.monotonic() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                body = ""
            if f'replicator_connector_up{{connector="{s.connector}"}} 1.0' in body:
                break
            time.sleep(0.5)
        assert f'replicator_connector_up{{connector="{s.connector}"}} 1.0' in body
        assert 'replicator_build_info{version="' in body
        assert s.source.password not in body
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert s.source.password not in stderr


def test_demo_migrates_both_sources_live_and_reconciles_them(stack: StackInfo) -> None:
    """The demo's whole migration, twice on the same stack (a second run starts its tables over):
    seeded rows copied by the snapshot under live writes, change events applied, every table
    reconciled equal."""
    for _ in range(2):
        result = run_cli("stack", "demo", "--seconds", "3", "--run-dir", str(RUN_DIR))
        out = result.stdout
        assert "[postgres] public.demo_customers op=c" in out and "[mariadb ] app.demo_orders    op=c" in out, out
        for table in ("public.demo_customers", "public.demo_audit_log", "app.demo_orders"):
            assert f"[snapshot] {table}: " in out and "released to the change stream" in out, out
            assert any(line.split()[:1] == [table] and line.endswith("target equals source")
                       for line in out.splitlines()), out
        assert "WARNING" not in result.stderr, result.stderr
    for name in ("pg-to-pg", "mariadb-to-pg"):
        run_cli("-c", str(stack.run_dir / "configs" / f"{name}.yaml"), "connectors", "delete", "--drop-slot")


def test_serve_with_snapshot_copies_applies_and_shows_snapshot_metrics(pg_scenario: Scenario) -> None:
    s = pg_scenario
    ns = s.namespace
    s.source_sql(f"CREATE TABLE {ns}.t (id int PRIMARY KEY, v text)",
                 f"INSERT INTO {ns}.t SELECT g, 'v' || g FROM generate_series(1, 5000) g")
    port = free_port()
    config = s.write_config(metrics={"address": f"127.0.0.1:{port}"}, snapshot={"chunk_rows": 1000})
    proc = subprocess.Popen([*CLI, "-c", str(config), "serve", "--apply-connectors", "--snapshot"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    released = f'replicator_snapshot_table_released{{table="{ns}.t"}} 1.0'
    try:
        deadline = time.monotonic() + 90
        body = ""
        while time.monotonic() < deadline and released not in body:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                body = ""
            time.sleep(0.5)
        assert released in body, body
        assert f'replicator_snapshot_rows_total{{table="{ns}.t"}} 5000.0' in body
        assert f'replicator_snapshot_chunks_total{{table="{ns}.t"}} 5.0' in body
        s.source_sql(f"UPDATE {ns}.t SET v = 'changed' WHERE id = 7")
        from tests.integration.apply_support import wait_equal

        wait_equal(s, f"SELECT * FROM {ns}.t ORDER BY id", timeout_s=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "every selected table is copied" in stderr, stderr
