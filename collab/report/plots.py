"""PNG plots for reports, drawn with matplotlib's Agg backend from plain series (no run objects here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGSIZE = (8.0, 5.0)
DPI = 100
"""Every plot is FIGSIZE * DPI pixels (800 x 500)."""
MARKERS = "osD^v<>ph*"


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


def _styles(count: int) -> list[tuple[str, str]]:
    """A colour and a marker per series, so runs stay apart even in grey or when lines coincide."""
    return [(f"C{i % 10}", MARKERS[i % len(MARKERS)]) for i in range(count)]


def accuracy_plot(series: dict[str, list[AccuracyPoint]], xlabel: str | None, path: Path) -> Path:
    """Accuracy (with 95% intervals) per sweep point: one series per run, each its own colour and marker,
    nudged sideways so that identical series stay visible."""
    figure, (axes,) = _figure()
    numeric = all(p.x is not None for points in series.values() for p in points)
    labels = list(dict.fromkeys(p.label for points in series.values() for p in points))
    xs = [p.x for points in series.values() for p in points if p.x is not None]
    step = 0.012 * ((max(xs) - min(xs)) or 1.0) if numeric and xs else 0.08
    for index, ((run, points), (colour, marker)) in enumerate(zip(series.items(), _styles(len(series)),
                                                                    strict=True)):
        shown = [p for p in points if p.accuracy is not None]
        ys = [p.accuracy for p in shown]
        errors = [[max(0.0, p.accuracy - p.low) if p.accuracy is not None and p.low is not None else 0.0
                   for p in shown],
                  [max(0.0, p.high - p.accuracy) if p.accuracy is not None and p.high is not None else 0.0
                   for p in shown]]
        offset = (index - (len(series) - 1) / 2) * step
        where = [(p.x if numeric and p.x is not None else labels.index(p.label)) + offset for p in shown]
        axes.errorbar(where, ys, yerr=errors, color=colour, ecolor=colour, marker=marker, markersize=7,
                      capsize=4, linestyle="-" if numeric else "none", label=run)
    if not numeric:
        rotate = len(labels) > 4 or any(len(label) > 12 for label in labels)
        axes.set_xticks(range(len(labels)), labels, rotation=30 if rotate else 0, ha="right" if rotate else "center")
        axes.set_xlim(-0.5, max(len(labels), 1) - 0.5)
    axes.set_xlabel(xlabel or "sweep point")
    axes.set_ylabel("accuracy")
    axes.set_ylim(-0.02, 1.05)
    axes.set_title("accuracy per sweep point (95% Wilson intervals)")
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize=8)
    return _save(figure, path)


def value_plot(curves: dict[str, list[Curve]], path: Path) -> Path:
    """The judge's value along the trace: one thin line per episode (green correct, red not), per run."""
    figure, panels = _figure(len(curves))
    for axes, (run, episodes) in zip(panels, curves.items(), strict=True):
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
    for axes, (run, matrix) in zip(panels, matrices.items(), strict=True):
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
