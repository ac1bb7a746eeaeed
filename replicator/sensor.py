"""Neutral measurement hooks. Domain code calls `sensor.on_*`; only replicator/metrics.py turns
them into Prometheus metrics, so no stage depends on prometheus-client."""

from __future__ import annotations

from typing import Protocol


class Sensor(Protocol):
    def on_connector_status(self, connector: str, running: bool, task_states: list[str]) -> None: ...

    def on_service_error(self, stage: str) -> None: ...


class NullSensor:
    def on_connector_status(self, connector: str, running: bool, task_states: list[str]) -> None:
        return None

    def on_service_error(self, stage: str) -> None:
        return None
