"""Plain value objects shared by every stage. No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# Kafka topic names allow only these characters; Debezium replaces any other with '_'.
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, order=True)
class TableId:
    """A table as the source names it: PostgreSQL schema, or MySQL database, plus table name."""

    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def __str__(self) -> str:
        return self.qualified


@dataclass(frozen=True)
class SourceTable:
    """What the connectors stage needs to know of one source table."""

    table: TableId
    has_primary_key: bool
    # PostgreSQL relreplident: 'd' default, 'f' full, 'i' index, 'n' nothing; None on MySQL.
    replica_identity: str | None = None
    has_identity_index: bool = False

    @property
    def publishable(self) -> bool:
        """False when PostgreSQL would reject UPDATE/DELETE on it once it is in a publication."""
        ident = self.replica_identity
        if ident is None or ident == "f":
            return True
        if ident == "d":
            return self.has_primary_key
        if ident == "i":
            return self.has_identity_index
        return False


def topic_for(prefix: str, table: TableId) -> str:
    """The topic Debezium writes a table's changes to (its default naming, sanitised as it does)."""
    return _TOPIC_UNSAFE.sub("_", f"{prefix}.{table.schema}.{table.name}")


def heartbeat_topic(prefix: str) -> str:
    return f"__debezium-heartbeat.{prefix}"


class Level(StrEnum):
    """How a preflight finding weighs: only an error makes the migration not ready."""

    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One line of the preflight report (`replicator check`).

    `check` names the producer (source, target, kafka, connect, types), `subject` what was looked at
    (a setting, a privilege, a table), `message` what was found, `fix` how to fix it (None for ok).
    Texts are one line each and never carry a secret.
    """

    level: Level
    check: str
    subject: str
    message: str
    fix: str | None = None
