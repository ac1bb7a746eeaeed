"""Named fault points, for the tests that stop or kill the process at an exact step.

`REPLICATOR_FAULT=<point>:<action>[:<nth>]` makes the process `stop` (SIGSTOP itself, as a process
stuck past its group session would be) or `kill` (SIGKILL itself) the nth time (default 1st) it
reaches `<point>`. Unset, `reach()` costs one dict lookup. Points are named where they are
reached, e.g. `apply.before-lock`, `apply.before-commit`, `apply.after-commit`.
"""

from __future__ import annotations

import os
import signal
import threading

_SPEC = os.environ.get("REPLICATOR_FAULT", "")
_POINT, _, _REST = _SPEC.partition(":")
_ACTION, _, _NTH = _REST.partition(":")
_counts: dict[str, int] = {}


def reach(point: str) -> None:
    if point != _POINT:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] != int(_NTH or "1"):
        return
    # Directed at this thread: a process-directed kill() is delivered to the main thread, and a
    # caller in another thread (the applier's writer) could run on for a few milliseconds (past
    # BEGIN and the offset locks) before the stop or kill reached it.
    signal.pthread_kill(threading.get_ident(), signal.SIGKILL if _ACTION == "kill" else signal.SIGSTOP)
