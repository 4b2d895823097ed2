"""Pools: named sets of trajectories that injections and seeded prefixes draw from."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from collab.data.jsonl import read_rows, require


@dataclass(frozen=True)
class Trajectory:
    problem_id: str
    agent: str
    text: str
    """The full output after the prompt: thinking and answer."""
    correct: bool | None = None
    answer: str | None = None
    """The gold answer of the trajectory's problem."""
    problem: str = ""


class Pool:
    """Trajectories indexed by problem and by agent."""

    def __init__(self, name: str, trajectories: list[Trajectory]) -> None:
        self.name = name
        self.trajectories = trajectories
        self._by_problem: dict[str, list[Trajectory]] = defaultdict(list)
        for trajectory in trajectories:
            self._by_problem[trajectory.problem_id].append(trajectory)

    def __len__(self) -> int:
        return len(self.trajectories)

    def for_problem(self, problem_id: str, agent: str | None = None, *, correct: bool | None = None) -> list[Trajectory]:
        return [
            t for t in self._by_problem.get(problem_id, [])
            if (agent is None or t.agent == agent) and (correct is None or t.correct == correct)
        ]

    def problem_ids(self) -> list[str]:
        return sorted(self._by_problem)

    def others(self, problem_id: str, agent: str | None = None) -> list[Trajectory]:
        return [t for t in self.trajectories if t.problem_id != problem_id and (agent is None or t.agent == agent)]


def load_pool(name: str, files: list[Path], agent: str | None = None) -> Pool:
    """Trajectories from JSONL files with ``id``, ``response`` and optionally ``model``, ``correct``, ``gold_answer``."""
    trajectories: list[Trajectory] = []
    for path in files:
        for line, row in read_rows(path):
            require(row, ["id", "response"], path, line)
            trajectories.append(Trajectory(
                problem_id=str(row["id"]),
                agent=agent or str(row.get("model") or path.stem),
                text=str(row["response"]),
                correct=row.get("correct"),
                answer=None if row.get("gold_answer") is None else str(row["gold_answer"]),
                problem=str(row.get("problem") or ""),
            ))
    return Pool(name, trajectories)
