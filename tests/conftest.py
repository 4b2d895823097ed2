"""Shared fixtures: paths to the real assets, skipping with a reason when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("COLLAB_SHARED", ROOT.parent / "shared"))
MODEL = Path(os.environ.get("COLLAB_TEST_MODEL", ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared assets not found at {SHARED} (set COLLAB_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def smol_gguf() -> Path:
    if not MODEL.exists():
        pytest.skip(f"test model not found at {MODEL}: run python tools/fetch_test_model.py")
    return MODEL


@pytest.fixture(scope="session")
def qwen_path(shared: Path) -> str:
    """The Qwen2.5 tokenizer folder (real vocabulary and chat template)."""
    return str(shared / "tokenizers" / "qwen2.5")


@pytest.fixture(scope="session")
def qwen(qwen_path: str):
    from collab.engines.tokenizers import load_tokenizer

    return load_tokenizer(qwen_path)
