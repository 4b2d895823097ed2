"""The local engine's loading path: missing files, an unreachable hub, progress bars, threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collab.engines.base import EngineError
from collab.engines.local import loading
from collab.engines.local.loading import check_hub, no_progress_bars, pick_threads
from collab.engines.tokenizers import locate


@pytest.mark.parametrize("name", ["/nonexistent/nope.gguf", "./nope.gguf", "../nope/model", "~/nope-model.gguf",
                                  "a/b/c/d", "nope.gguf"])
def test_missing_paths_say_no_such_file(name: str) -> None:
    with pytest.raises(EngineError, match="no such file"):
        locate(name)


def test_existing_paths_and_hub_ids(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"")
    assert locate(str(tmp_path / "m.gguf")) == (str(tmp_path), "m.gguf")
    assert locate(str(tmp_path)) == (str(tmp_path), None)
    assert locate("owner/repo") == ("owner/repo", None)
    assert locate("owner/repo/file.gguf") == ("owner/repo", "file.gguf")


def test_unreachable_hub_fails_once_and_names_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    class Offline:
        def model_info(self, repo: str, timeout: float) -> None:
            calls.append(timeout)
            raise ConnectionError("Name or service not known")

    monkeypatch.setattr("huggingface_hub.HfApi", Offline)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name: None)
    with pytest.raises(EngineError, match=r"cannot fetch owner/model from the hub \(huggingface.co\)"):
        check_hub("owner/model", None)
    assert calls == [loading.HUB_TIMEOUT_S]


def test_cached_models_need_no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name: "/cache/config.json")
    monkeypatch.setattr("huggingface_hub.HfApi", None)  # any use would fail
    check_hub("owner/model", None)


def test_loading_shows_no_progress_bars(capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import modeling_gguf_pytorch_utils as gguf_loading
    from transformers.utils import logging

    with no_progress_bars():
        assert not logging.is_progress_bar_enabled()
        for _ in gguf_loading.tqdm(range(3), desc="Converting"):
            pass
        for _ in logging.tqdm(range(3), desc="Loading weights"):
            pass
    assert "Converting" not in capsys.readouterr().err
    assert logging.is_progress_bar_enabled()


def test_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_threads(3) == (3, "set by threads")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 0.0, 0.0))
    assert pick_threads(None)[0] == 1  # a busy machine: one thread
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    threads, why = pick_threads(None)
    assert threads >= 1 and why.startswith("idle cores")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert pick_threads(None)[1] == "set by OMP_NUM_THREADS"
