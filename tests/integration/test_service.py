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


def test_demo_shows_events_from_both_sources(stack: StackInfo) -> None:
    result = run_cli("stack", "demo", "--seconds", "3", "--run-dir", str(RUN_DIR))
    assert "[postgres] public.demo_customers op=c" in result.stdout
    assert "[mariadb ] app.demo_orders    op=c" in result.stdout
    for table in ("public.demo_customers", "public.demo_audit_log", "app.demo_orders"):  # applied, compared
        assert any(line.split()[:1] == [table] and line.endswith("target equals source")
                   for line in result.stdout.splitlines()), result.stdout
    for name in ("pg-to-pg", "mariadb-to-pg"):
        run_cli("-c", str(stack.run_dir / "configs" / f"{name}.yaml"), "connectors", "delete", "--drop-slot")
