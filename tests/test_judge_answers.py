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
    answers_equal,
    extract_answer,
    final_region,
    grade,
    response_text,
    stated_answer,
)
from collab.judge.labels import agreement
from collab.trace import Span

HANGS = "So the answer is $\\boxed{9^{9^{9^{9}}}}$."
"""Math-Verify (with its signal timeouts off, as in the workers) never finishes comparing this."""


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("response, thinking, expected", [
    ("think 3\n</think>\n\nSo \\boxed{\\frac{1}{2}}.", True, "\\frac{1}{2}"),
    ("\\boxed{1} then </think> The answer is $\\boxed{7}$.", True, "7"),
    ("\\boxed{1} then </think> The answer is $7$.", True, None),
    ("\\boxed{1} then </think> The answer is $7$.", False, "1"),
    ("</think>Final Answer: \\(\\sqrt{2}\\)", True, None),
    ("</think>so the answer is 5 + 3 = 8.", True, None),
    ("</think>\\boxed{\\begin{pmatrix} 1 \\\\ {2} \\end{pmatrix}}", True, "\\begin{pmatrix} 1 \\\\ {2} \\end{pmatrix}"),
    ("</think>We get \\boxed 5$.", True, "5"),
    ("</think>No idea.", True, None),
    ("</think>So \\boxed{104.}", True, "104"),
    ("</think>\\boxed{3}\n\nThen again, maybe \\boxed{4}", True, "4"),
    ("</think>The values are \\boxed{3} and \\boxed{-3}.", True, "3, -3"),
    ("</think>\\boxed{5} is it. The answer is within \\boxed{}.", True, "5"),
    ("</think>1. Write 4 steps.\n2. The answer is within \\boxed{}.", True, None),
    ("</think>The answer is \\boxed{12", True, None),
])
def test_extract_answer(response: str, thinking: bool, expected: str | None) -> None:
    assert extract_answer(response, thinking) == expected


def test_unclosed_thinking_is_searched_whole() -> None:
    assert final_region("I think it is 4", thinking=True) == "I think it is 4"
    assert stated_answer("\\boxed{1}\nand later \\boxed{2}") == "2"


def test_response_skips_text_from_outside() -> None:
    spans = [Span("a", "generated", "x=\\boxed{3} "), Span("h", "injected", "\\boxed{9} "),
             Span("a", "generated", "ok")]
    assert response_text(spans) == "ok"
    assert response_text(spans[:1]) == "x=\\boxed{3} "


@pytest.mark.parametrize("response, gold, correct, status", [
    ("</think>\\boxed{0.5}", "\\frac12", True, "ok"),
    ("</think>\\boxed{3}", "2", False, "ok"),
    ("</think>I give up", "2", False, "no_answer"),
    # two boxes are not a set that contains the gold answer
    ("</think>The numbers are \\boxed{18} and \\boxed{7}.", "7", False, "ok"),
    ("</think>The values are \\boxed{\\dfrac{3}{4}} and \\boxed{-\\dfrac{3}{4}}.", "\\frac{3}{4}, -\\frac{3}{4}",
     True, "ok"),
    # the last box wins, wherever the earlier ones were
    ("</think>First \\boxed{7}.\n\nNo: \\boxed{8}.", "7", False, "ok"),
    # cut off by the token limit with no box: never credited by a stray expression
    ("So 4 \\times 11 = 44", "44", False, "no_answer"),
    ("Wait, maybe 4 \\times 11 = 44 and then</think>\n\nSo it is $44$.", "44", False, "no_answer"),
    ("</think>1. Count the 4 sides.\n2. The answer is within \\boxed{}.", "4", False, "no_answer"),
    ("</think>the coefficient of the third term is $3$", "3", False, "no_answer"),
])
def test_grading_rules(response: str, gold: str, correct: bool, status: str) -> None:
    graded = grade(response, gold)
    assert (graded.correct, graded.status) == (correct, status)


async def test_agreement_with_recorded_labels(shared: Path) -> None:
    """Every recorded label that rests on a stated final answer is reproduced; the only others are records
    labelled correct although they state none (cut off: Math-Verify's fallback credited a stray number)."""
    async with AnswerChecker(workers=2, timeout_s=30) as checker:
        columns = await agreement(shared, checker)
    totals = {c.label: c.total for c in columns}
    assert totals == {"solo correct": 400, "distraction recovered": 524, "distraction followed_distractor": 524}
    for column in columns:
        assert column.other == [], str(column)
        assert column.agree + len(column.fallback) == column.total
    assert [len(c.fallback) for c in columns] == [4, 0, 1]


def test_held_out_gold_solutions(shared: Path) -> None:
    """Reference solutions the project never saw (they end in a box) grade correct against their own gold
    answer and incorrect against another problem's different one."""
    rows = [r for name in ("math500", "minerva") for r in load(shared / f"data/benchmarks/{name}.jsonl")]
    rows = [r for r in rows if "\\boxed" in (r.get("solution") or "")][::7]
    assert len(rows) > 100
    assert all(grade(r["solution"], r["answer"], thinking=False).correct for r in rows)
    pairs = zip(rows, rows[1:] + rows[:1], strict=True)
    others = [(r, o) for r, o in pairs if not answers_equal(r["answer"], o["answer"])]
    assert not any(grade(r["solution"], o["answer"], thinking=False).correct for r, o in others)


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
