"""Pools: named sets of trajectories that injections and seeded prefixes draw from."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from collab.data.errors import DataError
from collab.data.jsonl import bool_field, read_rows, require, text_field
from collab.data.problems import MathProblem
from collab.trace import thinking_part


@dataclass(frozen=True)
class Trajectory:
    """One recorded solution: its problem, author, text and whether it was correct."""

    problem_id: str
    agent: str
    text: str
    """The full output after the prompt: thinking and answer."""
    correct: bool | None = None
    answer: str | None = None
    """The gold answer of the trajectory's problem."""
    problem: str = ""
    source: str = ""
    """The benchmark of the trajectory's problem: the row's ``source``, else its id's prefix (``math/…``)."""

    @property
    def thinking(self) -> str:
        """The text before ``</think>`` (all of it when the thinking was never closed or never opened)."""
        return thinking_part(self.text)


class Pool:
    """Trajectories indexed by problem and by agent."""

    def __init__(self, name: str, trajectories: list[Trajectory]) -> None:
        self.name = name
        self.trajectories = trajectories
        self._by_problem: dict[str, list[Trajectory]] = defaultdict(list)
        self._rates: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for trajectory in trajectories:
            self._by_problem[trajectory.problem_id].append(trajectory)
            if trajectory.correct is not None:
                counts = self._rates[(trajectory.problem_id, trajectory.agent)]
                counts[0] += bool(trajectory.correct)
                counts[1] += 1

    def __len__(self) -> int:
        return len(self.trajectories)

    def agents(self) -> list[str]:
        """The authors of the pool's trajectories."""
        return sorted({t.agent for t in self.trajectories})

    def for_problem(self, problem_id: str, agent: str | None = None, *,
                    correct: bool | None = None) -> list[Trajectory]:
        """Trajectories of a problem, optionally by one agent and of one correctness."""
        return [
            t for t in self._by_problem.get(problem_id, [])
            if (agent is None or t.agent == agent) and (correct is None or t.correct == correct)
        ]

    def pick_other(self, problem_id: str, key: int, agent: str | None = None, *,
                   other_agent: bool = False, correct: bool | None = None) -> Trajectory | None:
        """A trajectory of another problem, chosen by ``key``: by ``agent`` (with ``other_agent``: by anyone
        else; None: by anyone), graded ``correct`` (None: any). Keyed probes first, so a large pool is not
        scanned per episode."""

        def fits(t: Trajectory) -> bool:
            return (t.problem_id != problem_id and (agent is None or (t.agent == agent) != other_agent)
                    and (correct is None or t.correct == correct))

        rng = random.Random(key)
        if self.trajectories:
            for _ in range(64):
                trajectory = self.trajectories[rng.randrange(len(self.trajectories))]
                if fits(trajectory):
                    return trajectory
        choices = [t for t in self.trajectories if fits(t)]
        return choices[rng.randrange(len(choices))] if choices else None

    def solve_rate(self, problem_id: str, agent: str) -> float | None:
        """Share of ``agent``'s graded trajectories of the problem that are correct (None: it has none)."""
        correct, graded = self._rates.get((problem_id, agent), (0, 0))
        return correct / graded if graded else None

    def problems(self) -> list[MathProblem]:
        """The pool's problems in order of first appearance, with texts and gold answers from the trajectories."""
        problems = []
        for problem_id, trajectories in self._by_problem.items():
            answer = next((t.answer for t in trajectories if t.answer is not None), None)
            if answer is not None:
                text = next((t.problem for t in trajectories if t.problem), "")
                source = next((t.source for t in trajectories if t.source), "")
                problems.append(MathProblem(problem_id, text, answer, source=source or self.name))
        return problems


def require_agent(pool: Pool, agent: str) -> None:
    """Raise a clear error when ``pool`` holds nothing by ``agent`` (a misspelt or uncredited name)."""
    if not any(t.agent == agent for t in pool.trajectories):
        raise DataError(f"pool {pool.name}", None, f"no trajectories by `{agent}`; it holds: "
                        f"{', '.join(pool.agents()) or 'nothing'} (credit files with `agent:`)")


def load_pool(name: str, files: list[tuple[Path, str | None]]) -> Pool:
    """Trajectories from JSONL files with ``id``, ``response`` and optionally ``model``, ``correct``, ``gold_answer``.

    Each file comes with the agent its trajectories are credited to (None: each row's ``model``).
    """
    trajectories: list[Trajectory] = []
    for path, agent in files:
        for line, row in read_rows(path):
            require(row, ["id", "response"], path, line)
            problem_id = text_field(row, "id", path, line, numbers=True) or ""
            trajectories.append(Trajectory(
                problem_id=problem_id,
                agent=agent or text_field(row, "model", path, line) or path.stem,
                text=text_field(row, "response", path, line) or "",
                correct=bool_field(row, "correct", path, line),
                answer=text_field(row, "gold_answer", path, line, numbers=True),
                problem=text_field(row, "problem", path, line) or "",
                source=text_field(row, "source", path, line) or problem_id.partition("/")[0] * ("/" in problem_id),
            ))
    return Pool(name, trajectories)
