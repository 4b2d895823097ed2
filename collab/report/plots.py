"""PNG plots for reports, drawn with matplotlib's Agg backend from plain series (no run objects here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGSIZE = (8.0, 5.0)
DPI = 100
"""Every plot is FIGSIZE * DPI pixels (800 x 500)."""


@dataclass
class AccuracyPoint:
    """One sweep point of an accuracy plot, with its interval."""

    label: str
    x: float | None
    """The sweep value when the sweep has one numeric key."""
    accuracy: float | None
    low: float | None
    high: float | None


@dataclass
class Curve:
    """One episode's values: ``x`` is the share of the final trace's tokens before each boundary."""

    x: list[float]
    y: list[float]
    correct: bool | None


@dataclass
class Matrix:
    """A handoff matrix: counts and accuracies per (from, to) pair."""

    agents: list[str]
    counts: list[list[int]]
    accuracy: list[list[float | None]]
    """Share of correct episodes among those with the handoff row -> column."""


def _figure(panels: int = 1) -> tuple[Figure, list]:
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def accuracy_plot(series: dict[str, list[AccuracyPoint]], xlabel: str | None, path: Path) -> Path:
    """Accuracy (with 95% intervals) per sweep point, one line (numeric sweep) or bar group per run."""
    figure, (axes,) = _figure()
    numeric = all(p.x is not None for points in series.values() for p in points)
    labels = list(dict.fromkeys(p.label for points in series.values() for p in points))
    width = 0.8 / max(len(series), 1)
    for index, (run, points) in enumerate(series.items()):
        shown = [p for p in points if p.accuracy is not None]
        ys = [p.accuracy for p in shown]
        errors = [[p.accuracy - p.low if p.accuracy is not None and p.low is not None else 0.0 for p in shown],
                  [p.high - p.accuracy if p.accuracy is not None and p.high is not None else 0.0 for p in shown]]
        if numeric:
            axes.errorbar([p.x for p in shown], ys, yerr=errors, marker="o", capsize=4, label=run)
        else:
            xs = [labels.index(p.label) + (index - (len(series) - 1) / 2) * width for p in shown]
            axes.bar(xs, ys, width=width, yerr=errors, capsize=4, label=run)
    if not numeric:
        axes.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 4 else 0)
    axes.set_xlabel(xlabel or "sweep point")
    axes.set_ylabel("accuracy")
    axes.set_ylim(-0.02, 1.05)
    axes.set_title("accuracy per sweep point (95% Wilson intervals)")
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend()
    return _save(figure, path)


def value_plot(curves: dict[str, list[Curve]], path: Path) -> Path:
    """The judge's value along the trace: one thin line per episode (green correct, red not), per run."""
    figure, panels = _figure(len(curves))
    for axes, (run, episodes) in zip(panels, curves.items(), strict=False):
        for curve in episodes:
            colour = {True: "tab:green", False: "tab:red", None: "tab:gray"}[curve.correct]
            axes.plot(curve.x, curve.y, color=colour, alpha=0.4, linewidth=1, marker="o", markersize=3)
        axes.set_ylim(-0.05, 1.05)
        axes.set_xlim(0, 1)
        axes.set_xlabel("share of the trace written")
        axes.set_title(run if len(curves) > 1 else "value over the trace (green: ended correct)", fontsize=9)
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("value (chance to end correct)")
    return _save(figure, path)


def handoff_plot(matrices: dict[str, Matrix], path: Path) -> Path:
    """Who handed the trace to whom: colour = accuracy of those episodes, numbers = handoffs."""
    figure, panels = _figure(len(matrices))
    image = None
    for axes, (run, matrix) in zip(panels, matrices.items(), strict=False):
        grid = [[float("nan") if a is None else a for a in row] for row in matrix.accuracy]
        image = axes.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1)
        ticks = range(len(matrix.agents))
        axes.set_xticks(ticks, matrix.agents, rotation=30 if len(matrix.agents) > 3 else 0)
        axes.set_yticks(ticks, matrix.agents)
        axes.set_xlabel("to")
        axes.set_ylabel("from")
        for i, row in enumerate(matrix.counts):
            for j, count in enumerate(row):
                if count:
                    axes.text(j, i, str(count), ha="center", va="center", fontsize=9)
        axes.set_title(run if len(matrices) > 1 else "handoffs (colour: episode accuracy)", fontsize=9)
    if image is not None:
        figure.colorbar(image, ax=panels, shrink=0.8, label="accuracy")
    return _save(figure, path)
