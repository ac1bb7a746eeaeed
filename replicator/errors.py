"""The one exception hierarchy of replicator.

Every error a user can cause or fix (bad config, unreachable service, a failed connector) is a
`ReplicatorError` whose `str()` is one actionable line: what is wrong, then how to fix it. The CLI
prints that line and exits non-zero; it never shows a traceback for these. Driver exceptions are
wrapped at the boundary where the context (service, table, offset) is known.
"""

from __future__ import annotations


class ReplicatorError(Exception):
    """Root of every error replicator raises on purpose.

    `retryable` tells the one retry helper whether waiting and trying again can help.
    """

    exit_code = 1
    retryable = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(ReplicatorError):
    """The migration config or a CLI argument is wrong."""

    exit_code = 2


class ServiceUnreachableError(ReplicatorError):
    """A database, the broker or Kafka Connect does not answer."""

    retryable = True


class ConnectorError(ReplicatorError):
    """Kafka Connect refused a connector config, or a connector or one of its tasks failed."""


class SourceError(ReplicatorError):
    """The source database refused something, or is not set up as CDC needs."""

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class TargetError(ReplicatorError):
    """The target database refused something."""

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class SchemaError(ReplicatorError):
    """Source tables cannot be translated safely (each problem is reported on its own line first)."""


class TopicLayoutError(ReplicatorError):
    """A Kafka topic is laid out in a way that would break per-table ordering."""


class StackError(ReplicatorError):
    """The embedded local stack could not be started, found or stopped."""


class DecodeError(ReplicatorError):
    """A Kafka record could not be decoded; the message names topic, partition and offset."""


class ApplyError(ReplicatorError):
    """The target refused an event for good (not a transient failure): names table, key, offset."""


class SnapshotError(ReplicatorError):
    """The snapshot copy cannot go on (a proof that failed, counts that differ, a missing table)."""


class ReconcileError(ReplicatorError):
    """The reconciler cannot compare a table (a query failed, a column cannot be compared)."""
