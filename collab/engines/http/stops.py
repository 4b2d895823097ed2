"""Stop strings beyond what a server accepts: send the first ones, apply the rest to the answer here.

vLLM refuses more than 4 stop strings by default (HTTP 400, ``VLLM_MAX_STOP_STRINGS``). An engine
with ``max_stop_strings`` sends that many and cuts the completion after the first token whose text
completes one of the others, exactly as the server would have stopped there (the stop string kept,
``finish_reason == "stop"``, ``matched`` the string). The tokens after the cut are wasted, never seen.
"""

from __future__ import annotations

from collab.engines.base import Completion, Tokenizer


def split(stops: list[str], cap: int | None) -> tuple[list[str], list[str]]:
    """``(sent to the server, applied here)``: the first ``cap`` stops go to the server."""
    if cap is None or len(stops) <= cap:
        return stops, []
    return stops[:cap], stops[cap:]


def apply(completion: Completion, stops: list[str], tokenizer: Tokenizer) -> Completion:
    """``completion`` cut after the first token that completes one of ``stops`` (unchanged if none does)."""
    ids = completion.token_ids

    def first_stop(k: int) -> str | None:
        text = tokenizer.decode(ids[:k])
        found = [(text.find(s) + len(s), s) for s in stops if s in text]
        return min(found)[1] if found else None

    if first_stop(len(ids)) is None:
        return completion
    lo, hi = 0, len(ids)  # no stop in ids[:lo], a stop in ids[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if first_stop(mid) is not None else (mid, hi)
    completion.token_ids = ids[:hi]
    if completion.logprobs is not None:
        completion.logprobs = completion.logprobs[:hi]
    completion.text = tokenizer.decode(ids[:hi])
    completion.finish_reason = "stop"
    completion.matched = first_stop(hi)
    return completion
