"""The benchmark tools' scenarios load: a tool whose overrides no longer parse measures nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from collab.scenario import load

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("long", [False, True])
def test_the_cache_benchmark_scenario_loads_with_its_overrides(long: bool, shared: Path, tmp_path: Path) -> None:
    bench = tool("bench_local_cache")
    traces = shared / "data" / "trajectories" / "reasoning" / "R1-Distill-Qwen-1.5B.jsonl"
    args = bench.parse(["--turns", "2", "--turn-tokens", "16", "--seed-file", str(traces), *(["--long"] * long)])
    path = bench.long_relay(tmp_path, args) if long else bench.SCENARIO
    scenario = load(path, bench.overrides(args)).scenario
    assert scenario.prompt.template == bench.LONG_FORM
    assert scenario.limits.max_turns == 2 * len(bench.AGENTS) + long
    assert all(scenario.graph.turns[agent].until.tokens == 16 for agent in bench.AGENTS)
    assert (scenario.graph.start == "opening") is long
