"""Replication lag as operators read it before a cutover.

lag = max over our partitions of (now − source commit time of the oldest unapplied event), and 0
for a partition that is caught up (next offset = high watermark). The oldest unapplied event of
a partition that is behind may not be fetched yet, but it was committed after both the last
applied event and the last moment the partition was seen caught up; the later of the two bounds
it, so the figure is near exact while events flow, small when an idle table gets a change, and
grows while a partition is stuck, which is what must show. The split follows AWS DMS: `source` =
the time the last applied events spent before they reached Kafka (Debezium and Connect);
`target` = the rest. Heartbeats tell that the
source side is alive while idle.
"""

from __future__ import annotations

import time

from replicator.dialects.base import Partition, StoredOffset
from replicator.events import ChangeEvent
from replicator.sensor import Sensor


class LagTracker:
    def __init__(self) -> None:
        self._last_source_ms: dict[Partition, int] = {}
        self._source_to_kafka_ms: dict[Partition, int] = {}
        self._caught_up_at: dict[Partition, float] = {}
        self._started = time.time()
        self.last_heartbeat_ms: int | None = None

    def heartbeat(self, source_ts_ms: int) -> None:
        self.last_heartbeat_ms = source_ts_ms

    def applied(self, partition: Partition, source_ts_ms: int | None, events: list[ChangeEvent]) -> None:
        if source_ts_ms is not None:
            self._last_source_ms[partition] = source_ts_ms
        if events:
            last = events[-1]
            self._source_to_kafka_ms[partition] = max(0, last.kafka_ts_ms - last.source_ts_ms)

    def report(self, sensor: Sensor, stored: dict[Partition, StoredOffset], high: dict[Partition, int]) -> None:
        now = time.time()
        total = source = 0.0
        behind: dict[Partition, int] = {}
        for partition, high_watermark in high.items():
            offset = stored.get(partition)
            next_offset = offset.next_offset if offset is not None and offset.next_offset is not None else 0
            behind[partition] = max(0, high_watermark - next_offset)
            if behind[partition] == 0:
                self._caught_up_at[partition] = now
                continue
            bound = max(self._last_source_ms.get(partition, 0) / 1000,
                        self._caught_up_at.get(partition, self._started))
            lag = now - bound
            if lag > total:
                total = lag
                source = self._source_to_kafka_ms.get(partition, 0) / 1000
        source = min(source, total)
        sensor.on_apply_lag(max(total, 0.0), source, max(total - source, 0.0), behind)
