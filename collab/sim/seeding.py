"""Prefixes of pool trajectories: cut at a fraction of their thinking, for seed turns and pool injections;
and whether such a prefix already states the answer."""

from __future__ import annotations

import re

from collab.data.pools import Trajectory
from collab.engines.base import Tokenizer
from collab.judge.answers import AnswerChecker, stated_answer
from collab.scenario.schema import SeedConfig
from collab.trace import cut, token_prefix

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def seed_prefix(trajectory: Trajectory, seed: SeedConfig, tokenizer: Tokenizer) -> tuple[str, list[int]]:
    """The first ``seed.fraction`` of the trajectory's thinking in ``tokenizer``'s tokens, moved back to
    ``seed.align``; with ``keep_first_paragraph`` never shorter than the first paragraph."""
    thinking = trajectory.thinking
    ids = tokenizer.encode(thinking)
    text, kept = cut(thinking, seed.fraction, tokenizer, seed.align, ids)
    if seed.keep_first_paragraph:
        paragraph = _PARAGRAPH_BREAK.search(thinking)
        if paragraph is not None and len(text) < paragraph.end():
            text, kept = token_prefix(ids, tokenizer, paragraph.end())
    return text, kept


async def states_answer(text: str, gold: str, checker: AnswerChecker | None) -> bool | None:
    """Whether ``text`` already states the gold answer, by the grader's rule: its last boxed answer is
    equivalent to ``gold`` (checked in the judge's worker pool; None when unjudged or no pool)."""
    answer = stated_answer(text)
    if answer is None:
        return False
    return None if checker is None else await checker.equal(gold, answer)
