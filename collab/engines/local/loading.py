"""Loading a local model quietly: the hub check, progress bars and threads.

A hub id that is not cached is checked with one short request, so an offline machine fails within
seconds instead of after the hub client's retries (a path that does not exist already fails in
:func:`collab.engines.tokenizers.locate` with "no such file"). Loading prints no progress
bars of its own (transformers' and the hub's would tear a live display). On CPU the engine uses as
many threads as there are idle cores: on a machine shared with other jobs, torch's default (every
core) can be an order of magnitude slower than one thread.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch

from collab.engines.base import EngineError

HUB_TIMEOUT_S = 10.0
"""The one request that checks a hub id when the model is not cached yet."""


def check_hub(repo: str, filename: str | None) -> None:
    """Fail fast when ``repo`` is neither cached nor reachable on the hub (one short request)."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, filename or "config.json"), str):
        return
    try:
        HfApi().model_info(repo, timeout=HUB_TIMEOUT_S)
    except Exception as error:
        raise EngineError(f"cannot fetch {repo} from the hub (huggingface.co): {error}", retryable=False) from error


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """Silence transformers' and the hub's progress bars while a model loads."""
    from transformers import modeling_gguf_pytorch_utils as gguf_loading
    from transformers.utils import logging

    was_on = logging.is_progress_bar_enabled()
    plain_tqdm = gguf_loading.tqdm  # GGUF conversion uses tqdm directly
    logging.disable_progress_bar()
    gguf_loading.tqdm = functools.partial(plain_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_loading.tqdm = plain_tqdm
        if was_on:
            logging.enable_progress_bar()


def pick_threads(requested: int | None) -> tuple[int, str]:
    """CPU threads for torch and why: ``requested``, else ``OMP_NUM_THREADS``, else the idle cores."""
    if requested:
        return requested, "set by threads"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "set by OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    idle = cores - round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else cores
    return max(1, min(idle, cores, torch.get_num_threads())), f"idle cores of {cores}"
