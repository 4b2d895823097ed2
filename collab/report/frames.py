"""A run's episodes, spans and verdicts as pandas DataFrames (``pip install 'collab[pandas]'``).

One row per episode, per span or per verdict; every row carries its episode's context (run,
problem, benchmark, sample, stage, subsets, sweep point as one column per sweep key, correctness),
so a notebook can group by agent, sweep point, subset or benchmark directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collab.log.run import Run, load_run
from collab.log.store import EpisodeRecord

if TYPE_CHECKING:
    import pandas as pd

Runs = Run | str | Path | Iterable[Run | str | Path]


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as error:
        raise ImportError("DataFrame views need pandas: pip install 'collab[pandas]'") from error
    return pandas


def _runs(runs: Runs) -> list[Run]:
    if isinstance(runs, Run | str | Path):
        runs = [runs]
    return [run if isinstance(run, Run) else load_run(run) for run in runs]


def _context(run: Run, episode: EpisodeRecord) -> dict[str, Any]:
    start, end = episode.start, episode.end
    return {
        "run": run.name, "episode_id": episode.id, "problem_id": start.problem_id, "benchmark": start.source or None,
        "sample": start.sample, "stage": start.stage, "subsets": list(start.subsets), **start.point,
        "correct": end.correct if end is not None else None,
    }


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    pandas = _pandas()
    frame = pandas.DataFrame(rows)
    return frame if rows else pandas.DataFrame(columns=columns)


EPISODE_COLUMNS = ["run", "episode_id", "problem_id", "benchmark", "sample", "stage", "subsets", "correct",
                   "status", "answer", "gold", "end_reason", "turns", "tokens", "wall_s", "last_writer", "outcome"]


def episodes_df(runs: Runs) -> pd.DataFrame:
    """One row per episode (in-flight ones too, with ``status`` ``running``)."""
    rows = []
    for run in _runs(runs):
        for episode in run.episodes:
            end = episode.end
            outcome = next((v.verdict for v in episode.verdicts if v.span is None), None)
            rows.append({
                **_context(run, episode), "status": end.status if end else "running",
                "answer": end.answer if end else None, "gold": episode.start.gold,
                "end_reason": end.end_reason if end else None, "turns": len(episode.turns),
                "tokens": sum(span.tokens for span in episode.spans), "wall_s": end.wall_s if end else None,
                "last_writer": episode.last_writer, "outcome": outcome,
            })
    return _frame(rows, EPISODE_COLUMNS)


SPAN_COLUMNS = ["run", "episode_id", "problem_id", "benchmark", "sample", "stage", "subsets", "correct", "index",
                "turn", "agent", "kind", "tokens", "text", "engine", "trigger", "finish_reason", "prompt_tokens",
                "cached_tokens", "latency_s", "verdict", "value_before", "value_after"]


def spans_df(runs: Runs) -> pd.DataFrame:
    """One row per span (turns, injections, seeds), with the judge's verdict on it when there is one."""
    rows = []
    for run in _runs(runs):
        for episode in run.episodes:
            verdicts = {v.span: v for v in episode.verdicts if v.span is not None}
            for span in episode.spans:
                verdict = verdicts.get(span.index)
                rows.append({
                    **_context(run, episode), "index": span.index, "turn": span.turn, "agent": span.agent,
                    "kind": span.kind, "tokens": span.tokens, "text": span.text,
                    "engine": getattr(span, "engine", None), "trigger": getattr(span, "trigger", None),
                    "finish_reason": getattr(span, "finish_reason", None),
                    "prompt_tokens": getattr(span, "prompt_tokens", None),
                    "cached_tokens": getattr(span, "cached_tokens", None),
                    "latency_s": getattr(span, "latency_s", None),
                    "verdict": verdict.verdict if verdict else None,
                    "value_before": verdict.before if verdict else None,
                    "value_after": verdict.after if verdict else None,
                })
    return _frame(rows, SPAN_COLUMNS)


VERDICT_COLUMNS = ["run", "episode_id", "problem_id", "benchmark", "sample", "stage", "subsets", "correct", "span",
                   "agent", "verdict", "before", "after", "method"]


def verdicts_df(runs: Runs) -> pd.DataFrame:
    """One row per judge verdict: per span (derailed, rescued, neutral) and per episode with an injection
    (recovered, followed_injection, other_wrong; ``span`` is empty)."""
    rows = [
        {**_context(run, episode), "span": v.span, "agent": v.agent, "verdict": v.verdict, "before": v.before,
         "after": v.after, "method": v.method}
        for run in _runs(runs) for episode in run.episodes for v in episode.verdicts
    ]
    return _frame(rows, VERDICT_COLUMNS)
