"""Preflight logic without any service: the report, the exit code rule, table comparison, check
isolation and secret masking."""

from __future__ import annotations

import json

from replicator.config import MigrationConfig, parse_config
from replicator.dialects.base import PresentTable
from replicator.dialects.mysql_preflight import _binlog_findings, _server_id, _sql_mode
from replicator.dialects.postgres_preflight import _table_findings, _wal_level
from replicator.errors import ServiceUnreachableError
from replicator.model import Finding, Level, TableId
from replicator.preflight import Check, PreflightContext, Report, run_preflight
from replicator.preflight.tables import table_findings

CONFIG = """
source: {engine: postgres, host: 127.0.0.1, port: 5432, database: app, user: u, password: hunter2-source}
target: {engine: postgres, host: 127.0.0.1, port: 5433, database: app, user: w, password: hunter3-target}
kafka: {bootstrap_servers: "127.0.0.1:9092", options: {sasl.password: kafka-secret-1}}
connect: {url: "http://127.0.0.1:8083"}
tables: {rename: {public.old: public.new}}
"""


def config(text: str = CONFIG) -> MigrationConfig:
    return parse_config(text, {})


OK = Finding(Level.OK, "source", "wal_level", "logical")
WARN = Finding(Level.WARNING, "target", "table public.t", "is not empty", "empty it first")
ERR = Finding(Level.ERROR, "kafka", "", "cannot reach Kafka at 127.0.0.1:1", "check kafka.bootstrap_servers")


def test_exit_code_is_zero_only_without_errors() -> None:
    assert Report((OK,)).exit_code == 0
    assert Report((OK, WARN)).exit_code == 0 and Report((OK, WARN)).ready
    assert Report((OK, WARN, ERR)).exit_code == 1 and not Report((ERR,)).ready
    assert Report(()).exit_code == 0


def test_lines_one_per_finding_with_the_fix_for_problems() -> None:
    lines = Report((OK, WARN, ERR)).lines()
    assert [level for level, _ in lines] == [Level.OK, Level.WARNING, Level.ERROR]
    texts = [text for _, text in lines]
    assert texts[0] == "✓ source  wal_level: logical"
    assert texts[1] == "! target  table public.t: is not empty; fix: empty it first"
    assert texts[2] == "✗ kafka   cannot reach Kafka at 127.0.0.1:1; fix: check kafka.bootstrap_servers"
    multi = Finding(Level.ERROR, "source", "", "line one\nline two", "fix\nit")
    assert Report((multi,)).lines()[0][1] == "✗ source  line one line two; fix: fix it"


def test_summary() -> None:
    assert Report((OK, WARN)).summary() == "ready (0 error(s), 1 warning(s), 1 ok)"
    assert Report((OK, ERR, ERR)).summary() == "not ready: 2 error(s), 0 warning(s), 1 ok"


def test_json() -> None:
    data = json.loads(Report((OK, ERR)).to_json())
    assert data["ready"] is False and data["exit_code"] == 1
    assert data["counts"] == {"ok": 1, "warning": 0, "error": 1}
    assert data["findings"][1] == {"level": "error", "check": "kafka", "subject": "",
                                   "message": "cannot reach Kafka at 127.0.0.1:1",
                                   "fix": "check kafka.bootstrap_servers"}


def test_scrubbed_masks_secrets_everywhere() -> None:
    leaky = Finding(Level.ERROR, "target", "pw hunter3-target", "auth failed for hunter3-target", "not hunter3-target")
    clean = Report((leaky, OK)).scrubbed(["hunter3-target", "", "ab"])
    assert "hunter3-target" not in clean.to_json()
    assert clean.findings[0].message == "auth failed for **********"
    assert clean.findings[1] == OK
    assert Report((OK,)).scrubbed(["ab"]).findings == (OK,)  # too short to mask


def test_checks_are_independent_and_errors_become_one_line() -> None:
    def unreachable(ctx: PreflightContext) -> list[Finding]:
        raise ServiceUnreachableError("cannot reach Kafka at 127.0.0.1:1", hint="check kafka.bootstrap_servers")

    def buggy(ctx: PreflightContext) -> list[Finding]:
        raise KeyError("surprise")

    def leaky(ctx: PreflightContext) -> list[Finding]:
        return [Finding(Level.OK, "source", "", "said hunter2-source and kafka-secret-1")]

    report = run_preflight(config(), [Check("source", leaky), Check("kafka", unreachable), Check("types", buggy),
                                      Check("target", lambda ctx: [WARN])])
    assert [f.check for f in report.findings] == ["source", "kafka", "types", "target"]
    assert report.findings[0].message == "said ********** and **********"
    assert report.findings[1] == Finding(Level.ERROR, "kafka", "", "cannot reach Kafka at 127.0.0.1:1",
                                         "check kafka.bootstrap_servers")
    assert report.findings[2].level is Level.ERROR and "KeyError" in report.findings[2].message
    assert report.findings[3] == WARN
    assert report.exit_code == 1


def test_table_comparison() -> None:
    cfg = config()
    source = {
        TableId("public", "absent"): ("id",),
        TableId("public", "same"): ("id", "v"),
        TableId("public", "old"): ("id", "a", "b"),  # renamed to public.new
        TableId("public", "busy"): ("id",),
        TableId("public", "locked"): ("id",),
    }
    present = {
        TableId("public", "same"): PresentTable(("id", "v"), has_rows=False),
        TableId("public", "new"): PresentTable(("id", "a", "extra"), has_rows=False),
        TableId("public", "busy"): PresentTable(("id",), has_rows=True),
        TableId("public", "locked"): PresentTable(("id",), has_rows=False, writable=False),
    }
    found = table_findings(cfg, source, present)
    by_subject = {(f.subject, f.level): f for f in found}
    assert found[0] == Finding(Level.OK, "target", "tables",
                               "1 absent (replicator creates them), 1 present and compatible")
    missing = by_subject[("table public.new", Level.ERROR)]
    assert "lacks column(s) b of the source table public.old" in missing.message
    assert "extra" in by_subject[("table public.new", Level.WARNING)].message
    assert "not empty" in by_subject[("table public.busy", Level.WARNING)].message
    locked = by_subject[("table public.locked", Level.ERROR)]
    assert locked.fix == "GRANT SELECT, INSERT, UPDATE, DELETE ON public.locked TO w"
    assert len(found) == 5


def test_postgres_rules() -> None:
    assert _wal_level("logical").level is Level.OK
    assert _wal_level("replica").level is Level.ERROR and "wal_level = logical" in (_wal_level("replica").fix or "")
    cfg = config()
    rows = [("public", "keyed", "d", True, False, True, True, 1),
            ("public", "bare", "d", False, False, True, True, 2),
            ("public", "full", "f", False, False, True, True, 3),
            ("public", "secret", "d", True, False, False, True, 4)]
    found = {f.subject: f for f in _table_findings(cfg, rows)}
    assert "keyed" not in " ".join(found)
    assert found["table public.bare"].level is Level.ERROR
    assert "REPLICA IDENTITY FULL" in (found["table public.bare"].fix or "")
    assert found["table public.full"].level is Level.WARNING
    assert found["table public.secret"].fix == "GRANT SELECT ON public.secret TO u"
    assert _table_findings(cfg, [])[0].level is Level.ERROR
    assert [f.level for f in _table_findings(cfg, rows[:1])] == [Level.OK]


def test_mysql_rules() -> None:
    good = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL"}
    assert all(f.level is Level.OK for f in _binlog_findings(good))
    bad = {f.subject: f for f in _binlog_findings({"log_bin": "OFF", "binlog_format": "MIXED",
                                                    "binlog_row_image": "MINIMAL"})}
    assert all(f.level is Level.ERROR for f in bad.values()) and len(bad) == 3
    assert bad["binlog_row_image"].fix == "SET GLOBAL binlog_row_image = FULL and set it in the server's config file"
    assert _server_id("1", 5400).level is Level.OK
    assert _server_id("5400", 5400).level is Level.ERROR
    assert "connector.server_id" in (_server_id("5400", 5400).fix or "")
    assert _server_id("0", 5400).level is Level.ERROR
    assert _sql_mode("STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION").level is Level.OK
    assert _sql_mode("").level is Level.OK
    loose = _sql_mode("ALLOW_INVALID_DATES,NO_ENGINE_SUBSTITUTION")
    assert loose.level is Level.WARNING and "2020-02-31" in loose.message
