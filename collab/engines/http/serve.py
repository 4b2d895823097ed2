"""``collab serve``: launch an SGLang server for each sglang engine of a scenario, and stop them on Ctrl-C.

An engine is launched when its config has ``kind: sglang``, a ``model`` and a ``port``; the command is
``python -m sglang.launch_server --model-path MODEL --port PORT [launch_args...]``. SGLang itself is
an optional extra (``pip install 'collab[sglang]'``) and only the launched processes import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

STOP_GRACE_S = 20.0
HEALTH_POLL_S = 0.25


class ServeError(Exception):
    """A server could not be launched, did not become healthy, or died."""


@dataclass(frozen=True)
class Launch:
    """One server to start for an engine."""

    engine: str
    model: str
    port: int
    args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """Where the server listens."""
        host = _flag(self.args, "--host") or "127.0.0.1"
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self.port}"

    def command(self, python: str = sys.executable) -> list[str]:
        """The command that starts the server."""
        return [python, "-m", "sglang.launch_server", "--model-path", self.model, "--port", str(self.port), *self.args]


def launches(engines: Mapping[str, Any]) -> list[Launch]:
    """The servers to launch for a scenario's ``engines`` (configs as dicts or pydantic models)."""
    out = []
    for name, config in engines.items():
        c = config.model_dump() if hasattr(config, "model_dump") else dict(config)
        if c.get("kind") == "sglang" and c.get("model") and c.get("port"):
            out.append(Launch(name, str(c["model"]), int(c["port"]), tuple(str(a) for a in c.get("launch_args") or ())))
    return out


async def serve(
    engines: Mapping[str, Any],
    *,
    python: str = sys.executable,
    health_timeout_s: float = 1800.0,
    stop: asyncio.Event | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Launch the servers, wait for ``/health``, print their URLs, then run until ``stop`` is set or the
    task is cancelled (Ctrl-C); the servers are always stopped on the way out (SIGTERM, then SIGKILL).
    Raises :class:`ServeError` if there is nothing to launch or a server fails to start or dies."""
    todo = launches(engines)
    if not todo:
        raise ServeError("no engine has kind: sglang with both model: and port:, so there is nothing to launch")
    procs: list[asyncio.subprocess.Process] = []
    try:
        for launch in todo:
            command = launch.command(python)
            echo(f"{launch.engine}: {shlex.join(command)}")
            procs.append(await asyncio.create_subprocess_exec(*command, start_new_session=True))
        waiting = (_wait_healthy(launch, proc, health_timeout_s) for launch, proc in zip(todo, procs, strict=True))
        await asyncio.gather(*waiting)
        for launch in todo:
            echo(f"{launch.engine}: ready at {launch.url}")
        echo("all servers ready; Ctrl-C stops them")
        waits = [asyncio.ensure_future(proc.wait()) for proc in procs]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if stop is None or not stop.is_set():
            launch, proc = next((lc, p) for lc, p in zip(todo, procs, strict=True) if p.returncode is not None)
            raise ServeError(f"the server of engine {launch.engine!r} exited with status {proc.returncode}")
    finally:
        await _stop_all(procs)


def main(engines: Mapping[str, Any], *, python: str = sys.executable) -> int:
    """Entry point for ``collab serve SCENARIO``: serve until Ctrl-C; the exit status."""
    try:
        asyncio.run(serve(engines, python=python))
    except KeyboardInterrupt:
        print("servers stopped")
        return 0
    except ServeError as e:
        print(f"collab serve: {e}", file=sys.stderr)
        return 1
    return 0


async def _wait_healthy(launch: Launch, proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            if proc.returncode is not None:
                hint = " (is SGLang installed? pip install 'collab[sglang]')" if proc.returncode else ""
                raise ServeError(f"the server of engine {launch.engine!r} exited with status {proc.returncode}{hint}")
            try:
                async with session.get(launch.url + "/health") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServeError(f"the server of engine {launch.engine!r} was not healthy after {timeout_s:g}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), HEALTH_POLL_S)


async def _stop_all(procs: Sequence[asyncio.subprocess.Process]) -> None:
    """SIGTERM each server's process group (SGLang runs several processes), then SIGKILL stragglers."""
    running = [p for p in procs if p.returncode is None]
    for p in running:
        _signal_group(p, signal.SIGTERM)
    if running:
        waits = [asyncio.ensure_future(p.wait()) for p in running]
        await asyncio.wait(waits, timeout=STOP_GRACE_S)
        for p in running:
            if p.returncode is None:
                _signal_group(p, signal.SIGKILL)
        await asyncio.gather(*waits)


def _signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _flag(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
