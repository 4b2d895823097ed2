"""Prefixes of pool trajectories: cut at a fraction of their thinking, for seed turns and pool injections."""

from __future__ import annotations

import logging
import re

from collab.data.pools import Trajectory
from collab.engines.base import Tokenizer
from collab.judge.answers import answers_equal, stated_answer
from collab.scenario.schema import SeedConfig
from collab.trace import cut, token_prefix

logging.getLogger("math_verify").setLevel(logging.ERROR)  # its signal timeouts are off; answers here are short
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_RESULT = re.compile(r"(?:=|\bis\b|\bequals\b)\s*\$*\s*(\\[dt]?frac\{[^{}]*\}\{[^{}]*\}|[^\s$,;:]+)")
_LONGEST_ANSWER = 80
"""Longer "answers" are prose a regex caught, not answers; they are never compared."""


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


def plain(answer: str) -> str:
    """An answer as plain text for a cheap comparison: ``\\frac{a}{b}`` as ``a/b``; no spacing, ``$``, delimiters."""
    text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", answer)
    text = re.sub(r"\\left|\\right|\\[!,;]|\\[()\[\]]|\$|\s", "", text)
    return text.rstrip(".").strip("{}")


def states_answer(text: str, gold: str) -> bool:
    """Whether ``text`` already has the gold answer: it states it (its last boxed answer, else its last
    "the answer is ...", is equivalent to ``gold`` by Math-Verify) or derives it (``gold`` is, as plain
    text, the right-hand side of an ``=``, "is" or "equals" in it)."""
    answer = stated_answer(text)
    if answer is not None and len(answer) <= _LONGEST_ANSWER and answers_equal(gold, answer):
        return True
    target = plain(gold)
    return bool(target) and any(plain(m.group(1)) == target for m in _RESULT.finditer(text))
