"""The event loop a run goes on, and its garbage collector's thresholds."""

from __future__ import annotations

import gc

from collab.sim.loop import GC_THRESHOLD, run_loop


def test_a_run_collects_garbage_less_often_and_restores_the_thresholds_after() -> None:
    before = gc.get_threshold()

    async def main() -> tuple[int, int, int]:
        return gc.get_threshold()

    assert run_loop(main()) == GC_THRESHOLD
    assert gc.get_threshold() == before
