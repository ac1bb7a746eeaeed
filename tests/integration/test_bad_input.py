"""Bad input against real services: each gives one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import pytest

from replicator.stack.components import free_port
from tests.integration.conftest import Scenario, run_cli

pytestmark = pytest.mark.integration


def one_line_failure(*args: str) -> str:
    result = run_cli(*args, check=False)
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("replicator: error: ")
    return lines[0]


@pytest.fixture
def ready(pg_scenario: Scenario) -> Scenario:
    pg_scenario.source_sql(f"CREATE TABLE {pg_scenario.namespace}.t (id int PRIMARY KEY)")
    return pg_scenario


def test_unreachable_connect(ready: Scenario) -> None:
    port = free_port()
    config = str(ready.write_config(connect={"url": f"http://127.0.0.1:{port}"}))
    line = one_line_failure("-c", config, "connectors", "apply")
    assert f"cannot reach Kafka Connect at http://127.0.0.1:{port}" in line and "connect.url" in line


def test_unreachable_kafka(ready: Scenario) -> None:
    port = free_port()
    config = str(ready.write_config(kafka={"bootstrap_servers": f"127.0.0.1:{port}", "topic_prefix": ready.prefix}))
    line = one_line_failure("-c", config, "connectors", "apply")
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in line and "kafka.bootstrap_servers" in line


def test_source_port_where_nothing_listens(ready: Scenario) -> None:
    config = ready.write_config()
    text = config.read_text().replace(f"port: {ready.source.port}", f"port: {free_port()}", 1)
    config.write_text(text)
    line = one_line_failure("-c", str(config), "connectors", "apply")
    assert "cannot connect to the source" in line and "source.port" in line


def test_wrong_source_password(ready: Scenario) -> None:
    config = ready.write_config()
    config.write_text(config.read_text().replace(ready.source.password, "wrong-password", 1))
    line = one_line_failure("-c", str(config), "connectors", "apply")
    assert "password authentication failed" in line and "source.password" in line
    assert "wrong-password" not in line


def test_connector_that_fails_reports_its_cause(ready: Scenario) -> None:
    # Our own catalog check passes; the connector itself gets a wrong password from an override.
    config = str(ready.write_config(connector={"overrides": {"database.password": "not-the-password"}}))
    line = one_line_failure("-c", config, "connectors", "apply")
    assert "connector" in line and "password authentication failed" in line
    assert "not-the-password" not in line


def test_mariadb_wrong_password(my_scenario: Scenario) -> None:
    config = my_scenario.write_config()
    config.write_text(config.read_text().replace(my_scenario.source.password, "nope", 1))
    line = one_line_failure("-c", str(config), "connectors", "apply")
    assert "access denied" in line and "source.password" in line
