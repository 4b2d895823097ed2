"""A deterministic engine: scripted text per agent and turn, for tests and ``--dry-run``.

It behaves like a model over a byte tokenizer: it honours ``max_new_tokens``, stop strings and
stop token ids, and continues a turn where the previous request of that turn left off.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any

from collab.engines.base import THINK_CLOSE, Completion, EngineLifecycle, FinishType, GenerateRequest
from collab.engines.tokenizers import ByteTokenizer

Responder = Callable[[GenerateRequest, str], str]
"""``(request, trace_text) -> text`` for one turn: an alternative to fixed scripts."""

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
                 thinking: bool = True, latency_s: float = 0.0, responder: Responder | None = None) -> None:
        self.name = name
        self.tokenizer = ByteTokenizer(thinking=thinking)
        self.script = script or {}
        self.default = default
        self.latency_s = latency_s
        self.responder = responder
        self._pending: dict[tuple[str, int], tuple[str, bool]] = {}
        """Per (episode, turn): the rest of the turn's text, and whether the turn gives an answer."""
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
        key = (ctx.episode_id, ctx.turn)
        pending = self._pending.pop(key, None) if ctx.purpose != "turn" else None
        if pending is None:
            text = self._turn_text(request)
            answers = self.tokenizer.think_open is None or THINK_CLOSE in text
        else:
            text, answers = pending
        ids = self.tokenizer.encode(text)
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
        rest = ids[len(out):] if finish != "stop" or matched != ByteTokenizer.EOS else []
        if rest:
            self._pending[key] = (self.tokenizer.decode(rest), answers)
        return Completion(
            text=self.tokenizer.decode(out), token_ids=out, finish_reason=finish, matched=matched,
            prompt_tokens=len(request.input_ids), cached_tokens=0, latency_s=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        """Forget the episodes' progress through their scripts."""
        self._pending.clear()
        self._turns_of.clear()
