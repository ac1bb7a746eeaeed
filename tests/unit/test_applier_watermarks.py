"""The lag figures' high watermarks: the broker is asked only when the fetched figure could mislead."""

from __future__ import annotations

from typing import Any

from replicator.apply import applier as applier_module
from replicator.apply.applier import ChangeApplier
from replicator.dialects.base import Partition, StoredOffset

A: Partition = ("p.shop.a", 0)
B: Partition = ("p.shop.b", 0)


class FakeConsumer:
    def __init__(self, fetched: dict[Partition, int], broker: dict[Partition, int]) -> None:
        self.assigned = set(fetched)
        self.fetched, self.broker = fetched, broker
        self.asked: list[Partition] = []

    def fetched_high_watermark(self, partition: Partition) -> int:
        return self.fetched[partition]

    def watermarks(self, partition: Partition, cached: bool = False) -> tuple[int, int]:
        assert not cached
        self.asked.append(partition)
        return 0, self.broker[partition]


class FakeRouter:
    def __init__(self, held: set[Partition]) -> None:
        self.held = held

    def held_partitions(self, partitions: list[Partition]) -> list[Partition]:
        return [p for p in partitions if p in self.held]


def applier(consumer: FakeConsumer, held: set[Partition], stored: dict[Partition, int]) -> Any:
    app: Any = ChangeApplier.__new__(ChangeApplier)
    app._consumer = consumer
    app._router = FakeRouter(held)
    app._stored = {p: StoredOffset(o, None) for p, o in stored.items()}
    app._watermarks_read_at = {}
    return app


def test_first_read_asks_the_broker_then_fetched_figures_serve_while_behind(monkeypatch: Any) -> None:
    clock = [1000.0]
    monkeypatch.setattr(applier_module.time, "monotonic", lambda: clock[0])
    consumer = FakeConsumer({A: 50, B: 70}, {A: 60, B: 80})
    app = applier(consumer, set(), {A: 10, B: 10})
    assert app._high_watermarks() == {A: 60, B: 80}  # never read: the broker
    assert consumer.asked == [A, B]
    clock[0] += 2
    consumer.asked.clear()
    assert app._high_watermarks() == {A: 50, B: 70}  # behind by the fetched figures: no round trip
    assert consumer.asked == []
    clock[0] += applier_module._WATERMARK_REFRESH_S
    assert app._high_watermarks() == {A: 60, B: 80}  # at least every _WATERMARK_REFRESH_S: the broker
    assert consumer.asked == [A, B]


def test_caught_up_unknown_or_held_asks_the_broker(monkeypatch: Any) -> None:
    clock = [1000.0]
    monkeypatch.setattr(applier_module.time, "monotonic", lambda: clock[0])
    consumer = FakeConsumer({A: 10, B: 70}, {A: 12, B: 90})
    app = applier(consumer, {B}, {A: 10, B: 10})
    app._high_watermarks()
    clock[0] += 1
    consumer.asked.clear()
    assert app._high_watermarks() == {A: 12, B: 90}  # A: fetched says caught up; B: held (not fetched)
    assert consumer.asked == [A, B]
    consumer.fetched[A] = -1  # no fetch response yet
    consumer.asked.clear()
    assert app._high_watermarks()[A] == 12
    assert consumer.asked == [A, B]
