"""The report's plots fed from its runs: accuracy per sweep point, handoffs, value curves."""

from __future__ import annotations

from pathlib import Path

from collab.log.store import EpisodeRecord
from collab.log.verdicts import values_by_boundary
from collab.report import plots
from collab.report.figures import accuracy, by_point, handoffs, wilson
from collab.report.rundata import RunData
from collab.report.shares import frontier_plot


def draw_plots(runs: list[RunData], names: list[str], folder: Path) -> list[Path]:
    """accuracy.png, handoffs.png, (when the judge left values) values.png and (one run whose helpers
    wrote) frontier.png under ``folder``."""
    labels = dict(zip(names, runs, strict=False))
    keys = {k for run in runs for r in run.ok for k in r.start.point}
    single = next(iter(keys)) if len(keys) == 1 else None
    series: dict[str, list[plots.AccuracyPoint]] = {}
    for name, run in labels.items():
        series[name] = []
        for label, records in by_point(run).items():
            correct, total = accuracy(records)
            value = records[0].start.point.get(single) if single else None
            interval = wilson(correct, total)
            series[name].append(plots.AccuracyPoint(
                "all episodes" if label == "-" else label, float(value) if isinstance(value, (int, float)) else None,
                correct / total if total else None, *(interval or (None, None)),
            ))
    written = [plots.accuracy_plot(series, single.rsplit(".", 1)[-1] if single else None, folder / "accuracy.png")]
    matrices = {}
    for name, run in labels.items():
        agents, count, right, _, _ = handoffs(run)
        if count:
            matrices[name] = plots.Matrix(
                agents, [[count[(a, b)] for b in agents] for a in agents],
                [[right[(a, b)] / count[(a, b)] if count[(a, b)] else None for b in agents] for a in agents],
            )
    if matrices:
        written.append(plots.handoff_plot(matrices, folder / "handoffs.png"))
    curves = {name: [c for r in run.ok if (c := _curve(r)) is not None] for name, run in labels.items()}
    if any(curves.values()):
        written.append(plots.value_plot({k: v for k, v in curves.items() if v}, folder / "values.png"))
    if len(runs) == 1 and (frontier := frontier_plot(runs[0].ok, folder)) is not None:
        written.append(frontier)
    return written


def _curve(record: EpisodeRecord) -> plots.Curve | None:
    values = values_by_boundary(record.values)
    total = sum(s.tokens for s in record.spans)
    if not values or not total:
        return None
    before = [0]
    for span in record.spans:
        before.append(before[-1] + span.tokens)
    points = [(before[b] / total, v) for b, v in sorted(values.items()) if v is not None and b < len(before)]
    return plots.Curve([x for x, _ in points], [y for _, y in points], record.final.correct) if points else None
