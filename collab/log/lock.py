"""One writer per run folder: an OS lock (``flock``) on a lock file inside it.

The lock is taken by every command that writes the folder (simulate, resume, judge, merge) and
released by the OS when its process ends, however it ends. A second writer is refused at once,
told which process holds the folder. Readers never lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

LOCK = ".lock"


class LockHeld(Exception):
    """Another process is writing this run folder."""


class RunLock:
    """The exclusive write lock of one run folder, held until :meth:`release` or process exit."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK
        self._fd: int | None = None

    def acquire(self, command: str | None = None) -> None:
        """Take the lock or raise :class:`LockHeld` naming the holder (never waits)."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise LockHeld(f"{self.path.parent} is being written by {holder}; "
                           "wait for it to finish (reading it needs no lock)") from None
        except OSError:
            os.close(fd)
            raise
        record = json.dumps({"pid": os.getpid(), "command": command or " ".join(["collab", *sys.argv[1:]])})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode("utf-8", "replace"), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (a no-op when not held)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _describe(raw: bytes) -> str:
    try:
        record = json.loads(raw)
        return f"pid {int(record['pid'])} ({str(record['command'])[:200]})"
    except (ValueError, KeyError, TypeError):
        return "another process"
