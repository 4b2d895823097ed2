"""What attribution costs: the probe method against rollouts, on the same episodes of one run.

Simulates ``scenarios/relay.yaml`` once on a real model with no attribution, then judges that run's
episodes twice, with ``probe`` and with ``rollouts`` (``collab judge``'s code path, each on freshly
loaded engines with an empty prefix cache; the clock starts once they are loaded), and prints per
method: span boundaries valued, model requests, prompt and generated tokens, wall clock, and the
rollouts ÷ probe ratios; plus how often both methods name the same derailers and rescuers.

Usage: python tools/bench_attribution.py [--model PATH.gguf] [--limit 2] [--samples 2]
           [--max-tokens 128] [--rollout-tokens 64] [--threads N]

The model defaults to ``$COLLAB_TEST_MODEL`` or the GGUF that ``tools/fetch_test_model.py`` fetches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from collab.cli import main as collab
from collab.engines import build_engine
from collab.log.store import RunStore
from collab.scenario import load
from collab.sim.rejudge import judge_run
from collab.sim.runner import writer_probes

ROOT = Path(__file__).resolve().parent.parent
MODEL = Path(os.environ.get("COLLAB_TEST_MODEL", ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
METHODS = ("probe", "rollouts")


def simulate(out: Path, args: argparse.Namespace) -> Path:
    status = collab([
        "simulate", str(ROOT / "scenarios" / "relay.yaml"), "--model", str(args.model), "--out", str(out),
        "--limit", str(args.limit), "--samples", "1", "--quiet",
        "--set", "judge.attribution.method=none", "--set", f"limits.max_tokens={args.max_tokens}",
        "--set", f"judge.attribution.samples={args.samples}",
        "--set", f"judge.attribution.max_tokens={args.rollout_tokens}",
    ])
    if status != 0:
        raise SystemExit(f"simulation failed with status {status}")
    (run,) = out.iterdir()
    return run


async def judge(run: Path, method: str, samples: int) -> float:
    """Judge ``run`` with ``method`` on freshly loaded engines; the seconds it took once they were loaded."""
    scenario = load(run / "scenario.yaml").scenario
    engines = {name: build_engine(name, config) for name, config in scenario.engines.items()}
    await asyncio.gather(*(engine.open() for engine in engines.values()))
    try:
        started = time.perf_counter()
        await judge_run(run, settings=scenario.judge, method=method, samples=samples,  # type: ignore[arg-type]
                        probes=writer_probes(scenario, engines), system=scenario.prompt.system)
        return time.perf_counter() - started
    finally:
        await asyncio.gather(*(engine.aclose() for engine in engines.values()))


def marks(run: Path) -> dict[tuple[str, int], str]:
    """(episode, span) -> derailed / rescued, as the last judgement left them."""
    return {(r.id, v.span): v.verdict for r in RunStore(run).episodes().values()
            for v in r.verdicts if v.span is not None and v.verdict in ("derailed", "rescued")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--limit", type=int, default=2, help="problems")
    parser.add_argument("--samples", type=int, default=2, help="K: rollouts (or sampled probes) per boundary")
    parser.add_argument("--max-tokens", type=int, default=128, help="trace tokens per episode")
    parser.add_argument("--rollout-tokens", type=int, default=64, help="token budget of one rollout")
    parser.add_argument("--threads", type=int, help="torch threads (fewer can be faster on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.model.exists():
        raise SystemExit(f"no model at {args.model}: run python tools/fetch_test_model.py or set COLLAB_TEST_MODEL")
    with tempfile.TemporaryDirectory() as folder:
        run = simulate(Path(folder), args)
        rows, verdicts = {}, {}
        for method in METHODS:
            wall = asyncio.run(judge(run, method, args.samples))
            cost = json.loads((run / "summary.json").read_text())["judge"][method]
            rows[method] = {**cost, "wall_s": wall}
            verdicts[method] = marks(run)
        episodes = len(RunStore(run).episodes())
    print(f"relay on {args.model.name}: {episodes} episodes, K = {args.samples}, rollout budget "
          f"{args.rollout_tokens} tokens (probe: greedy, one request per boundary)")
    keys = ("boundaries", "requests", "prompt_tokens", "tokens", "wall_s")
    print(f"{'method':<10}" + "".join(f"{k:>15}" for k in keys))
    for method, row in rows.items():
        print(f"{method:<10}" + "".join(f"{row[k]:>15.1f}" if k == "wall_s" else f"{row[k]:>15}" for k in keys))
    print(f"{'ratio':<10}" + "".join(
        f"{rows['rollouts'][k] / rows['probe'][k]:>14.1f}x" if rows["probe"][k] else f"{'-':>15}" for k in keys))
    same = set(verdicts["probe"].items()) & set(verdicts["rollouts"].items())
    print(f"derail/rescue marks: probe {len(verdicts['probe'])}, rollouts {len(verdicts['rollouts'])}, "
          f"in both {len(same)}")


if __name__ == "__main__":
    main()
