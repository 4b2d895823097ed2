"""The event loop a run goes on: uvloop's when it is installed (``collab[fast]``), else asyncio's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (None: asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop (Ctrl-C cancels it, as :func:`asyncio.run` does)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
