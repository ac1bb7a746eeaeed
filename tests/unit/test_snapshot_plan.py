"""The copy plan: chunk ranges cover the key space exactly, survive the ledger round trip, and become
the apply filter that routes keys to the same chunks."""

from __future__ import annotations

import orjson
import pytest

from replicator.apply.gate import SnapshotFilter
from replicator.dialects.base import SourceShape
from replicator.errors import SnapshotError
from replicator.model import TableId
from replicator.snapshot.plan import TablePlan, filter_json

TABLE = TableId("s", "t")


def shape(key: tuple[str, ...], kinds: tuple[str | None, ...]) -> SourceShape:
    return SourceShape(TABLE, (("id", "bigint"), ("w", "text")), key, kinds, 1000)  # type: ignore[arg-type]


def test_bounds_become_contiguous_chunks_from_nothing_to_nothing() -> None:
    plan = TablePlan.make(shape(("id",), ("int",)), [(10,), (20,)])
    assert [(c.index, c.low, c.high) for c in plan.chunks] == [(0, None, (10,)), (1, (10,), (20,)), (2, (20,), None)]


@pytest.mark.parametrize(("key", "kinds"), [((), ()), (("id",), (None,)), (("id", "w"), ("int", None))])
def test_a_table_without_a_usable_key_is_one_chunk(key: tuple[str, ...], kinds: tuple[str | None, ...]) -> None:
    plan = TablePlan.make(shape(key, kinds), [(1,), (2,)])
    assert plan.kinds is None
    assert [(c.low, c.high) for c in plan.chunks] == [(None, None)]


def test_the_plan_round_trips_through_the_ledger() -> None:
    plan = TablePlan.make(shape(("id", "w"), ("int", "text")), [(1, "ä"), (2, "B")])
    assert TablePlan.from_json(plan.to_json(), "s.t") == plan


def test_an_unreadable_plan_is_one_line_naming_the_restart() -> None:
    with pytest.raises(SnapshotError, match=r"--restart s\.t"):
        TablePlan.from_json("{not json", "s.t")


def test_the_filter_carries_each_chunk_range_and_its_own_position() -> None:
    plan = TablePlan.make(shape(("id",), ("int",)), [(10,)])
    positions = {0: orjson.dumps({"mysql": {"file": 1, "pos": 5}}).decode(),
                 1: orjson.dumps({"mysql": {"file": 1, "pos": 9}}).decode()}
    text = filter_json(plan, positions)
    assert orjson.loads(text) == {"chunks": [{"low": None, "high": [10], "mysql": {"file": 1, "pos": 5}},
                                             {"low": [10], "high": None, "mysql": {"file": 1, "pos": 9}}],
                                  "key": ["id"], "kinds": ["int"]}
    parsed = SnapshotFilter.parse(text, "s.t")
    assert parsed._lows == [(10,)]
    assert parsed._key == ("id",) and parsed._kinds == ("int",)


def test_the_throttle_holds_the_rate_across_workers() -> None:
    import threading
    import time

    from replicator.snapshot.copier import _Throttle

    throttle = _Throttle(20.0)  # MB/s
    started = time.monotonic()

    def take() -> None:
        for _ in range(10):
            throttle.take(256 * 1024)  # 2 workers × 10 × 0.25 MB = 5 MB: at least ~0.2 s at 20 MB/s

    workers = [threading.Thread(target=take) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert time.monotonic() - started >= 0.18
    unlimited = _Throttle(None)
    started = time.monotonic()
    for _ in range(1000):
        unlimited.take(1 << 20)
    assert time.monotonic() - started < 0.1
