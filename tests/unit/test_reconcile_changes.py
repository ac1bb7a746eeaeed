"""Pure logic of change tracking: bucket of a key, marks of events, dirty ranges of a recorded pass."""

from __future__ import annotations

from typing import Any

import orjson

from replicator.apply.marks import ALL, Tracking, track_gate, track_gate_text
from replicator.reconcile.changes import Span, bucket_span, dirty, merge, overlaps


def test_a_key_falls_in_the_bucket_between_the_points_around_it() -> None:
    t = Tracking("s.t", 1, ((10,), (20,)))
    assert [t.bucket((k,)) for k in (-5, 9, 10, 19, 20, 99)] == [0, 0, 1, 1, 2, 2]
    assert t.bucket(None) == ALL and t.bucket(("text",)) == ALL  # a key that does not compare: everything
    assert Tracking("s.t", 1, ()).bucket(None) == 0  # a table without a key is one bucket
    text = Tracking("s.t", 1, (("B",), ("b",)))
    assert [text.bucket((k,)) for k in ("A", "B", "a", "b", "é")] == [0, 1, 1, 2, 2]  # code point order


def test_the_track_gate_round_trips_and_other_gates_are_not_read_as_one() -> None:
    text = track_gate_text("s", "t", 7, [(1, "a"), (2, "b")])
    assert track_gate(text) == Tracking("s.t", 7, ((1, "a"), (2, "b")))
    assert track_gate('{"reconcile": ["s", "t"], "cut": null}') is None
    assert track_gate('{"chunks": []}') is None and track_gate(None) is None


def test_spans_overlap_and_merge_with_open_ends() -> None:
    assert overlaps(Span(None, (5,)), Span((4,), (9,))) and not overlaps(Span(None, (5,)), Span((5,), None))
    assert merge([Span((5,), (9,)), Span(None, (2,)), Span((9,), (12,)), Span((20,), None)]) == [
        Span(None, (2,)), Span((5,), (12,)), Span((20,), None)]
    assert merge([Span((1,), None), Span((3,), (4,))]) == [Span((1,), None)]
    assert bucket_span(((10,), (20,)), 0) == Span(None, (10,)) and bucket_span(((10,), (20,)), 2) == Span((20,), None)


def _pass(points: list[Any], chunks: list[Any]) -> str:
    return orjson.dumps({"points": points, "chunks": chunks}).decode()


def test_a_bucket_is_dirty_when_marked_at_or_after_its_chunks_were_hashed() -> None:
    text = _pass([[10], [20]], [[None, [15], 100], [[15], None, 200]])
    # bucket 1 ([10, 20)) overlaps both chunks: dirty from offset 100; bucket 2 only the second: from 200
    plan = dirty(text, 0.0, 5, {(5, 1): 100, (5, 2): 199}, None)
    assert plan.spans == [Span((10,), (20,))] and "1 of 3 bucket(s)" in plan.note
    assert dirty(text, 0.0, 5, {(5, 1): 99}, None).spans == []
    assert dirty(text, 0.0, 5, {(5, ALL): 150}, None).spans is None  # a truncate after a chunk was hashed
    assert dirty(text, 0.0, 5, {(5, ALL): 50}, None).spans == []  # one before every chunk: in the hashes
    later = Tracking("s.t", 9, ((12,),))
    assert dirty(text, 0.0, 5, {(9, 0): 1}, later).spans == [Span(None, (12,))]  # a newer pass, not completed
    assert dirty(text, 0.0, 5, {(7, 0): 1}, later).spans is None  # marks under a scheme no longer known
    assert dirty(None, 0.0, 0, {}, None).spans is None
