"""The twin tests' metrics as the paper reports them.

Per problem subset and per sweep key: one row per model (the writer that ends the episode), one
column per value of the key (a cut position, a guide's share, a guide), each cell the share of
continuations whose final answer is correct with its 95% interval, and last the average
micro-averaged over the row's items. Other sweep keys are pooled. Cells of injection episodes also
count the outcomes (recovered, followed the injection, other wrong); cells also count guide prefixes
(seeded spans by another agent than the row's model) and the share of them that already state the
correct answer. Runs whose problems come from several benchmarks get one more table per benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from collab.log.store import EpisodeRecord
from collab.log.verdicts import outcome
from collab.report.intervals import wilson

OUTCOMES = ("recovered", "followed_injection", "other_wrong")

ALL = "all"
"""The subset name of a run without subsets."""


def guide_prefix(record: EpisodeRecord, model: str) -> bool | None:
    """Whether the episode's guide prefixes state the correct answer (None: it has none)."""
    guides = [s for s in record.spans if s.kind == "seeded" and s.agent != model]
    return any(bool(s.meta.get("answer_in_prefix")) for s in guides) if guides else None


def _cell(records: list[EpisodeRecord], model: str) -> dict[str, Any]:
    judged = [r for r in records if r.end is not None and r.final.correct is not None]
    correct = sum(1 for r in judged if r.final.correct)
    prefixes = [p for r in records if (p := guide_prefix(r, model)) is not None]
    interval = wilson(correct, len(judged))
    verdicts = [v.verdict for r in records if (v := outcome(r.verdicts)) is not None]
    return {
        "episodes": len(records), "n": len(judged), "correct": correct,
        "accuracy": round(correct / len(judged), 4) if judged else None,
        "interval": None if interval is None else [round(interval[0], 4), round(interval[1], 4)],
        "outcomes": {k: verdicts.count(k) for k in (*OUTCOMES, "unjudged")} if verdicts else None,
        "guide_prefixes": len(prefixes),
        "answer_in_prefix": round(sum(prefixes) / len(prefixes), 4) if prefixes else None,
    }


def _order(values: Iterable[Any]) -> list[Any]:
    unique = list(dict.fromkeys(values))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in unique)
    return sorted(unique) if numeric else sorted(unique, key=str)


def _subsets(records: list[EpisodeRecord]) -> list[str]:
    """Subset names in scenario order (as episodes in most subsets list them), then by name."""
    widest = max((r.start.subsets for r in records), key=len, default=[])
    names = {name for r in records for name in r.start.subsets}
    return list(widest) + sorted(names - set(widest)) if names else [ALL]


def table(subset: str, key: str | None, records: list[EpisodeRecord]) -> dict[str, Any]:
    """Rows of models, columns of ``key``'s values (none when ``key`` is None), and the average."""
    models = sorted({m for r in records if (m := r.last_writer) is not None})
    columns = _order(r.start.point.get(key) for r in records) if key is not None else []
    rows = []
    for model in models:
        mine = [r for r in records if r.last_writer == model]
        cells = [_cell([r for r in mine if r.start.point.get(key or '') == value], model) for value in columns]
        rows.append({"model": model, "cells": cells, "avg": _cell(mine, model)})
    return {"subset": subset, "key": key, "columns": columns, "rows": rows}


def twin_tests(records: Iterable[EpisodeRecord]) -> dict[str, Any] | None:
    """The tables of a run's finished main episodes; None unless it has subsets or seeded prefixes."""
    records = [r for r in records if r.end is not None and r.end.status == "ok" and r.last_writer is not None]
    if not any(r.start.subsets or any(s.kind == "seeded" for s in r.spans) for r in records):
        return None
    keys = list(dict.fromkeys(k for r in records for k in r.start.point))
    varying = [k for k in keys if any(str(r.start.point.get(k)) != r.last_writer for r in records)]
    tables = []
    sources = sorted({r.start.source for r in records if r.start.source})
    by: list[str | None] = [*varying] or [None]
    for subset in _subsets(records):
        members = [r for r in records if subset == ALL or subset in r.start.subsets]
        tables += [table(subset, key, members) for key in by]
        for source in sources if len(sources) > 1 else []:
            mine = [r for r in members if r.start.source == source]
            tables += [{**table(subset, key, mine), "source": source} for key in by]
    return {"problems": len({r.start.problem_id for r in records}), "tables": tables}
