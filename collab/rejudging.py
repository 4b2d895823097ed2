"""``collab judge RUN``: rebuild a run's engines from its scenario and re-judge its log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from collab.engines import build_engine
from collab.judge import judge_run
from collab.runner import writer_probes
from collab.scenario import load
from collab.store import MANIFEST, SCENARIO, StoreError


async def rejudge(run: Path, *, method: Literal["answers", "rollouts"] | None = None,
                  samples: int | None = None) -> dict[str, Any]:
    """Re-judge a finished run; rollouts open the run's engines (the answers method needs none)."""
    if not (run / MANIFEST).exists():
        raise StoreError(f"{run} is not a run folder (no {MANIFEST})")
    scenario = load(run / SCENARIO).scenario
    method = method or ("rollouts" if scenario.judge.attribution.method == "rollouts" else "answers")
    engines = {}
    if method == "rollouts":
        engines = {name: build_engine(name, config) for name, config in scenario.engines.items()}
        await asyncio.gather(*(engine.open() for engine in engines.values()))
    try:
        probes = writer_probes(scenario, engines)
        return await judge_run(run, settings=scenario.judge, method=method, samples=samples, probes=probes or None,
                               system=scenario.prompt.system)
    finally:
        await asyncio.gather(*(engine.aclose() for engine in engines.values()), return_exceptions=True)
