"""Final answers: extraction, Math-Verify agreement with recorded labels, hard timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from collab.judge.answers import (
    AnswerChecker,
    extract_answer,
    final_region,
    grade,
    response_text,
    stated_answer,
)
from collab.trace import Span

HANGS = "So the answer is $\\boxed{9^{9^{9^{9}}}}$."
"""Math-Verify (with its signal timeouts off, as in the workers) never finishes comparing this."""


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("response, thinking, expected", [
    ("think 3\n</think>\n\nSo \\boxed{\\frac{1}{2}}.", True, "\\frac{1}{2}"),
    ("\\boxed{1} then </think> The answer is $7$.", True, "7"),
    ("\\boxed{1} then </think> The answer is $7$.", False, "1"),
    ("</think>Final Answer: \\(\\sqrt{2}\\)", True, "\\sqrt{2}"),
    ("</think>**Answer:** (1, 2).", True, "(1, 2)"),
    ("</think>so the answer is 5 + 3 = 8.", True, "8"),
    ("</think>\\boxed{\\begin{pmatrix} 1 \\\\ {2} \\end{pmatrix}}", True, "\\begin{pmatrix} 1 \\\\ {2} \\end{pmatrix}"),
    ("</think>We get \\boxed 5$.", True, "5"),
    ("</think>No idea.", True, None),
    ("</think>the answer is a half", True, None),
])
def test_extract_answer(response: str, thinking: bool, expected: str | None) -> None:
    assert extract_answer(response, thinking) == expected


def test_unclosed_thinking_is_graded_whole() -> None:
    assert final_region("I think it is 4", thinking=True) == "I think it is 4"
    assert stated_answer("\\boxed{1} and later \\boxed{2}") == "2"


def test_response_skips_text_from_outside() -> None:
    spans = [Span("a", "generated", "x=\\boxed{3} "), Span("h", "injected", "\\boxed{9} "),
             Span("a", "generated", "ok")]
    assert response_text(spans) == "ok"
    assert response_text(spans[:1]) == "x=\\boxed{3} "


def test_grade_in_process() -> None:
    assert grade("</think>\\boxed{0.5}", "\\frac12").correct is True
    assert grade("</think>\\boxed{3}", "2").correct is False
    nothing = grade("</think>I give up", "2")
    assert (nothing.correct, nothing.answer, nothing.status) == (False, None, "ok")


async def test_agreement_with_recorded_labels(shared: Path) -> None:
    rows = [row for path in sorted((shared / "data/trajectories/reasoning").glob("*.jsonl")) for row in load(path)]
    assert rows
    async with AnswerChecker(workers=2, timeout_s=10) as checker:
        grades = await asyncio.gather(*(checker.check(r["response"], r["gold_answer"], thinking=True) for r in rows))
    agreeing = sum(g.correct == r["correct"] for g, r in zip(grades, rows, strict=False))
    disagreeing = [(r["id"], r["model"], r["correct"], g)
                   for g, r in zip(grades, rows, strict=True) if g.correct != r["correct"]]
    assert agreeing / len(rows) == 1.0, disagreeing[:5]


async def test_hanging_check_costs_at_most_the_timeout() -> None:
    timeout = 2.0
    async with AnswerChecker(workers=2, timeout_s=timeout) as checker:
        started = time.perf_counter()
        hung, fine = await asyncio.gather(checker.check(HANGS, "5", thinking=False),
                                          checker.check("\\boxed{5}", "5", thinking=False))
        elapsed = time.perf_counter() - started
        assert fine.correct is True
        assert hung.correct is None and hung.status == "unjudged"
        assert hung.reason is not None and hung.reason.startswith("timeout")
        assert hung.answer == "9^{9^{9^{9}}}"
        assert elapsed < timeout + 1.0
        # the hung worker was replaced: every worker answers again
        again = await asyncio.gather(*(checker.check(f"\\boxed{{{i}}}", str(i), thinking=False) for i in range(6)))
        assert all(g.correct for g in again)


async def test_crashed_worker_is_unjudged_and_replaced() -> None:
    async with AnswerChecker(workers=1, timeout_s=5) as checker:
        slot = checker.pool._slots[0]
        assert slot.proc is not None
        os.kill(slot.proc.pid, 9)
        await slot.proc.wait()
        crashed = await checker.check("\\boxed{5}", "5", thinking=False)
        assert crashed.status == "unjudged" and crashed.reason is not None and crashed.reason.startswith("crash")
        assert (await checker.check("\\boxed{5}", "5", thinking=False)).correct is True


async def test_equal() -> None:
    async with AnswerChecker(workers=1) as checker:
        assert await checker.equal("\\frac{1}{2}", "0.5") is True
        assert await checker.equal("(1, 2)", "(1,2)") is True
        assert await checker.equal("2", "3") is False
