"""An engine for each kind of a scenario's ``engines:`` entries."""

from __future__ import annotations

from typing import Any

from collab.engines.base import Engine


def build_engine(name: str, config: Any) -> Engine:
    """An engine for one scenario ``engines:`` entry (modules are imported only when used)."""
    options = config.model_dump(exclude={"kind"})
    if config.kind == "scripted":
        from collab.engines.scripted import ScriptedEngine

        return ScriptedEngine(name, **options)
    if config.kind == "local":
        from collab.engines.local.engine import LocalEngine

        return LocalEngine(name, **options)
    from collab.engines.http.client import HTTPSettings

    http = HTTPSettings.pick(options)
    if config.kind == "sglang":
        from collab.engines.http.sglang import SGLangEngine

        return SGLangEngine(name, **options, http=http)
    if config.kind == "openai":
        from collab.engines.http.openai import OpenAIEngine

        return OpenAIEngine(name, **options, http=http)
    if config.kind == "llamacpp":
        from collab.engines.http.llamacpp import LlamaCppEngine

        return LlamaCppEngine(name, **options, http=http)
    raise ValueError(f"unknown engine kind {config.kind!r}")
