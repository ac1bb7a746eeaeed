"""Processes the local stack starts, identified by PID *and* kernel start time.

A PID alone can be reused by an unrelated process after ours died; `down` must never signal a
process it did not start. Each record keeps /proc/<pid>/stat's start time, and every check compares
it. Processes run in their own session (process group = PID) so that stopping one stops its children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start_ticks: int

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}

    @staticmethod
    def from_json(data: Mapping[str, int]) -> ProcessRecord:
        return ProcessRecord(pid=int(data["pid"]), start_ticks=int(data["start_ticks"]))

    def alive(self) -> bool:
        stat = _read_stat(self.pid)
        return stat is not None and stat[1] == self.start_ticks and stat[0] not in ("Z", "X")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        """Signal our process group, wait, then SIGKILL what is left. Never touches other processes."""
        if not self.alive():
            return
        _signal_group(self.pid, sig)
        if not self._wait_gone(timeout_s):
            _signal_group(self.pid, signal.SIGKILL)
            self._wait_gone(5)

    def kill(self) -> None:
        """kill -9 the whole group at once, as a crash would."""
        if self.alive():
            _signal_group(self.pid, signal.SIGKILL)
            self._wait_gone(5)

    def _wait_gone(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.alive():
            if time.monotonic() > deadline:
                return False
            _reap(self.pid)
            time.sleep(0.02)
        return True


def spawn(
    argv: Sequence[str],
    log_file: Path,
    *,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    """Start a long-running process detached from us (own session), output appended to log_file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            user=user,
            cwd=cwd,
            start_new_session=True,
        )
    stat = None
    for _ in range(100):
        stat = _read_stat(proc.pid)
        if stat is not None:
            break
        time.sleep(0.01)
    if stat is None:
        return ProcessRecord(proc.pid, -1)
    return ProcessRecord(proc.pid, stat[1])


def _read_stat(pid: int) -> tuple[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = text[text.rindex(")") + 2:].split()
    return rest[0], int(rest[19])


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
