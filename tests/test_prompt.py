"""The user turn: the bare problem by default; a scenario's instruction, but never twice."""

from __future__ import annotations

from collab.engines.tokenizers import ByteTokenizer, load_tokenizer
from collab.scenario.schema import PromptConfig
from collab.sim.prompt import user_turn

ASK = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{}."


def test_bare_problem_by_default() -> None:
    assert user_turn(PromptConfig().template, "What is 2+2?", [ByteTokenizer()]) == "What is 2+2?"


def test_instruction_where_the_scenario_asks() -> None:
    assert user_turn(ASK, "What is 2+2?", [ByteTokenizer()]) == ASK.replace("{problem}", "What is 2+2?")


def test_never_twice_when_the_chat_template_carries_it(qwen_path: str) -> None:
    """Qwen2.5's chat template puts a system turn of its own; one that says the instruction already
    makes the scenario's words redundant."""
    tokenizer = load_tokenizer(qwen_path)
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    assert user_turn(ASK, "What is 2+2?", [tokenizer], system) == "What is 2+2?"
    assert user_turn(ASK, "What is 2+2?", [tokenizer]) == ASK.replace("{problem}", "What is 2+2?")
