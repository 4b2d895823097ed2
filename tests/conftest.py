"""Shared fixtures: paths to the real assets, skipping with a reason when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("COLLAB_SHARED", ROOT.parent / "shared"))
MODEL = Path(os.environ.get("COLLAB_TEST_MODEL", ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
REQUIRE_ASSETS = os.environ.get("COLLAB_REQUIRE_ASSETS") == "1"
"""CI sets it: a missing asset fails the tests that need it instead of skipping them."""


def missing(reason: str) -> None:
    if REQUIRE_ASSETS:
        pytest.fail(f"{reason} (COLLAB_REQUIRE_ASSETS=1: every test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "data").is_dir():
        missing(f"shared assets not found at {SHARED} (set COLLAB_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def smol_gguf() -> Path:
    if not MODEL.exists():
        missing(f"test model not found at {MODEL}: run python tools/fetch_test_model.py")
    return MODEL


@pytest.fixture(scope="session")
def qwen_path(shared: Path) -> str:
    """The Qwen2.5 tokenizer folder (real vocabulary and chat template)."""
    return str(shared / "tokenizers" / "qwen2.5")


@pytest.fixture(scope="session")
def qwen(qwen_path: str):
    from collab.engines.tokenizers import load_tokenizer

    return load_tokenizer(qwen_path)
