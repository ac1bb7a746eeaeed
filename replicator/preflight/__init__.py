"""Preflight, `replicator check`: is everything ready for a migration?

Connects to the source, the target, Kafka and Kafka Connect and reports one line per finding (ok,
warning or error, each problem with its fix); ready (exit code 0) when no finding is an error.

- `Finding` (replicator.model): level, check, subject, message, fix.
- `Check` (checks.py): a named producer of findings; `run_preflight` runs the checks independently.
- engine-specific queries: replicator.dialects.{postgres,mysql}_preflight (source and target inspectors).
- `Report` (report.py): rendering as text or JSON, the exit code.
- `type_findings` (types.py): column types the target cannot hold, from schema translation.
"""

from replicator.preflight.checks import CHECKS, Check, PreflightContext, run_preflight
from replicator.preflight.report import Report
from replicator.preflight.types import type_findings

__all__ = ["CHECKS", "Check", "PreflightContext", "Report", "run_preflight", "type_findings"]
