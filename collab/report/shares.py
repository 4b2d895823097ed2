"""Who wrote the trace: tokens written per agent, and accuracy against the share each helper wrote.

Per sweep point: accuracy, and per writer the mean generated tokens per episode and their share of
all generated tokens. Sweeping a handoff threshold traces the efficiency frontier the weak/strong
papers plot (accuracy against the share of tokens the strong model wrote).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from collab.log.store import EpisodeRecord
from collab.report import plots
from collab.report.section import Section
from collab.scenario.sweep import point_label


def _sum(record: EpisodeRecord) -> Counter[str]:
    found: Counter[str] = Counter()
    for span in record.spans:
        if span.kind == "generated":
            found[span.agent] += span.tokens
    return found


def _groups(records: list[EpisodeRecord]) -> dict[str, list[EpisodeRecord]]:
    groups: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        groups[point_label(record.start.point)].append(record)
    return dict(groups)


def _frontier(records: list[EpisodeRecord]) -> tuple[list[str], dict[str, tuple[int, int, int, Counter[str]]]]:
    """Writers, and per point: episodes, correct, judged, and generated tokens per agent."""
    agents = sorted({a for r in records for a in _sum(r)})
    rows = {}
    for label, group in _groups(records).items():
        tokens: Counter[str] = Counter()
        for record in group:
            tokens.update(_sum(record))
        judged = [r for r in group if r.end is not None and r.end.correct is not None]
        rows[label] = (len(group), sum(bool(r.end and r.end.correct) for r in judged), len(judged), tokens)
    return agents, rows


def token_shares(records: list[EpisodeRecord]) -> Section | None:
    """The table: one row per sweep point; ``None`` when a single agent wrote everything."""
    agents, rows = _frontier(records)
    if len(agents) < 2:
        return None
    table = []
    for label, (episodes, correct, judged, tokens) in rows.items():
        total = sum(tokens.values())
        cells = [f"{tokens[a] / episodes:.0f} ({tokens[a] / total:.0%})" if total else "-" for a in agents]
        table.append([label, str(episodes), f"{correct / judged:.1%}" if judged else "-", *cells])
    return Section("Tokens written per agent", ["point", "episodes", "accuracy",
                                                *(f"{a} tok/episode (share)" for a in agents)], table,
                   note="generated tokens only; accuracy against each agent's share traces the efficiency frontier")


def frontier_plot(records: list[EpisodeRecord], folder: Path) -> Path | None:
    """``frontier.png``: accuracy against the share of generated tokens, one series per writer but the
    episodes' first (the helpers); ``None`` when a single agent wrote everything."""
    agents, rows = _frontier(records)
    if len(agents) < 2:
        return None
    first = Counter(next((s.agent for s in r.spans if s.kind == "generated"), "") for r in records)
    helpers = [a for a in agents if a != first.most_common(1)[0][0]]
    series = {}
    for agent in helpers:
        series[agent] = [
            plots.AccuracyPoint(label, tokens[agent] / sum(tokens.values()) if tokens else None,
                                correct / judged if judged else None, None, None)
            for label, (_, correct, judged, tokens) in rows.items()
        ]
    return plots.accuracy_plot(series, "share of generated tokens written by the helper", folder / "frontier.png")
