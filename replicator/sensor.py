"""Neutral measurement hooks. Domain code calls `sensor.on_*`; only replicator/metrics.py turns
them into Prometheus metrics, so no stage depends on prometheus-client."""

from __future__ import annotations

from typing import Protocol


class Sensor(Protocol):
    def on_connector_status(self, connector: str, running: bool, task_states: list[str]) -> None: ...

    def on_service_error(self, stage: str) -> None: ...

    def on_apply_batch(self, counts: dict[tuple[str, str], int], events: int, seconds: float) -> None:
        """A batch committed: events applied by (target table, op), batch size and latency."""
        ...

    def on_apply_lag(self, total_s: float, source_s: float, target_s: float,
                     consumer_lag: dict[tuple[str, int], int]) -> None:
        """Replication lag (split source→Kafka and Kafka→target) and messages behind per partition."""
        ...

    def on_apply_retry(self, reason: str) -> None: ...

    def on_apply_skipped(self, reason: str, count: int) -> None:
        """Events not applied on purpose: 'duplicate' (at or below the stored position), 'snapshot'
        (already in the snapshot copy), 'fenced' (a stale batch rolled back)."""
        ...

    def on_dead_letter(self, table: str) -> None: ...

    def on_snapshot_progress(self, table: str, rows: int, size: int) -> None:
        """A chunk of `table` committed: its rows and bytes."""
        ...

    def on_snapshot_table(self, table: str, rows: int, released: bool) -> None: ...

    def on_reconcile_chunk(self, table: str, rows: int) -> None:
        """A chunk of `table` was hashed on both sides: its rows (the larger side's count)."""
        ...

    def on_reconcile_table(self, table: str, differences: int, clean: bool, finished_at: float) -> None:
        """A pass over `table` ended: its confirmed differing rows; `clean` with none (epoch seconds)."""
        ...


class NullSensor:
    def on_connector_status(self, connector: str, running: bool, task_states: list[str]) -> None:
        return None

    def on_service_error(self, stage: str) -> None:
        return None

    def on_apply_batch(self, counts: dict[tuple[str, str], int], events: int, seconds: float) -> None:
        return None

    def on_apply_lag(self, total_s: float, source_s: float, target_s: float,
                     consumer_lag: dict[tuple[str, int], int]) -> None:
        return None

    def on_apply_retry(self, reason: str) -> None:
        return None

    def on_apply_skipped(self, reason: str, count: int) -> None:
        return None

    def on_dead_letter(self, table: str) -> None:
        return None

    def on_snapshot_progress(self, table: str, rows: int, size: int) -> None:
        return None

    def on_snapshot_table(self, table: str, rows: int, released: bool) -> None:
        return None

    def on_reconcile_chunk(self, table: str, rows: int) -> None:
        return None

    def on_reconcile_table(self, table: str, differences: int, clean: bool, finished_at: float) -> None:
        return None
