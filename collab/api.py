"""Running a scenario from Python (a notebook, a script): ``collab.simulate`` and ``collab.simulate_async``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from collab.display.progress import ProgressDisplay
from collab.log.run import Run, load_run
from collab.sim.runner import Observer, RunOptions
from collab.sim.runner import simulate as run_scenario

OPTIONS = ("out", "limit", "samples", "concurrency", "model", "dry_run", "resume", "retry_failed", "shard", "processes")


def run_options(overrides: dict[str, Any]) -> RunOptions:
    """Keyword arguments as run options: the CLI's options by name (``limit=2``, ``dry_run=True``), every
    other one a scenario override (``agents__a__temperature=0.9`` is ``--set agents.a.temperature=0.9``)."""
    settings = [f"{key.replace('__', '.')}={json.dumps(value)}"
                for key, value in overrides.items() if key not in OPTIONS]
    chosen = {key: value for key, value in overrides.items() if key in OPTIONS}
    for key in ("out", "resume"):
        if chosen.get(key) is not None:
            chosen[key] = Path(chosen[key])
    return RunOptions(overrides=settings, argv=["collab.simulate"], **chosen)


async def simulate_async(path: str | Path | None = None, *, progress: bool = True, **overrides: Any) -> Run:
    """Run (or with ``resume=RUN`` finish) a scenario; returns the run, read back."""
    options = run_options(overrides)
    in_flight: Counter[str] = Counter()
    options.watch = lambda engine, change: in_flight.update({engine: change})
    display = ProgressDisplay(in_flight=in_flight, generated=options.generated, waiting=options.waiting)
    observers: list[Observer] = [display] if progress else []
    options.notify, options.warn = (display.notice, display.warn) if progress else (None, None)
    with display if progress else contextlib.nullcontext():
        result = await run_scenario(Path(path) if path is not None else None, options, observers)
    return load_run(result.path)


def simulate(path: str | Path | None = None, *, progress: bool = True, **overrides: Any) -> Run:
    """:func:`simulate_async` for code without an event loop; inside one (a notebook) it runs on a thread."""
    work = simulate_async(path, progress=progress, **overrides)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()

