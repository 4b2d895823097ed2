"""Worker processes that answer JSON tasks one line at a time, each task under a hard timeout.

A worker that overruns its timeout, dies, or is abandoned mid-task (cancellation) is killed; its
slot starts a fresh process when next used. Nothing here blocks the event loop. Workers run in
their own sessions, so a Ctrl-C at the terminal reaches only the parent, which closes them (a
worker also exits when its stdin closes, e.g. when the parent dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import collab

READY = b'{"ready": true}\n'
MAX_REPLY = 1 << 26
"""Longest reply line read from a worker (64 MiB); a longer one is a crashed task, not a crashed run."""
_PACKAGE_ROOT = str(Path(collab.__file__).resolve().parent.parent)


class WorkerTimeout(Exception):
    """The task ran past the timeout; its worker was killed."""


class WorkerCrashed(Exception):
    """The worker died (or could not start) before answering."""


class _Slot:
    """One worker process, started lazily and replaced after a failure."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.proc: asyncio.subprocess.Process | None = None
        self._dead: list[asyncio.subprocess.Process] = []
        self._lock = asyncio.Lock()

    async def ensure(self, start_timeout_s: float) -> asyncio.subprocess.Process:
        """The running worker, started (and awaited until ready) if there is none."""
        async with self._lock:
            return await self._ensure(start_timeout_s)

    async def _ensure(self, start_timeout_s: float) -> asyncio.subprocess.Process:
        for proc in self._dead:
            await proc.wait()
        self._dead.clear()
        if self.proc is not None:
            return self.proc
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=env, limit=MAX_REPLY, start_new_session=True,
            )
        except OSError as error:
            raise WorkerCrashed(f"cannot start worker {self.module}: {error}") from error
        self.proc = proc
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), start_timeout_s)  # type: ignore[union-attr]
        except TimeoutError:
            line = b""
        except BaseException:
            self.kill()
            raise
        if line != READY:
            self.kill()
            raise WorkerCrashed(f"worker {self.module} failed to start")
        return proc

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.returncode is None:
                self.proc.kill()
            self._dead.append(self.proc)
            self.proc = None

    async def close(self) -> None:
        proc = self.proc
        if proc is not None and proc.stdin is not None and proc.returncode is None:
            proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 2.0)
        self.kill()
        for dead in self._dead:
            await dead.wait()
        self._dead.clear()


class WorkerPool:
    """``workers`` processes running ``python -m module`` (see :mod:`collab.judge.worker`)."""

    def __init__(self, module: str, *, workers: int = 2, timeout_s: float = 10.0,
                 start_timeout_s: float = 120.0) -> None:
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self._slots = [_Slot(module) for _ in range(max(1, workers))]
        self._idle: asyncio.Queue[_Slot] = asyncio.Queue()
        self._started = False

    async def start(self) -> None:
        """Start every worker and wait until each is ready (a failed start is retried on use)."""
        if self._started:
            return
        self._started = True
        for slot in self._slots:
            self._idle.put_nowait(slot)
        await asyncio.gather(*(s.ensure(self.start_timeout_s) for s in self._slots), return_exceptions=True)

    async def run(self, task: dict[str, Any]) -> dict[str, Any]:
        """One task's reply. Raises :class:`WorkerTimeout` or :class:`WorkerCrashed`."""
        await self.start()
        slot = await self._idle.get()
        healthy = False
        try:
            proc = await slot.ensure(self.start_timeout_s)
            assert proc.stdin is not None and proc.stdout is not None
            try:
                line = await asyncio.wait_for(self._exchange(proc, task), self.timeout_s)
            except TimeoutError:
                raise WorkerTimeout(f"no reply within {self.timeout_s:g} s") from None
            except (BrokenPipeError, ConnectionResetError):
                line = b""
            except (ValueError, asyncio.LimitOverrunError):  # a reply line over MAX_REPLY
                raise WorkerCrashed(f"worker reply over {MAX_REPLY >> 20} MiB") from None
            if not line:
                code = await proc.wait()
                raise WorkerCrashed(f"worker exited with code {code}")
            try:
                reply = json.loads(line)
            except ValueError:
                raise WorkerCrashed(f"garbled reply from worker: {line[:80]!r}") from None
            healthy = True
            return reply
        finally:
            if not healthy:
                slot.kill()
            self._idle.put_nowait(slot)

    @staticmethod
    async def _exchange(proc: asyncio.subprocess.Process, task: dict[str, Any]) -> bytes:
        proc.stdin.write(json.dumps(task).encode() + b"\n")  # type: ignore[union-attr]
        await proc.stdin.drain()  # type: ignore[union-attr]
        return await proc.stdout.readline()  # type: ignore[union-attr]

    async def close(self) -> None:
        """Stop the workers."""
        await asyncio.gather(*(slot.close() for slot in self._slots))
