"""Inference engines behind one protocol, built from a scenario's ``engines:`` entries."""

from __future__ import annotations

from typing import Any

from collab.engines.base import Completion, Engine, EngineError, GenerateRequest, RequestContext, Tokenizer

__all__ = ["Completion", "Engine", "EngineError", "GenerateRequest", "RequestContext", "Tokenizer", "build_engine"]


def build_engine(name: str, config: Any) -> Engine:
    """An engine for one scenario ``engines:`` entry (modules are imported only when used)."""
    options = config.model_dump(exclude={"kind"})
    if config.kind == "scripted":
        from collab.engines.scripted import ScriptedEngine

        return ScriptedEngine(name, **options)
    if config.kind == "local":
        from collab.engines.local import LocalEngine

        return LocalEngine(name, **options)
    if config.kind == "sglang":
        from collab.engines.sglang import SGLangEngine

        return SGLangEngine(name, **options)
    if config.kind == "openai":
        from collab.engines.openai import OpenAIEngine

        return OpenAIEngine(name, **options)
    raise ValueError(f"unknown engine kind {config.kind!r}")
