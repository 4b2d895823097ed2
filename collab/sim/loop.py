"""The event loop a run goes on (uvloop's when it is installed, ``collab[fast]``), and its garbage collector."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

GC_THRESHOLD = (50_000, 20, 20)
"""Allocations between collections of the youngest generation, and collections between older ones.
CPython's default (700, 10, 10) suits few objects; a run makes dozens per request and keeps thousands
of episodes in flight, and collecting that often cost about a third of the client's CPU."""


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (None: asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop (Ctrl-C cancels it, as :func:`asyncio.run` does), with
    the garbage collector at :data:`GC_THRESHOLD` meanwhile."""
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(main)
    finally:
        gc.set_threshold(*previous)
