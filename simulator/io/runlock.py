"""An OS file lock on a run directory: one process at a time runs or resumes a run.

The lock is ``fcntl.flock`` on ``<run>.partial/.lock``, taken without waiting: a second
``fedfleet run`` or ``fedfleet resume`` of the same name fails at once. The kernel drops the
lock when its holder dies (SIGKILL included), so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from simulator.errors import FedFleetError

LOCK_NAME = ".lock"


class RunLock:
    """``RunLock(run_dir).acquire()``; ``release()`` closes the descriptor (drops the lock)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self.fd: int | None = None

    def acquire(self, what: str) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                pid = int(os.pread(fd, 32, 0).decode().strip() or "0")
                holder = f" (pid {pid})" if pid else ""
            os.close(fd)
            raise FedFleetError(
                f"{what} '{self.path.parent}' is in use by another fedfleet process{holder}; "
                "wait for it to finish, or use another --name") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self, unlink: bool = False) -> None:
        if self.fd is None:
            return
        if unlink:  # before the directory is renamed: the finished run keeps no lock file
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self.fd)
        self.fd = None
