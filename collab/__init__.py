"""collab: a multi-agent collaboration simulator for LLM reasoning on one shared trace.

The Python API, for notebooks and scripts::

    import collab

    run = collab.simulate("scenarios/relay.yaml", model="SmolLM2-135M-Instruct.Q4_1.gguf")
    collab.episodes_df(run).groupby("last_writer").correct.mean()

- :func:`simulate` / :func:`simulate_async` run a scenario (keyword arguments: the command line's
  options, or scenario overrides with ``__`` for dots) and return the :class:`Run`;
- :func:`load_run` reads a run folder: its scenario, manifest, summary and typed episodes;
- :func:`episodes_df`, :func:`spans_df`, :func:`verdicts_df` are pandas views of one or more runs
  (``pip install 'collab[pandas]'``).

Names are imported on first use, so ``import collab`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "simulate": "collab.api",
    "simulate_async": "collab.api",
    "load_run": "collab.log.run",
    "Run": "collab.log.run",
    "EpisodeRecord": "collab.log.store",
    "episodes_df": "collab.report.frames",
    "spans_df": "collab.report.frames",
    "verdicts_df": "collab.report.frames",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from collab.api import simulate as simulate
    from collab.api import simulate_async as simulate_async
    from collab.log.run import Run as Run
    from collab.log.run import load_run as load_run
    from collab.log.store import EpisodeRecord as EpisodeRecord
    from collab.report.frames import episodes_df as episodes_df
    from collab.report.frames import spans_df as spans_df
    from collab.report.frames import verdicts_df as verdicts_df


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'collab' has no attribute {name!r}")
