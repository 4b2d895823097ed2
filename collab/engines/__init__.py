"""Inference engines behind one protocol."""

from collab.engines.base import (
    Completion,
    Engine,
    EngineError,
    GenerateRequest,
    RequestContext,
    Tokenizer,
)
from collab.engines.build import build_engine

__all__ = ["Completion", "Engine", "EngineError", "GenerateRequest", "RequestContext", "Tokenizer", "build_engine"]
