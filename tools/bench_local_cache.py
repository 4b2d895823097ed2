"""Benchmark the local engine's radix prefix cache on the relay scenario, with and without it.

Runs ``scenarios/relay.yaml`` twice on one loaded model, with the engine's ``cache`` option on,
then off, and prints per run: the tokens the model computed (prefill + decode), the unique tokens
of the trace tree (a trie over every request's input and output ids: the physical minimum is 1.0
times that), their ratio, and the wall-clock time of the simulation (model loading excluded).
The option is set on the engine rather than with ``--set engines.small.cache=false``: the scenario
stays the same, so both runs have the same episode ids and seeds, and sample the same traces.

Usage: python tools/bench_local_cache.py [--model PATH.gguf] [--problems 2] [--samples 4]
           [--turns 6] [--turn-tokens 48] [--concurrency 4] [--threads N] [--set KEY=VALUE ...]
           [--long [--seed-file TRACES.jsonl] [--seed-fraction 0.8]]

``--long`` is the realistic variant: every episode opens with a recorded reasoning trace of its
problem as a seeded span (by default the R1-Distill-Qwen-1.5B traces in the shared data of 6,000 to
9,000 characters, cut at 80 %: about 2K tokens), and the three agents relay on from there, so each
request carries a long prefix.

An episode ends when the model ends its message, and a small instruct model answers briefly: the
prompt asks for a long explanation so that episodes run their turns (``--set prompt.template=...``
overrides it). The report gives the mean trace length.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collab.engines.base import Completion, EngineLifecycle, GenerateRequest  # noqa: E402
from collab.engines.local.engine import LocalEngine, LocalStats  # noqa: E402
from collab.sim import runner  # noqa: E402

SCENARIO = ROOT / "scenarios" / "relay.yaml"
TRACES = ROOT.parent / "shared" / "data" / "trajectories" / "reasoning" / "R1-Distill-Qwen-1.5B.jsonl"
ENGINE = "small"
"""The relay scenario's local engine."""
AGENTS = ("a", "b", "c")
LONG_FORM = ("{problem}\n\nWrite a long and detailed explanation: restate the problem, explore two different "
             "methods, check every step, and only then put your final answer within \\boxed{{}}.")


@dataclass
class Recorder(EngineLifecycle):
    """Wraps an engine: keeps every request's full token sequence and the simulation's wall time."""

    inner: LocalEngine
    sequences: list[list[int]] = field(default_factory=list)
    lengths: dict[str, int] = field(default_factory=dict)
    """Per episode: its longest request (input and output), i.e. its final trace."""
    opened: float = 0.0
    closed: float = 0.0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    @property
    def replicas(self) -> int:
        return self.inner.replicas

    def counters(self) -> dict[str, Any]:
        return self.inner.counters()

    async def open(self) -> dict[str, Any]:
        info = await self.inner.open()
        self.opened = time.perf_counter()
        return info

    async def generate(self, request: GenerateRequest) -> Completion:
        completion = await self.inner.generate(request)
        self.sequences.append(list(request.input_ids) + completion.token_ids)
        episode = request.context.episode_id
        self.lengths[episode] = max(self.lengths.get(episode, 0), len(self.sequences[-1]))
        return completion

    async def aclose(self) -> None:
        self.closed = time.perf_counter()  # the engine is shared across runs: left open


def unique_tokens(sequences: list[list[int]]) -> int:
    """Nodes of the token trie over ``sequences``: what a perfect prefix cache computes once."""
    root: dict[int, dict] = {}
    count = 0
    for sequence in sequences:
        node = root
        for token in sequence:
            child = node.get(token)
            if child is None:
                child = node[token] = {}
                count += 1
            node = child
    return count


@contextlib.contextmanager
def shared_model(base: LocalEngine, cache: bool, built: list[Recorder]) -> Iterator[None]:
    """Build the scenario's local engines around ``base``'s loaded model, with ``cache`` on or off."""
    original = runner.build_engine

    def build(name: str, config: Any) -> Any:
        options = config.model_dump(exclude={"kind"}) | {"cache": cache}
        engine = LocalEngine(name, **options)
        engine.attach(base.model, base.tokenizer)
        built.append(Recorder(engine))
        return built[-1]

    runner.build_engine = build  # type: ignore[assignment]
    try:
        yield
    finally:
        runner.build_engine = original  # type: ignore[assignment]


@dataclass
class Result:
    label: str
    stats: LocalStats
    unique: int
    wall_s: float
    sequences: list[list[int]]
    lengths: dict[str, int]


def long_relay(out: Path, args: argparse.Namespace) -> Path:
    """The relay scenario, each episode opening with a recorded trace of its problem as a seeded span."""
    scenario = yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))
    scenario["name"] = "relay-long"
    rows = [json.loads(line) for line in Path(args.seed_file).read_text(encoding="utf-8").splitlines() if line]
    traces = out / "traces.jsonl"  # of a typical length: the cut prefix stays near 2K tokens
    traces.write_text("".join(json.dumps(row) + "\n" for row in rows if 6000 <= len(row["response"]) <= 9000),
                      encoding="utf-8")
    scenario["pools"] = {"traces": {"files": [str(traces)], "agent": "recorded"}}
    scenario["dataset"] = {"pool": "traces"}
    graph = scenario["graph"]
    graph["turns"]["opening"] = {"seed": {"pool": "traces", "agent": "recorded", "fraction": args.seed_fraction,
                                          "correct": None}}
    graph["edges"] = [f"opening->{graph['start']}", *graph["edges"]]
    graph["start"] = "opening"
    path = out / "relay-long.yaml"
    path.write_text(yaml.safe_dump(scenario), encoding="utf-8")
    return path


def overrides(args: argparse.Namespace) -> list[str]:
    """The scenario overrides of a run: the long-form prompt, the turn budgets, then ``--set``."""
    budget = args.turns * len(AGENTS) * (args.turn_tokens + 32) + (8192 if args.long else 0)
    found = [f"prompt.template={json.dumps(LONG_FORM)}", f"engines.{ENGINE}.cache_budget_mb={args.budget_mb}",
             f"limits.max_turns={args.turns * len(AGENTS) + args.long}", f"limits.max_tokens={budget}"]
    return found + [f"graph.turns.{agent}.until.tokens={args.turn_tokens}" for agent in AGENTS] + args.set


async def run(base: LocalEngine, args: argparse.Namespace, cache: bool, out: Path) -> Result:
    options = runner.RunOptions(overrides=overrides(args), out=out / ("cache" if cache else "plain"),
                                limit=args.problems, samples=args.samples, concurrency=args.concurrency,
                                model=args.model, argv=sys.argv)
    built: list[Recorder] = []
    with shared_model(base, cache, built):
        result = await runner.simulate(long_relay(out, args) if args.long else SCENARIO, options)
    if result.summary.get("failed"):
        raise SystemExit(f"{result.summary['failed']} episodes failed: see {result.path}")
    (recorder,) = built
    return Result("cache" if cache else "no cache", recorder.inner.stats, unique_tokens(recorder.sequences),
                  recorder.closed - recorder.opened, recorder.sequences, recorder.lengths)


def report(results: list[Result], args: argparse.Namespace, device: str) -> None:
    cached, plain = results
    print(f"relay on {Path(args.model).name}: {args.problems} problems x {args.samples} samples, "
          f"{len(AGENTS)} agents x {args.turns} turns of {args.turn_tokens} tokens, concurrency {args.concurrency}, "
          f"{device}, {torch.get_num_threads()} thread(s)")
    print(f"{'':9}{'requests':>9}{'prefill':>9}{'decode':>8}{'computed':>10}{'unique':>8}"
          f"{'computed/unique':>17}{'peak cache MB':>15}{'max batch':>11}{'wall s':>9}")
    for r in results:
        s = r.stats
        print(f"{r.label:9}{s.requests:>9}{s.prefill_tokens:>9}{s.decode_tokens:>8}{s.computed_tokens:>10}"
              f"{r.unique:>8}{s.computed_tokens / r.unique:>17.3f}{s.peak_cache_bytes / 2**20:>15.1f}"
              f"{s.max_batch:>11}{r.wall_s:>9.1f}")
    lengths = list(cached.lengths.values())
    print(f"{len(lengths)} episodes, final trace {sum(lengths) / len(lengths):.0f} tokens on average "
          f"(longest {max(lengths)})")
    same = Counter(map(tuple, cached.sequences)) & Counter(map(tuple, plain.sequences))
    print(f"requests identical in both runs (same input, same output): {sum(same.values())} of {len(cached.sequences)}")
    print(f"wall-clock no cache / cache: {plain.wall_s / cached.wall_s:.2f}x")


async def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    base = LocalEngine("bench", args.model, device=args.device)
    info = await base.open()  # loads and warms up on the model's worker thread, which every run's engine shares
    with tempfile.TemporaryDirectory() as tmp:
        results = [await run(base, args, cache, Path(tmp)) for cache in (True, False)]
    report(results, args, info["device"])
    await base.aclose()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    default_model = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(default_model),
                        help="hub id, folder or .gguf file (default: %(default)s)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--problems", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--turns", type=int, default=6, help="turns per agent")
    parser.add_argument("--turn-tokens", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--budget-mb", type=float, default=512)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="more scenario overrides, as for collab simulate")
    parser.add_argument("--long", action="store_true", help="realistic variant: episodes open with a recorded trace")
    parser.add_argument("--seed-file", default=str(TRACES), help="recorded traces for --long (default: %(default)s)")
    parser.add_argument("--seed-fraction", type=float, default=0.8, help="share of each recorded trace kept")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
