"""The grader on recorded and held-out data: agreement with the authors' labels, and checks per second.

    python tools/bench_judge.py [--workers N] [--shared PATH]

Grades every ``data/trajectories/reasoning/*.jsonl`` record of the shared assets (default:
``$COLLAB_SHARED`` or ``../shared`` beside the repository) once in this process (no timeout, the
main thread) and once through :class:`collab.judge.answers.AnswerChecker` (worker processes, hard
timeout), and prints both rates and their ratio. Then the agreement (N/N) with every recorded label:
solo ``correct``, distraction ``recovered`` and ``followed_distractor``; and the held-out check: every
benchmark reference solution that ends in a box, graded against its own gold answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from pathlib import Path

from collab.judge.answers import AnswerChecker, grade
from collab.judge.labels import agreement

ROOT = Path(__file__).resolve().parent.parent


def load(shared: Path) -> list[dict]:
    files = sorted((shared / "data" / "trajectories" / "reasoning").glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no recorded traces under {shared}: pass --shared or set COLLAB_SHARED")
    return [json.loads(line) for path in files for line in path.read_text(encoding="utf-8").splitlines() if line]


def in_process(rows: list[dict]) -> tuple[float, list[bool | None]]:
    grade("\\boxed{1}", "2")  # imports
    started = time.perf_counter()
    results = [grade(r["response"], r["gold_answer"]).correct for r in rows]
    return time.perf_counter() - started, results


async def pooled(rows: list[dict], workers: int, timeout_s: float) -> tuple[float, float, list[bool | None]]:
    started = time.perf_counter()
    async with AnswerChecker(workers=workers, timeout_s=timeout_s, cache=0) as checker:
        ready = time.perf_counter()
        grades = await asyncio.gather(*(checker.check(r["response"], r["gold_answer"]) for r in rows))
        done = time.perf_counter()
    return ready - started, done - ready, [g.correct for g in grades]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=10.0, help="hard timeout per check in the pool (s)")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("COLLAB_SHARED", ROOT.parent / "shared")))
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # Math-Verify warns that its own (signal) timeouts are off
    rows = load(args.shared)
    labels = [r["correct"] for r in rows]

    inproc_s, inproc = in_process(rows)
    startup_s, pool_s, pool = asyncio.run(pooled(rows, args.workers, args.timeout))

    def share(results: list[bool | None]) -> str:
        return f"{sum(a == b for a, b in zip(results, labels, strict=True)) / len(rows):.1%}"

    print(f"{len(rows)} recorded traces, {os.cpu_count()} CPUs")
    print(f"{'mode':<22}{'seconds':>9}{'checks/s':>11}{'agreement':>11}")
    print(f"{'in-process (1 thread)':<22}{inproc_s:>9.2f}{len(rows) / inproc_s:>11.1f}{share(inproc):>11}")
    print(f"{f'pool ({args.workers} workers)':<22}{pool_s:>9.2f}{len(rows) / pool_s:>11.1f}{share(pool):>11}")
    print(f"pool / in-process: {inproc_s / pool_s:.2f}x  (pool start-up, not counted: {startup_s:.2f} s)")
    for column in asyncio.run(labelled(args.shared, args.workers, args.timeout)):
        print(column)
        for record in column.fallback:
            print(f"  labelled true, no final answer: {record}")
    for name, (correct, total) in held_out(args.shared).items():
        print(f"held-out {name} reference solutions: {correct}/{total} graded correct")


async def labelled(shared: Path, workers: int, timeout_s: float) -> list:
    async with AnswerChecker(workers=workers, timeout_s=timeout_s) as checker:
        return await agreement(shared, checker)


def held_out(shared: Path) -> dict[str, tuple[int, int]]:
    counts = {}
    for path in sorted((shared / "data" / "benchmarks").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        rows = [r for r in rows if "\\boxed" in (r.get("solution") or "")]
        if rows:
            counts[path.stem] = (sum(bool(grade(r["solution"], r["answer"], thinking=False).correct) for r in rows),
                                 len(rows))
    return counts


if __name__ == "__main__":
    main()
