"""The preflight report: findings in, text lines or JSON and an exit code out. Pure: no I/O.

Exit code rule: 0 when no finding is an error (warnings are allowed), 1 otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace

from replicator.model import Finding, Level

SYMBOLS = {Level.OK: "✓", Level.WARNING: "!", Level.ERROR: "✗"}
MASK = "**********"
_SHORTEST_SECRET = 4  # shorter strings would mask ordinary words; such a password is its own problem


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def ready(self) -> bool:
        return all(f.level is not Level.ERROR for f in self.findings)

    @property
    def exit_code(self) -> int:
        return 0 if self.ready else 1

    def count(self, level: Level) -> int:
        return sum(1 for f in self.findings if f.level is level)

    def summary(self) -> str:
        errors, warnings = self.count(Level.ERROR), self.count(Level.WARNING)
        tally = f"{errors} error(s), {warnings} warning(s), {self.count(Level.OK)} ok"
        return f"ready ({tally})" if self.ready else f"not ready: {tally}"

    def lines(self) -> list[tuple[Level, str]]:
        """One line per finding: symbol, check, subject, what was found and, for a problem, the fix."""
        width = max((len(f.check) for f in self.findings), default=0)
        out = []
        for f in self.findings:
            about = f"{f.subject}: {f.message}" if f.subject else f.message
            fix = f"; fix: {f.fix}" if f.fix and f.level is not Level.OK else ""
            out.append((f.level, f"{SYMBOLS[f.level]} {f.check:<{width}}  {_one_line(about + fix)}"))
        return out

    def to_json(self) -> str:
        return json.dumps({
            "ready": self.ready,
            "exit_code": self.exit_code,
            "counts": {level.value: self.count(level) for level in Level},
            "findings": [{"level": f.level.value, "check": f.check, "subject": f.subject, "message": f.message,
                          "fix": f.fix} for f in self.findings],
        }, indent=2, ensure_ascii=False)

    def scrubbed(self, secrets: Iterable[str]) -> Report:
        """The same report with every occurrence of a secret masked (a driver message could echo one)."""
        masked = sorted({s for s in secrets if len(s) >= _SHORTEST_SECRET}, key=len, reverse=True)
        if not masked:
            return self

        def clean(text: str) -> str:
            for secret in masked:
                text = text.replace(secret, MASK)
            return text

        return Report(tuple(replace(f, subject=clean(f.subject), message=clean(f.message),
                                    fix=None if f.fix is None else clean(f.fix)) for f in self.findings))


def _one_line(text: str) -> str:
    return " ".join(text.split())
