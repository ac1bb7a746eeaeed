"""The CLI on bad input, without any service: one line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "replicator.cli"]

GOOD = """
source: {engine: postgres, host: 127.0.0.1, port: 5432, database: app, user: u, password: hunter2}
target: {engine: postgres, host: 127.0.0.1, port: 5433, database: app, user: u, password: hunter3}
kafka: {bootstrap_servers: "127.0.0.1:9092"}
connect: {url: "http://127.0.0.1:8083"}
"""


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, env=env, check=False)


def failure_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("stack", "connectors", "config", "schema"):
        assert command in result.stdout
    assert all(word in run("connectors", "--help").stdout for word in ("apply", "status", "delete"))
    assert all(word in run("stack", "--help").stdout for word in ("up", "down", "status"))
    assert all(word in run("schema", "--help").stdout for word in ("--dry-run", "--phase", "post-load"))


def test_unknown_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(GOOD + "tables: {inclde: [a.b]}\n")
    result = run("-c", str(config), "connectors", "apply")
    assert result.returncode == 2
    assert "unknown key 'tables.inclde'; did you mean 'include'?" in failure_line(result)


def test_wrong_port(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(GOOD.replace("port: 5433", "port: 99999"))
    result = run("-c", str(config), "config")
    assert result.returncode == 2
    assert "target.port" in failure_line(result)


def test_missing_config() -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "REPLICATOR_CONFIG"}
    assert "no config file given" in failure_line(run("connectors", "status", env=env))


def test_config_command_hides_secrets(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(GOOD)
    result = run("-c", str(config), "config")
    assert result.returncode == 0
    assert "hunter2" not in result.stdout and "hunter3" not in result.stdout
    assert "**********" in result.stdout


def test_unknown_command_and_option() -> None:
    assert run("frobnicate").returncode == 2
    assert run("stack", "up", "--bogus").returncode == 2


def test_stage_tables_are_plain_and_whole() -> None:
    from replicator.cli import plain_table

    text = plain_table(["table", "rows"], [["s.a:smile:b", "1,000,000"], ["s.t", ""]])
    assert text.splitlines() == [" table        rows", " s.a:smile:b  1,000,000", " s.t"]


def test_a_name_with_an_emoji_code_is_named_as_it_is(tmp_path: Path) -> None:
    config = tmp_path / "migration.yaml"
    config.write_text(GOOD + 'tables: {"a:smile:b": 1}\n')
    line = failure_line(run("-c", str(config), "reconcile"))
    assert "'tables.a:smile:b'" in line, line


def test_the_console_script_runs_the_command_with_the_collector_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """`replicator` loads the command line with the cyclic collector off, then turns it back on (the
    loaded modules frozen) before the command runs."""
    import gc

    import replicator.cli
    from replicator.__main__ import main

    seen: list[bool] = []
    monkeypatch.setattr(replicator.cli, "main", lambda: seen.append(gc.isenabled()))
    try:
        main()
    finally:
        gc.unfreeze()
    assert seen == [True] and gc.isenabled()


def test_python_m_replicator_is_the_console_script() -> None:
    done = subprocess.run([sys.executable, "-m", "replicator", "--version"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and done.stdout.startswith("replicator, version"), done
