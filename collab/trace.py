"""The one shared reasoning trace of an episode: a prompt and an ordered list of spans.

Every engine sees the trace as its own token ids, append-only: a generated span keeps its
author's exact output ids; a span is tokenized for another vocabulary once, on its own, and the
result is cached on the span. Earlier spans are never re-tokenized.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from collab.engines.base import THINK_CLOSE, Tokenizer

SpanKind = Literal["generated", "injected", "seeded"]
Align = Literal["sentence", "paragraph", "token"]

_SENTENCE_END = re.compile(r"(?:[.!?]|\.\)|\$\.)(?=\s)|\n[ \t]*\n")
"""Punctuation before whitespace, or a blank line; a single line break is not a sentence end."""
_PARAGRAPH_END = re.compile(r"\n\s*\n")
_DISPLAY_MATH = re.compile(r"\\\[.*?(?:\\\]|$)|\$\$.*?(?:\$\$|$)|\\begin\{(\w+\*?)\}.*?(?:\\end\{\1\}|$)",
                           re.DOTALL)
"""Display math (``\\[ ... \\]``, ``$$ ... $$``, environments), to the end of the text when never closed."""


@dataclass
class Span:
    """A piece of the trace by one author: generated, injected or seeded text and its ids per tokenizer."""

    author: str
    kind: SpanKind
    text: str
    ids: dict[str, list[int]] = field(default_factory=dict)
    """Token ids per tokenizer key; the author's own ids when the author generated the span."""
    meta: dict[str, Any] = field(default_factory=dict)

    def ids_for(self, tokenizer: Tokenizer) -> list[int]:
        """The span's ids in ``tokenizer``'s vocabulary (tokenized once, then cached)."""
        ids = self.ids.get(tokenizer.key)
        if ids is None:
            ids = self.ids[tokenizer.key] = tokenizer.encode(self.text)
        return ids


@dataclass
class _View:
    ids: list[int]
    spans: int = 0


class Trace:
    """A problem prompt followed by spans; token views per tokenizer grow append-only."""

    def __init__(self, user_prompt: str, system: str | None = None) -> None:
        self.user_prompt = user_prompt
        self.system = system
        self.spans: list[Span] = []
        self._views: dict[str, _View] = {}

    def append(self, span: Span) -> Span:
        """Add a span at the end."""
        self.spans.append(span)
        return span

    def input_ids(self, tokenizer: Tokenizer) -> list[int]:
        """The whole trace in ``tokenizer``'s ids: prompt, thinking opener, then every span.

        The returned list is the view itself; callers copy it if they keep it across appends.
        """
        view = self._views.get(tokenizer.key)
        if view is None:
            view = self._views[tokenizer.key] = _View(tokenizer.render_prompt(self.user_prompt, self.system))
        for span in self.spans[view.spans :]:
            view.ids.extend(span.ids_for(tokenizer))
        view.spans = len(self.spans)
        return view.ids

    def prompt_length(self, tokenizer: Tokenizer) -> int:
        """Tokens of the prompt in ``tokenizer``'s chat format."""
        return len(tokenizer.render_prompt(self.user_prompt, self.system))

    @property
    def last_writer(self) -> str | None:
        """The author of the last generated span (None before any)."""
        return next((s.author for s in reversed(self.spans) if s.kind == "generated"), None)

    @property
    def text(self) -> str:
        """The trace after the prompt: thinking and answer as one string."""
        return "".join(span.text for span in self.spans)


def thinking_part(text: str) -> str:
    """What a written text thinks: all before the first thinking close tag (all of it when there is none)."""
    return text.split(THINK_CLOSE, 1)[0]


def boundary_before(text: str, position: int, align: Align) -> int:
    """The last ``align`` boundary at or before ``position`` in ``text`` (0 when none)."""
    if align == "token" or position >= len(text):
        return min(position, len(text))
    pattern = _SENTENCE_END if align == "sentence" else _PARAGRAPH_END
    math = [(m.start(), m.end()) for m in _DISPLAY_MATH.finditer(text)]
    best = 0
    for match in pattern.finditer(text, 0, position + 1):
        end = match.end()
        if end <= position and not any(start < end < stop for start, stop in math):
            best = end
    return best


def cut(text: str, fraction: float, tokenizer: Tokenizer, align: Align = "sentence",
        ids: list[int] | None = None) -> tuple[str, list[int]]:
    """The first ``fraction`` of ``text`` counted in ``tokenizer``'s tokens, moved back to a boundary.

    Returns the kept text and its token ids (a prefix of ``ids`` when given, else of the encoding).
    """
    ids = tokenizer.encode(text) if ids is None else ids
    target = round(fraction * len(ids))
    if target <= 0:
        return "", []
    if target >= len(ids):
        return tokenizer.decode(ids), list(ids)
    position = len(tokenizer.decode(ids[:target]))
    full = tokenizer.decode(ids)
    end = boundary_before(full, position, align)
    if end:  # the whitespace after a sentence end may share its token (".\n"): keep it with the sentence
        end += len(re.match(r"(?:[ \t]*\n)?", full[end:]).group())  # type: ignore[union-attr]
    return token_prefix(ids[:target], tokenizer, end)


def token_prefix(ids: list[int], tokenizer: Tokenizer, end: int) -> tuple[str, list[int]]:
    """The longest prefix of ``ids`` whose text stays within the first ``end`` characters."""
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(tokenizer.decode(ids[:mid])) <= end:
            lo = mid
        else:
            hi = mid - 1
    return tokenizer.decode(ids[:lo]), list(ids[:lo])


def ends_sentence(text: str) -> bool:
    """Whether a turn ending with ``text`` may hand off there: at a sentence end, or at a line end
    (a handoff may follow a line break; a cut never stops at a single one)."""
    return bool(text) and (text.endswith("\n") or boundary_before(text + " ", len(text), "sentence") == len(text))
