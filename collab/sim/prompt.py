"""The user turn of an episode: the problem in the scenario's template, the instruction never twice."""

from __future__ import annotations

from collections.abc import Iterable

from collab.engines.base import Tokenizer


def user_turn(template: str, problem: str, tokenizers: Iterable[Tokenizer], system: str | None = None) -> str:
    """``template`` with ``{problem}`` filled in; the template's own words are dropped (the bare problem
    is sent) when a reader's chat template already carries them, as Qwen2.5-Math's system turn does."""
    instruction = template.replace("{problem}", "").strip()
    if instruction and any(instruction in tokenizer.decode(tokenizer.render_prompt("", system))
                           for tokenizer in tokenizers):
        return problem
    return template.replace("{problem}", problem)
