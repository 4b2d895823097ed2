"""The grader against recorded labels: the authors' solo traces and distraction episodes.

Reads ``data/trajectories/reasoning/*.jsonl`` (label ``correct``) and
``data/trajectories/distraction/*.jsonl`` (labels ``recovered`` and ``followed_distractor``) of a
shared-assets folder and grades every record through an :class:`AnswerChecker`. Those labels came from
Math-Verify's own extraction, which credits a cut-off ramble through its last-expression fallback;
the grader here does not, so such records are reported apart (``fallback``), not hidden.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from collab.judge.answers import AnswerChecker, Grade


@dataclass
class Agreement:
    """How one label column compares with the grader."""

    label: str
    total: int = 0
    agree: int = 0
    fallback: list[str] = field(default_factory=list)
    """Records labelled true that state no final answer (credited by Math-Verify's fallback)."""
    other: list[str] = field(default_factory=list)
    """Any other disagreement (there should be none)."""

    def add(self, record_id: str, label: bool, grade: Grade) -> None:
        """Count one record's grade against its label."""
        self.total += 1
        if grade.correct == label:
            self.agree += 1
        elif label and grade.status == "no_answer":
            self.fallback.append(record_id)
        else:
            self.other.append(record_id)

    def __str__(self) -> str:
        judged = self.total - len(self.fallback)
        return (f"{self.label}: {self.agree}/{self.total} agree; {self.agree}/{judged} of the records that "
                f"state a final answer; {len(self.fallback)} labelled true with no final answer")


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def agreement(shared: Path, checker: AnswerChecker) -> list[Agreement]:
    """Grade every recorded solo trace and distraction episode under ``shared``/data/trajectories."""
    solo = _rows(shared / "data" / "trajectories" / "reasoning")
    episodes = _rows(shared / "data" / "trajectories" / "distraction")
    columns = [Agreement("solo correct"), Agreement("distraction recovered"),
               Agreement("distraction followed_distractor")]
    grades = await asyncio.gather(
        *(checker.check(r["response"], r["gold_answer"], thinking=True) for r in solo),
        *(checker.check(r["continuation"], r["gold_answer"], thinking=True) for r in episodes),
        *(checker.check(r["continuation"], r["distractor_gold_answer"], thinking=True) for r in episodes),
    )
    labelled = ([(columns[0], r, r["correct"]) for r in solo]
                + [(columns[1], r, r["recovered"]) for r in episodes]
                + [(columns[2], r, r["followed_distractor"]) for r in episodes])
    for (column, row, label), grade in zip(labelled, grades, strict=True):
        column.add(f"{row.get('model', '')}:{row['id']}", bool(label), grade)
    return columns
