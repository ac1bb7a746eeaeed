"""Column types that cannot be mapped to the target: the schema translation's problems as findings."""

from __future__ import annotations

from replicator.config import MigrationConfig
from replicator.model import Finding, Level
from replicator.schema import translate


def type_findings(config: MigrationConfig) -> list[Finding]:
    """One finding per problem schema translation sees (replicator.schema): an error for a column or
    table it cannot translate safely (the snapshot would refuse it), a warning for a lossy but possible
    mapping; one ok line when every selected table translates."""
    plan = translate(config)
    findings = []
    for problem in plan.problems:
        where = problem.table.qualified + (f".{problem.column}" if problem.column is not None else "")
        findings.append(Finding(Level.ERROR if problem.blocking else Level.WARNING, "types", where, problem.what,
                                problem.suggestion or None))
    if not plan.blocking:
        findings.append(Finding(Level.OK, "types", f"{len(plan.tables)} table(s)",
                                f"every column maps to a {config.target.engine.value} type"))
    return findings
