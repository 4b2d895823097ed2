"""A deterministic engine: scripted text per agent and turn, for tests and ``--dry-run``.

It behaves like a model over a byte tokenizer: it honours ``max_new_tokens``, stop strings and
stop token ids, and continues a turn from where the trace of that turn stands (an ``align`` or
``chunk`` request after a cut goes on right after the last kept token). Asked for log-probabilities,
it reports a fixed uncertainty profile: the bytes of ``uncertain`` words are uncertain (entropy
ln 8), every other byte confident.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Callable
from typing import Any

from collab.engines.base import THINK_CLOSE, Completion, EngineLifecycle, FinishType, GenerateRequest
from collab.engines.logprobs import TokenLogprob
from collab.engines.tokenizers import ByteTokenizer

Responder = Callable[[GenerateRequest, str], str]
"""``(request, trace_text) -> text`` for one turn: an alternative to fixed scripts."""

CONFIDENT = TokenLogprob(math.log(0.9), (math.log(0.9), math.log(0.05), math.log(0.05)))
"""A scripted confident position: entropy 0.39 nats."""
UNCERTAIN = TokenLogprob(math.log(1 / 8), (math.log(1 / 8),) * 8)
"""A scripted uncertain position: eight equally likely tokens, entropy ln 8 = 2.08 nats."""
CONTINUING = ("align", "chunk")
"""Request purposes that continue the turn in progress (any other starts a new text)."""

_WORDS = ("we", "check", "the", "sum", "terms", "next", "so", "value", "factor", "then", "both", "sides",
          "compute", "this", "gives", "again", "carefully", "product", "equation", "result")


def default_text(key: str) -> str:
    """Plausible-looking reasoning derived from ``key``; about one turn in three ends with an answer.

    A turn whose script runs out without an answer yields (finish ``stop``, nothing matched); one
    that has answered ends with EOS.
    """
    digest = hashlib.sha256(key.encode()).digest()
    sentences = []
    for i in range(2 + digest[0] % 4):
        words = [_WORDS[digest[(i * 5 + j) % 32] % len(_WORDS)] for j in range(4 + digest[i + 1] % 5)]
        sentences.append(" ".join(words).capitalize() + ".")
    text = " ".join(sentences) + "\n"
    if digest[31] % 3 == 0:
        text += f"{THINK_CLOSE}\n\nThe answer is $\\boxed{{{digest[30] % 20}}}$."
    return text


class ScriptedEngine(EngineLifecycle):
    """Text per agent from ``script`` (a string, or a list with one string per turn of that agent)."""

    def __init__(self, name: str, script: dict[str, str | list[str]] | None = None, default: str | None = None,
                 thinking: bool = True, latency_s: float = 0.0, responder: Responder | None = None,
                 uncertain: list[str] | None = None) -> None:
        self.name = name
        self.tokenizer = ByteTokenizer(thinking=thinking)
        self.script = script or {}
        self.default = default
        self.latency_s = latency_s
        self.responder = responder
        self.uncertain = list(uncertain or [])
        self._current: dict[str, tuple[int, str, bool, int]] = {}
        """Per episode: its turn in progress, the turn's text, whether it answers, and the prompt length
        it started from."""
        self._turns_of: dict[tuple[str, str], list[int]] = {}

    @property
    def replicas(self) -> int:
        """One: the script runs in-process."""
        return 1

    async def open(self) -> dict[str, Any]:
        """Nothing to load: describes the script."""
        return {"kind": "scripted", "agents": sorted(self.script)}

    def counters(self) -> dict[str, Any]:
        """A script counts nothing."""
        return {}

    def _turn_text(self, request: GenerateRequest) -> str:
        ctx = request.context
        if self.responder is not None:
            return self.responder(request, self.tokenizer.decode(request.input_ids))
        turns = self._turns_of.setdefault((ctx.episode_id, ctx.agent), [])
        if ctx.turn not in turns:
            turns.append(ctx.turn)
        nth = turns.index(ctx.turn)
        entry = self.script.get(ctx.agent, self.default)
        if isinstance(entry, list):
            return entry[min(nth, len(entry) - 1)] if entry else ""
        if entry is not None:
            return entry
        return default_text(f"{ctx.episode_id}/{ctx.agent}/{ctx.turn}/{request.seed}")

    async def generate(self, request: GenerateRequest) -> Completion:
        """The script's next text for this agent and turn, cut like a model's output."""
        started = time.perf_counter()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        ctx = request.context
        current = self._current.get(ctx.episode_id)
        if ctx.purpose not in CONTINUING or current is None or current[0] != ctx.turn:
            text = self._turn_text(request)
            answers = self.tokenizer.think_open is None or THINK_CLOSE in text
            current = self._current[ctx.episode_id] = (ctx.turn, text, answers, len(request.input_ids))
        _, text, answers, start = current
        whole = self.tokenizer.encode(text)
        offset = max(0, len(request.input_ids) - start)
        ids = whole[offset:]
        out: list[int] = []
        finish: FinishType = "length"
        matched: int | str | None = None
        produced = ""
        for position, token in enumerate(ids):
            if len(out) >= request.max_new_tokens:
                break
            out.append(token)
            if token in request.stop_token_ids:
                finish, matched = "stop", token
                break
            if request.stop and (position + 1 == len(ids) or (ids[position + 1] & 0xC0) != 0x80):
                produced = self.tokenizer.decode(out)
                hit = next((s for s in request.stop if s in produced), None)
                if hit is not None:
                    finish, matched = "stop", hit
                    break
        else:
            if len(out) < request.max_new_tokens:
                finish = "stop"  # the turn's script is used up: hand off, or end after an answer
                if answers:
                    out.append(ByteTokenizer.EOS)
                    matched = ByteTokenizer.EOS
        logprobs = None if request.logprobs is None else self._profile(text, offset, len(out))
        return Completion(
            text=self.tokenizer.decode(out), token_ids=out, finish_reason=finish, matched=matched,
            prompt_tokens=len(request.input_ids), cached_tokens=0, latency_s=time.perf_counter() - started,
            logprobs=logprobs,
        )

    def _profile(self, text: str, offset: int, count: int) -> list[TokenLogprob]:
        """The scripted log-probabilities of ``count`` byte tokens of ``text`` from byte ``offset``."""
        data = text.encode()
        uncertain = bytearray(len(data) + count)
        for word in self.uncertain:
            for found in re.finditer(re.escape(word.encode()), data):
                uncertain[found.start():found.end()] = b"\x01" * (found.end() - found.start())
        return [UNCERTAIN if uncertain[offset + i] else CONFIDENT for i in range(count)]

    async def aclose(self) -> None:
        """Forget the episodes' progress through their scripts."""
        self._current.clear()
        self._turns_of.clear()
