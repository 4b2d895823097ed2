"""Final answers: extraction, and equivalence with Math-Verify in worker processes with a hard timeout.

The rules a verdict rests on:

- the final region is what follows the last ``</think>`` when the model thinks, else the whole output
  (a thinking that was never closed is searched whole, as the Off-Trajectory Reasoning harness did);
- the final answer is the last non-empty ``\\boxed{}`` of that region; two boxes are not a set;
- a response without one (cut off, or it never boxed an answer) is ``no_answer``: incorrect, whatever
  numbers it mentions. Nothing else is extracted, so no fallback can credit a ramble;
- that answer is equivalent to the gold answer when Math-Verify says so.

The same rules say whether a response followed an injection (its answer equals the injected
problem's gold) and whether a text already states an answer (:func:`stated_answer`).

Math-Verify's own timeouts rely on ``signal.alarm`` (main thread only) and some inputs hang in code
no signal interrupts, so checks run in worker processes with Math-Verify's timeouts off: a check
that overruns ``timeout_s`` is recorded as unjudged and its worker is killed and replaced.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

from collab.engines.base import THINK_CLOSE
from collab.judge.pool import WorkerCrashed, WorkerPool, WorkerTimeout
from collab.trace import Span

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


@dataclass(frozen=True, slots=True)
class Grade:
    """The verdict on one final answer. ``correct`` is ``None`` exactly when ``status`` is unjudged;
    ``no_answer`` (no final answer at all) is incorrect."""

    correct: bool | None
    answer: str | None
    """The final answer as extracted from the output (what was compared), if any."""
    status: Literal["ok", "no_answer", "unjudged"] = "ok"
    reason: str | None = None


def response_text(spans: Sequence[Span]) -> str:
    """The episode's response: what its writers wrote after the last injected or seeded span.

    As in the Off-Trajectory Reasoning harness, text placed into the trace from outside (a
    distractor, a guide's prefix) is never where the final answer is looked for.
    """
    start = max((i + 1 for i, span in enumerate(spans) if span.kind != "generated"), default=0)
    return "".join(span.text for span in spans[start:])


def final_region(response: str, thinking: bool = True) -> str:
    """The part of an output that holds its final answer."""
    if thinking and THINK_CLOSE in response:
        return response.rsplit(THINK_CLOSE, 1)[1]
    return response


def _box_content(text: str, match: re.Match[str]) -> str | None:
    start = match.end()
    if start >= len(text):
        return None
    if text[start] != "{":
        word = re.match(r"[^\s$.,{}]+", text[start:])
        return word.group() if word and match.group().endswith(" ") else None
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i].strip().rstrip(".").rstrip()  # "\\boxed{104.}" is 104
    return None  # cut off inside the box


def _boxes(text: str) -> list[tuple[int, str]]:
    found = []
    for match in _BOXED.finditer(text):
        content = _box_content(text, match)
        if content:
            found.append((text.count("\n", 0, match.start()), content))
    return found


def last_boxed(text: str) -> str | None:
    """The final answer ``text`` boxes: its last non-empty box, together with the boxes before it on the
    same line ("the values are \\boxed{3} and \\boxed{-3}" is the list ``3, -3``)."""
    boxes = _boxes(text)
    if not boxes:
        return None
    line = boxes[-1][0]
    return ", ".join(content for at, content in boxes if at == line)


def stated_answer(text: str) -> str | None:
    """The answer ``text`` commits to, by the grader's rule: its last non-empty boxed answer."""
    return last_boxed(text)


def extract_answer(response: str, thinking: bool = True) -> str | None:
    """The final answer a response states: the last boxed answer of its final region."""
    return stated_answer(final_region(response, thinking))


def _wrap(answer: str) -> str:
    return answer if "\\boxed" in answer else f"\\boxed{{{answer}}}"


@lru_cache(maxsize=4096)
def _parse(answer: str) -> list[Any]:
    from math_verify import parse

    return parse(_wrap(answer), parsing_timeout=None)


def grade(response: str, gold: str, thinking: bool = True) -> Grade:
    """Grade in this process (main thread; no timeout): what the workers run, and the baseline."""
    from math_verify import verify

    gold_parsed = _parse(gold)
    if not gold_parsed:
        return Grade(None, None, "unjudged", f"gold answer {gold!r} could not be parsed")
    answer = extract_answer(response, thinking)
    if answer is None:
        return Grade(False, None, "no_answer", "no boxed final answer")
    predicted = _parse(answer)
    if not predicted:
        return Grade(False, answer, "ok", "the boxed answer could not be parsed")
    return Grade(bool(verify(gold_parsed, predicted, timeout_seconds=None)), answer)


def answers_equal(a: str, b: str) -> bool:
    """Whether two extracted answers are equivalent (``a`` taken as the reference), in this process."""
    return grade(_wrap(b), a, thinking=False).correct is True


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """A worker's job: one check, as a JSON-able dict."""
    if task["op"] == "grade":
        return asdict(grade(task["response"], task["gold"], task["thinking"]))
    return {"equal": answers_equal(task["a"], task["b"])}


class AnswerChecker:
    """Math-Verify checks in ``workers`` processes, each check bounded by ``timeout_s``.

    Use as ``async with AnswerChecker(workers=2, timeout_s=10) as checker: await checker.check(...)``.
    A check that times out or whose worker dies is unjudged (with the reason); never raises for that.
    Judged results are remembered (``cache`` entries), so repeated checks cost nothing.
    """

    def __init__(self, workers: int = 2, timeout_s: float = 10.0, cache: int = 4096) -> None:
        self.pool = WorkerPool("collab.judge.worker", workers=workers, timeout_s=timeout_s)
        self._cache: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        self._cache_size = cache

    async def __aenter__(self) -> AnswerChecker:
        await self.pool.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()

    async def _run(self, task: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        key = hashlib.blake2b(json.dumps(task, sort_keys=True).encode(), digest_size=16).digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key], None
        try:
            reply = await self.pool.run(task)
        except WorkerTimeout:
            return None, f"timeout: Math-Verify took over {self.pool.timeout_s:g} s"
        except WorkerCrashed as error:
            return None, f"crash: {error}"
        if "error" in reply:
            return None, f"error: {reply['error']}"
        self._cache[key] = reply
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return reply, None

    async def check(self, response: str, gold: str, *, thinking: bool = True) -> Grade:
        """Grade ``response``'s final answer against ``gold``."""
        reply, reason = await self._run({"op": "grade", "response": response, "gold": gold, "thinking": thinking})
        if reply is None:
            return Grade(None, extract_answer(response, thinking), "unjudged", reason)
        return Grade(**reply)

    async def equal(self, a: str, b: str) -> bool | None:
        """Whether answers ``a`` (the reference) and ``b`` are equivalent; ``None`` when unjudged."""
        reply, _ = await self._run({"op": "equal", "a": a, "b": b})
        return None if reply is None else bool(reply["equal"])
