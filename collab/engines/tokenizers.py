"""Tokenizers behind the :class:`~collab.engines.base.Tokenizer` protocol."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from collab.engines.base import THINK_CLOSE, EngineError

THINK_OPEN = "<think>\n"
PROMPTS_KEPT = 4096
"""Rendered prompts an :class:`HFTokenizer` keeps (then it starts over)."""


class HFTokenizer:
    """A transformers tokenizer with its chat template and thinking tags."""

    def __init__(self, hf: Any, *, key: str, thinking: bool | None = None) -> None:
        self.hf = hf
        self.key = key
        if thinking is None:
            thinking = "<think>" in hf.get_vocab()
        self.think_open = THINK_OPEN if thinking else None
        self.think_close = THINK_CLOSE if thinking else None
        eos = hf.eos_token_id
        ids = {eos} if isinstance(eos, int) else set(eos or [])
        for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<｜end▁of▁sentence｜>"):
            tid = hf.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != hf.unk_token_id and tid is not None and tid >= 0:
                ids.add(tid)
        self.eos_token_ids = sorted(i for i in ids if i is not None)
        self._prompts: dict[tuple[str, str | None], tuple[int, ...]] = {}

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``."""
        return self.hf.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def render_prompt(self, user: str, system: str | None = None) -> list[int]:
        """The chat-formatted user turn with the generation prompt (and the thinking opener); rendered once
        per prompt (the samples of a problem share theirs)."""
        ids = self._prompts.get((user, system))
        if ids is None:
            if len(self._prompts) >= PROMPTS_KEPT:
                self._prompts.clear()
            ids = self._prompts[user, system] = self._render(user, system)
        return list(ids)

    def _render(self, user: str, system: str | None) -> tuple[int, ...]:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        if self.hf.chat_template:
            text = self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = (system + "\n\n" if system else "") + user + "\n"
        if self.think_open and not text.rstrip().endswith("<think>"):
            text += self.think_open
        elif self.think_open and not text.endswith("\n"):
            text += "\n"
        return tuple(self.encode(text))


@lru_cache(maxsize=16)
def _load_hf(path: str, gguf_file: str | None) -> Any:
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    return AutoTokenizer.from_pretrained(path, **kwargs)


@lru_cache(maxsize=16)
def load_tokenizer(path: str, *, gguf_file: str | None = None, thinking: bool | None = None) -> HFTokenizer:
    """Load a tokenizer from a hub id, a local folder, or (with ``gguf_file``) a GGUF file's folder."""
    hf = _load_hf(path, gguf_file)
    digest = hashlib.sha1(repr(sorted(hf.get_vocab().items())[:2000]).encode()).hexdigest()[:8]
    return HFTokenizer(hf, key=f"{type(hf).__name__}:{len(hf)}:{digest}", thinking=thinking)


def looks_like_path(model: str) -> bool:
    """Whether ``model`` names a file or folder rather than a hub id (``owner/name``)."""
    return (model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()
            or model.count("/") > (2 if model.endswith(".gguf") else 1))


def locate(model: str) -> tuple[str, str | None]:
    """``(folder or hub id, GGUF file name)`` for a hub id, a local folder, or a ``.gguf`` file.

    A ``.gguf`` name that is not a path is read as ``owner/repo/file.gguf`` on the hub.
    """
    path = Path(model).expanduser()
    if looks_like_path(model):
        if not path.exists():
            raise EngineError(f"no such file or folder: {model}", retryable=False)
        return (str(path.parent), path.name) if path.is_file() else (str(path), None)
    if not model.endswith(".gguf"):
        return model, None
    parts = model.split("/", 2)
    if len(parts) < 3:
        raise EngineError(f"no such file: {model} (a hub GGUF is named owner/repo/file.gguf)", retryable=False)
    return "/".join(parts[:2]), parts[2]


def tokenizer_for(source: str, *, thinking: bool | None = None) -> HFTokenizer:
    """The tokenizer of a hub id, a local folder or a ``.gguf`` file (the forms a model is given in)."""
    path, gguf = locate(source)
    return load_tokenizer(path, gguf_file=gguf, thinking=thinking)


class ByteTokenizer:
    """UTF-8 bytes as token ids (0-255) plus a few specials: exact, dependency-free, for tests."""

    EOS = 256
    THINK_OPEN_ID = 257
    THINK_CLOSE_ID = 258

    def __init__(self, *, thinking: bool = True) -> None:
        self.key = "bytes"
        self.think_open = THINK_OPEN if thinking else None
        self.think_close = THINK_CLOSE if thinking else None
        self.eos_token_ids = [self.EOS]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``: its UTF-8 bytes."""
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` (special ids as their tags)."""
        if all(i < 256 for i in ids):
            return bytes(ids).decode("utf-8", errors="replace")
        specials = {self.EOS: "", self.THINK_OPEN_ID: "<think>", self.THINK_CLOSE_ID: THINK_CLOSE}
        out = bytearray()
        for i in ids:
            out += specials[i].encode() if i in specials else bytes([i])
        return out.decode("utf-8", errors="replace")

    def render_prompt(self, user: str, system: str | None = None) -> list[int]:
        """The user turn as bytes after a fixed header (and the thinking opener)."""
        text = (f"[system]\n{system}\n" if system else "") + f"[user]\n{user}\n[assistant]\n"
        return self.encode(text + (self.think_open or ""))
