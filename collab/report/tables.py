"""``collab report``: tables for one run (or several side by side), ``report.md`` and PNG plots."""

from __future__ import annotations

import html
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from collab.events import RunEnd, RunStart, TurnEvent
from collab.log.store import (
    SUMMARY,
    EpisodeRecord,
    RunStore,
    StoreError,
    group_episodes,
    is_run,
    refuse_run_file,
)
from collab.log.verdicts import marked_spans, outcome, values_by_boundary
from collab.report import plots
from collab.report.paper_tables import paper_tables
from collab.report.forks import fork_table
from collab.report.section import Section
from collab.report.shares import frontier_plot, token_shares
from collab.report.summary import summarize
from collab.scenario.sweep import point_label

REPORT = "report.md"
_STAMP = re.compile(r"-\d{8}-\d{6}-[0-9a-f]{6}$")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#!~])")
PLOTS = "plots"


@dataclass
class RunData:
    """A run read back: its episodes, its summary (recomputed, over any stored keys) and wall time.

    ``ok`` holds the finished episodes the tables count: not failed, and not solo stage episodes.
    """

    path: Path
    episodes: dict[str, EpisodeRecord]
    summary: dict[str, Any]
    wall_s: float = 0.0
    ok: list[EpisodeRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.ok = [r for r in self.episodes.values()
                   if r.end is not None and r.end.status == "ok" and r.start.stage is None]

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def load(cls, path: Path) -> RunData:
        store = RunStore(path)
        if not store.events_path.exists():
            raise StoreError(f"{path} is not a run folder (no {store.events_path.name})")
        events = list(store.events())
        wall, started = 0.0, None
        for event in events:
            if isinstance(event, RunStart):
                started = event.t
            elif isinstance(event, RunEnd) and started is not None:
                wall, started = wall + event.t - started, None
        episodes = group_episodes(events)
        saved = store.read_json(SUMMARY) or {}
        if not isinstance(saved, dict):
            raise StoreError(f"{store.path / SUMMARY} is corrupt (not a JSON object)")
        return cls(Path(path), episodes, {**saved, **summarize(episodes)}, wall)


# ---------------------------------------------------------------- figures


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion."""
    if total == 0:
        return None
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _accuracy(records: list[EpisodeRecord]) -> tuple[int, int]:
    judged = [r for r in records if r.end is not None and r.end.correct is not None]
    return sum(1 for r in judged if r.end.correct), len(judged)


def _ci(correct: int, total: int) -> str:
    interval = wilson(correct, total)
    return "-" if interval is None else f"{interval[0]:.1%}–{interval[1]:.1%}"


def _points(run: RunData) -> dict[str, list[EpisodeRecord]]:
    points: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in sorted(run.ok, key=lambda r: json.dumps(r.start.point, sort_keys=True, default=str)):
        points[point_label(record.start.point)].append(record)
    return points


def handoffs(run: RunData) -> tuple[list[str], Counter, Counter, Counter, Counter]:
    """Agents in order, and per (from, to) pair of consecutive spans: count, correct, derails and
    rescues by the receiving span."""
    agents: dict[str, None] = {}
    count, correct, derails, rescues = Counter(), Counter(), Counter(), Counter()
    for record in run.ok:
        marks = marked_spans(record.verdicts)
        for before, after in zip(record.spans, record.spans[1:]):
            pair = (before.agent, after.agent)
            agents.update({before.agent: None, after.agent: None})
            count[pair] += 1
            correct[pair] += bool(record.end.correct)
            verdict = marks.get(after.index)
            derails[pair] += verdict is not None and verdict.verdict == "derailed"
            rescues[pair] += verdict is not None and verdict.verdict == "rescued"
    return list(agents), count, correct, derails, rescues


# ---------------------------------------------------------------- sections


def overview(run: RunData) -> Section:
    s = run.summary
    tokens = s["tokens"]
    correct, total = _accuracy(run.ok)
    rows = [
        ["episodes", f"{s['episodes']} ({s['ok']} ok, {s['failed']} failed, {s['unjudged']} unjudged)"],
        ["accuracy", f"{_pct(correct, total)} of {total}"],
        ["95% interval", _ci(correct, total)],
        ["trace tokens", str(tokens["trace"])],
        ["requests", str(tokens["requests"])],
        ["requests extending the previous", "-" if tokens["requests_extending_previous"] is None
         else f"{tokens['requests_extending_previous']:.1%}"],
        ["prompt tokens cached", f"{_pct(tokens['cached_reported'], tokens['prompt'])} reported, "
                                 f"{_pct(tokens['cached_ideal'], tokens['prompt'])} ideal"],
        ["wall time", f"{run.wall_s:.1f} s" if run.wall_s else "-"],
        ["trace tokens per second", f"{tokens['trace'] / run.wall_s:.1f}" if run.wall_s else "-"],
    ]
    return Section("Overview", ["metric", "value"], rows)


def per_point(run: RunData) -> Section | None:
    points = _points(run)
    if list(points) == ["-"]:
        return None
    rows = []
    for label, records in points.items():
        correct, total = _accuracy(records)
        rows.append([label, str(len(records)), _pct(correct, total), _ci(correct, total)])
    return Section("Accuracy per sweep point", ["point", "episodes", "accuracy", "95% interval"], rows)


def per_agent(run: RunData) -> Section:
    derailed, rescued = Counter(), Counter()
    for record in run.ok:
        for verdict in marked_spans(record.verdicts).values():
            (derailed if verdict.verdict == "derailed" else rescued)[verdict.agent or record.spans[verdict.span].agent] += 1
    rows = []
    for name, stats in run.summary["per_agent"].items():
        accuracy = stats.get("accuracy_when_present")
        rows.append([name, str(stats["spans"]), str(stats["tokens"]), str(stats["episodes"]),
                     "-" if accuracy is None else f"{accuracy:.1%}", str(derailed[name]), str(rescued[name])])
    return Section("Per agent", ["agent", "spans", "tokens", "episodes", "accuracy when present", "derailed",
                                 "rescued"], rows, note="derailed / rescued: spans the judge marked")


def outcomes(run: RunData) -> Section | None:
    """Injection episodes: recovered, followed the injection, or wrong otherwise, per sweep point."""
    kinds = ("recovered", "followed_injection", "other_wrong", "unjudged")
    rows = []
    for label, records in _points(run).items():
        found = Counter(v.verdict for r in records if (v := outcome(r.verdicts)) is not None)
        total = sum(found.values())
        if total:
            rows.append([label, str(total), *(f"{found[k]} ({_pct(found[k], total)})" for k in kinds)])
    if not rows:
        return None
    return Section("Injection outcomes", ["point", "episodes", "recovered", "followed injection", "other wrong",
                                          "unjudged"], rows)


def handoff_matrix(run: RunData) -> Section | None:
    agents, count, correct, derails, rescues = handoffs(run)
    if not count:
        return None
    rows = []
    for source in agents:
        row = [source]
        for target in agents:
            pair = (source, target)
            cell = f"{count[pair]} · {_pct(correct[pair], count[pair])}" if count[pair] else ""
            cell += f" ▼{derails[pair]}" if derails[pair] else ""
            cell += f" ▲{rescues[pair]}" if rescues[pair] else ""
            row.append(cell)
        rows.append(row)
    return Section("Handoffs: row → column", ["from \\ to", *agents], rows,
                   note="cell: handoffs · accuracy of their episodes; ▼ derails / ▲ rescues by the receiving span")


def engines(run: RunData) -> Section | None:
    stats: dict[str, Counter] = defaultdict(Counter)
    latency: Counter = Counter()
    for record in run.ok:
        for span in record.spans:
            if isinstance(span, TurnEvent):
                e = stats[span.engine]
                e["turns"] += 1
                e["requests"] += span.requests
                e["tokens"] += span.tokens
                e["prompt"] += span.prompt_tokens
                e["cached"] += span.cached_tokens
                latency[span.engine] += span.latency_s
    if not stats:
        return None
    rows = [[name, str(e["turns"]), str(e["requests"]), str(e["tokens"]), _pct(e["cached"], e["prompt"]),
             f"{latency[name]:.1f}", f"{e['tokens'] / latency[name]:.1f}" if latency[name] else "-"]
            for name, e in sorted(stats.items())]
    return Section("Engines: cache and throughput", ["engine", "turns", "requests", "generated tokens",
                                                      "prompt cached", "request time s", "tokens/s per request"], rows)


def stages(run: RunData) -> Section | None:
    """Solo stage episodes (which build pools or pick problems), per stage and agent."""
    rows = [[stage, agent, str(stats["episodes"]), str(stats["failed"]),
             "-" if stats["accuracy"] is None else f"{stats['accuracy']:.1%}"]
            for stage, agents in run.summary.get("stages", {}).items() for agent, stats in agents.items()]
    return Section("Stages", ["stage", "agent", "episodes", "failed", "accuracy"], rows, keys=2) if rows else None


SECTIONS: list[Callable[[RunData], Section | None]] = [
    overview, per_point, per_agent, outcomes, handoff_matrix, engines, stages, lambda run: token_shares(run.ok),
    lambda run: fork_table(run.ok),
]

PAPER_TABLES: list[Callable[[dict[str, Any]], list[Section]]] = [paper_tables]
"""Paper-style twin-test tables (recoverability, guidability), built from ``summary.json`` keys.

Register a builder here: it takes the run's summary and returns its Sections (none when the keys it
needs are absent). They print after the sections above, and side by side under ``--compare``.
"""


def sections(run: RunData) -> list[Section | None]:
    """Every section builder's table, in order; None where a builder has nothing for this run."""
    return [section(run) for section in SECTIONS] + [t for build in PAPER_TABLES for t in build(run.summary)]


def merge(runs: list[str], tables: list[Section | None]) -> Section:
    """One section for several runs, rows lined up on the key columns.

    A one-value table gets a column per run; a wider one a ``run`` column, each key's rows together.
    """
    first = next(t for t in tables if t is not None)
    keys, columns = first.keys, first.columns[first.keys:]
    rows: dict[tuple[str, ...], dict[int, list[str]]] = {}
    for index, table in enumerate(tables):
        for row in table.rows if table is not None else []:
            rows.setdefault(tuple(row[:keys]), {})[index] = row[keys:]
    if len(columns) == 1:
        merged = [[*key, *(cells.get(i, [""])[0] for i in range(len(runs)))] for key, cells in rows.items()]
        return Section(first.title, first.columns[:keys] + runs, merged, keys, first.note)
    merged = [[*key, runs[i], *cells[i]] for key, cells in rows.items() for i in sorted(cells)]
    return Section(first.title, first.columns[:keys] + ["run"] + columns, merged, keys + 1, first.note)


def combine(names: list[str], per_run: list[list[Section]]) -> list[Section]:
    """The sections of several runs, each title once: merged, or one per run where columns differ
    (a handoff matrix over different agents). A title only some runs have keeps its place."""
    if len(per_run) == 1:
        return per_run[0]
    titles: list[str] = []
    for found in per_run:
        at = 0
        for section in found:
            if section.title in titles:
                at = titles.index(section.title) + 1
            else:
                titles.insert(at, section.title)
                at += 1
    built: list[Section] = []
    for title in titles:
        tables = [next((s for s in found if s.title == title), None) for found in per_run]
        if len({tuple(t.columns) for t in tables if t is not None}) == 1:
            built.append(merge(names, tables))
        else:
            built += [replace(t, title=f"{t.title} · {name}") for name, t in zip(names, tables) if t is not None]
    return built


def short_names(paths: list[Path]) -> list[str]:
    """Run folder names without their ``-YYYYMMDD-HHMMSS-xxxxxx`` stamp, unless that makes two alike."""
    bases = [_STAMP.sub("", p.name) or p.name for p in paths]
    return [base if bases.count(base) == 1 else f"{base}-{p.name[-6:]}" for base, p in zip(bases, paths)]


# ---------------------------------------------------------------- output


def to_rich(section: Section) -> Table:
    """The section as a Rich table; every name and value is shown literally (never read as markup)."""
    table = Table(title=Text(section.title), title_justify="left", title_style="bold",
                  caption=Text(section.note) if section.note else None, caption_justify="left", header_style="bold")
    for index, column in enumerate(section.columns):
        table.add_column(Text(column), justify="left" if index < section.keys else "right")
    for row in section.rows:
        table.add_row(*map(Text, row))
    return table


def markdown_text(text: str) -> str:
    """``text`` shown literally in Markdown: HTML escaped, Markdown punctuation backslashed, one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(" ".join(text.splitlines()), quote=False))


def to_markdown(section: Section) -> str:
    def cells(row: list[str]) -> str:
        return "| " + " | ".join(map(markdown_text, row)) + " |"

    lines = [f"## {markdown_text(section.title)}", "", cells(section.columns),
             "|" + "|".join("---" if i < section.keys else "---:" for i in range(len(section.columns))) + "|"]
    lines += [cells(row) for row in section.rows]
    if section.note:
        lines += ["", f"*{markdown_text(section.note)}*"]
    return "\n".join(lines)


def draw_plots(runs: list[RunData], names: list[str], folder: Path) -> list[Path]:
    """accuracy.png, handoffs.png and (when the judge left values) values.png under ``folder``."""
    labels = dict(zip(names, runs))
    keys = {k for run in runs for r in run.ok for k in r.start.point}
    single = next(iter(keys)) if len(keys) == 1 else None
    series: dict[str, list[plots.AccuracyPoint]] = {}
    for name, run in labels.items():
        series[name] = []
        for label, records in _points(run).items():
            correct, total = _accuracy(records)
            value = records[0].start.point.get(single) if single else None
            interval = wilson(correct, total)
            series[name].append(plots.AccuracyPoint(
                "all episodes" if label == "-" else label, float(value) if isinstance(value, (int, float)) else None,
                correct / total if total else None, *(interval or (None, None)),
            ))
    written = [plots.accuracy_plot(series, single.rsplit(".", 1)[-1] if single else None, folder / "accuracy.png")]
    matrices = {}
    for name, run in labels.items():
        agents, count, correct, _, _ = handoffs(run)
        if count:
            matrices[name] = plots.Matrix(
                agents, [[count[(a, b)] for b in agents] for a in agents],
                [[correct[(a, b)] / count[(a, b)] if count[(a, b)] else None for b in agents] for a in agents],
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
    return plots.Curve([x for x, _ in points], [y for _, y in points], record.end.correct) if points else None


def report(paths: list[Path], out: Path | None, console: Console) -> int:
    """Print the tables, write ``report.md`` and ``plots/`` (into ``out``, default the first run)."""
    folder = Path(out) if out is not None else Path(paths[0])
    refuse_run_file(folder)
    if is_run(folder) and folder.resolve() != Path(paths[0]).resolve():
        raise StoreError(f"refusing to write the report into {folder}: it is another run's folder")
    runs = [RunData.load(path) for path in paths]
    names = short_names([run.path for run in runs])
    built = combine(names, [[s for s in sections(run) if s is not None] for run in runs])
    for section in built:
        console.print(to_rich(section))
        console.print()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = draw_plots(runs, names, folder / PLOTS)
        heading = f"# Report: {' vs '.join(markdown_text(run.name) for run in runs)}"
        images = [f"![{p.stem}]({PLOTS}/{p.name})" for p in written]
        text = "\n\n".join([heading, *(to_markdown(s) for s in built), "## Plots", *images]) + "\n"
        (folder / REPORT).write_text(text, encoding="utf-8")
    except OSError as error:
        raise StoreError(f"cannot write the report into {folder}: {error.strerror or error}") from error
    console.print(f"wrote {folder / REPORT} and {len(written)} plots in {folder / PLOTS}", markup=False,
                  highlight=False)
    return 0
