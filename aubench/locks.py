"""Processes that share a runs folder or a preparation safely: per-cell locks, and workers that die with
their parent.

A cell's lock is ``<cell folder>/.lock``, held with ``flock`` while the cell runs: a second ``aubench
run`` (or Hydra launcher job) given the same cell skips it with a message instead of writing the same
files, and the operating system releases the lock when the holder exits, however it exits (a killed
process never leaves a stale lock).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO

__all__ = ["CellBusy", "cell_lock", "wait_lock", "die_with_parent"]


def _fcntl():  # noqa: ANN202 - the module, or None where there is no flock (Windows)
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


class CellBusy(Exception):
    """Another process holds the cell's lock."""


class cell_lock:  # noqa: N801 - used as a context manager, like open()
    """``with cell_lock(run_dir):`` holds the cell's lock or raises :class:`CellBusy` at once."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fh: IO[str] | None = None

    def __enter__(self) -> cell_lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fcntl = _fcntl()
        fh = open(self.path, "a+")  # noqa: SIM115 - closed in __exit__
        if fcntl is None:  # no flock on this platform: no lock
            self.fh = fh
            return self
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise CellBusy(holder) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()}")
        fh.flush()
        self.fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()  # releases the lock


class wait_lock:  # noqa: N801
    """``with wait_lock(path):`` waits for an exclusive ``flock`` on ``path`` (e.g. while another process
    generates the same dataset), then holds it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fh: IO[str] | None = None

    def __enter__(self) -> wait_lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")  # noqa: SIM115 - closed in __exit__
        if (fcntl := _fcntl()) is not None:
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()


def die_with_parent() -> None:
    """Make this (worker) process receive SIGKILL when its parent dies, even by SIGKILL (Linux; elsewhere
    pool workers exit when they find the pool gone). Use as a process pool's ``initializer``."""
    import multiprocessing

    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before the signal was armed
        os._exit(1)
