"""Orchestration throughput: a relay scenario on an engine that only sleeps.

Prints achieved concurrency ÷ configured limit (target ≥ 0.9), per-turn orchestration overhead
(process CPU time per turn; the engine sleeps, so this is all collab), events written per second,
and peak memory per 1,000 in-flight episodes.

    python tools/bench_runner.py --episodes 5000 --concurrency 1000 --latency 0.05 --jitter 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import collab.sim.runner
from collab.engines.base import Completion, EngineLifecycle, GenerateRequest
from collab.engines.tokenizers import ByteTokenizer
from collab.sim.runner import RunOptions, simulate

SCENARIO = """\
name: bench
samples: {samples}
concurrency: {concurrency}
dataset: {{file: {data}}}
engines: {{e: {{kind: scripted}}}}
agents: {{a: {{engine: e}}, b: {{engine: e}}, c: {{engine: e}}}}
graph:
  start: a
  turns:
    a: {{until: {{tokens: 32, align: token}}}}
    b: {{until: {{tokens: 32, align: token}}}}
    c: {{until: {{tokens: 32, align: token}}}}
  edges: [a->b, b->c, c->a]
limits: {{max_turns: {turns}}}
"""


def current_rss() -> int:
    """Resident memory of this process now, in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


class SleepEngine(EngineLifecycle):
    """Sleeps for a random latency and returns a fixed sentence; counts requests in flight."""

    def __init__(self, name: str, latency: float, jitter: float, seed: int = 0) -> None:
        self.name = name
        self.tokenizer = ByteTokenizer()
        self.latency, self.jitter = latency, jitter
        self.rng = random.Random(seed)
        self.in_flight = 0
        self.area = 0.0  # integral of in-flight requests over time
        self._last = time.perf_counter()
        self.first: float | None = None
        self.episodes: set[str] = set()
        self.all_started: tuple[float, float] | None = None
        """(time, area) when the last episode sent its first request: the end of the steady state."""
        self.expected = 0
        self.rss_steady = 0
        self.sentence = self.tokenizer.encode("We add the terms and check them once more, carefully now. ")

    def _tick(self, delta: int) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.area += self.in_flight * (now - self._last)
        self._last = now
        self.in_flight += delta

    async def open(self) -> dict[str, Any]:
        return {"kind": "sleep"}

    async def generate(self, request: GenerateRequest) -> Completion:
        self._tick(+1)
        self.episodes.add(request.context.episode_id)
        if self.all_started is None and len(self.episodes) == self.expected:
            self.all_started = (self._last, self.area)
            self.rss_steady = current_rss()
        try:
            await asyncio.sleep(self.latency * (1 + self.jitter * (2 * self.rng.random() - 1)))
        finally:
            self._tick(-1)
        ids = (self.sentence * (1 + request.max_new_tokens // len(self.sentence)))[: request.max_new_tokens]
        return Completion(self.tokenizer.decode(ids), ids, "length", prompt_tokens=len(request.input_ids))

    @property
    def replicas(self) -> int:
        return 1

    def counters(self) -> dict[str, Any]:
        return {"requests": len(self.episodes)}

    async def aclose(self) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--latency", type=float, default=0.05, help="mean seconds per request")
    parser.add_argument("--jitter", type=float, default=0.5, help="uniform ± share of the latency")
    args = parser.parse_args()

    engines: list[SleepEngine] = []

    samples = 10
    problems = max(1, args.episodes // samples)

    def build(name: str, config: Any) -> SleepEngine:
        engines.append(SleepEngine(name, args.latency, args.jitter))
        engines[-1].expected = problems * samples
        return engines[-1]

    collab.sim.runner.build_engine = build
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with open(root / "problems.jsonl", "w") as handle:
            for i in range(problems):
                handle.write(f'{{"id": "p{i}", "problem": "What is {i} + {i}?", "answer": "{2 * i}"}}\n')
        (root / "bench.yaml").write_text(SCENARIO.format(
            samples=samples, concurrency=args.concurrency, data=root / "problems.jsonl", turns=args.turns))
        rss_before = current_rss()
        cpu_before = time.process_time()
        wall_before = time.perf_counter()
        result = asyncio.run(simulate(root / "bench.yaml", RunOptions(out=root / "runs", argv=[])))
        wall = time.perf_counter() - wall_before
        cpu = time.process_time() - cpu_before
        with open(result.path / "events.jsonl", "rb") as log:
            events = sum(1 for _ in log)
    engine = engines[0]
    first = engine.first or engine._last
    span = engine._last - first
    achieved = engine.area / span if span else 0.0
    steady_end, steady_area = engine.all_started or (engine._last, engine.area)
    steady = steady_area / (steady_end - first) if steady_end > first else 0.0
    turns = sum(r["spans"] for r in result.summary["per_agent"].values())
    episodes = result.summary["episodes"]
    print(f"episodes {episodes}, turns {turns}, requests {result.summary['tokens']['requests']}, wall {wall:.1f} s")
    print(f"achieved concurrency / limit, while episodes wait to start: {steady:.1f} / {args.concurrency} "
          f"= {steady / args.concurrency:.3f}")
    print(f"achieved concurrency / limit, whole run incl. the tail: {achieved / args.concurrency:.3f}")
    print(f"orchestration CPU per turn: {cpu / turns * 1e3:.3f} ms")
    print(f"events written per second: {events / wall:,.0f}")
    growth = (engine.rss_steady - rss_before) / 2**20
    print(f"memory with {args.concurrency} episodes in flight: +{growth:.1f} MiB "
          f"= {growth / args.concurrency * 1000:.1f} MiB per 1,000 in-flight episodes")


if __name__ == "__main__":
    main()
