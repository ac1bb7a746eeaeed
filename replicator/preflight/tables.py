"""Target tables against their source tables (pure): absent tables are created by replicator, a
present one must have every source column; extra columns and rows already there are warnings.

Why rows are a warning: the snapshot empties a table before it copies it, so rows already there
are replaced by the source's.
"""

from __future__ import annotations

from replicator.config import MigrationConfig
from replicator.dialects.base import PresentTable
from replicator.model import Finding, Level, TableId


def planned_targets(config: MigrationConfig, tables: list[TableId]) -> dict[TableId, TableId]:
    """Source table -> the target table its rows go to (tables.rename, tables.target_schema)."""
    return {t: TableId(*config.tables.target_for(t.schema, t.name)) for t in tables}


def table_findings(config: MigrationConfig, source_columns: dict[TableId, tuple[str, ...]],
                   present: dict[TableId, PresentTable]) -> list[Finding]:
    targets = planned_targets(config, sorted(source_columns))
    found: list[Finding] = []
    absent = compatible = 0
    for source, target in targets.items():
        facts = present.get(target)
        if facts is None:
            absent += 1
            continue
        problems = _compare(config, source, target, source_columns[source], facts)
        found.extend(problems)
        compatible += not problems
    if absent or compatible:
        parts = [f"{absent} absent (replicator creates them)"] if absent else []
        parts += [f"{compatible} present and compatible"] if compatible else []
        found.insert(0, Finding(Level.OK, "target", "tables", ", ".join(parts)))
    return found


def _compare(config: MigrationConfig, source: TableId, target: TableId, columns: tuple[str, ...],
             facts: PresentTable) -> list[Finding]:
    subject = f"table {target}"
    if not facts.writable:
        user = config.target.user
        return [Finding(Level.ERROR, "target", subject, f"user {user!r} may not read and write it",
                        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {target} TO {user}")]
    found = []
    missing = [c for c in columns if c not in facts.columns]
    if missing:
        found.append(Finding(Level.ERROR, "target", subject,
                             f"lacks column(s) {', '.join(missing)} of the source table {source}",
                             "add them on the target, or drop the table so that replicator creates it"))
    extra = [c for c in facts.columns if c not in columns]
    if extra:
        found.append(Finding(Level.WARNING, "target", subject,
                             f"has column(s) {', '.join(extra)} that the source table {source} lacks: replicator "
                             "leaves them NULL or at their default",
                             "drop them, or make sure they are nullable or have a default"))
    if facts.has_rows:
        found.append(Finding(Level.WARNING, "target", subject,
                             "is not empty: the snapshot empties it before it copies the source's rows into it",
                             "make sure it holds nothing to keep (an earlier copy of this migration is fine)"))
    return found
