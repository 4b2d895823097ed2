"""What ``collab judge`` prints: the verdicts per agent and per handoff, and where the judgement went."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text


def _table(title: str, columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left", box=None, padding=(0, 2), pad_edge=False, header_style="dim")
    for index, name in enumerate(columns):
        table.add_column(name, justify="left" if index == 0 else "right")
    return table


def judgement_view(summary: dict[str, Any]) -> RenderableType:
    """The judge summary of :func:`collab.sim.rejudge.judge_run` for people."""
    method = summary["method"] + (f", {summary['samples']} rollouts per boundary" if summary["method"] == "rollouts"
                                  else "")
    parts: list[RenderableType] = [Text(
        f"judged {summary['judged']} episodes ({method}): {summary['correct']} correct", style="bold")]
    agents = _table("per agent", ["agent", "spans", "derailed", "rescued", "net value", "injected outcomes"])
    for name, row in summary["per_agent"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in row.get("injected", {}).items() if k != "episodes") or "-"
        agents.add_row(Text(name), str(row.get("spans", 0)), str(row.get("derailed", 0)), str(row.get("rescued", 0)),
                       f"{row.get('net_value', 0.0):+.2f}", Text(outcomes))
    if summary["per_agent"]:
        parts.append(agents)
    handoffs = _table("per handoff", ["handoff", "count", "derailed", "rescued", "mean value change"])
    for key, row in summary["per_handoff"].items():
        mean = row.get("mean_value_change")
        handoffs.add_row(Text(key), str(row.get("count", 0)), str(row.get("derailed", 0)), str(row.get("rescued", 0)),
                         "-" if mean is None else f"{mean:+.2f}")
    if summary["per_handoff"]:
        parts.append(handoffs)
    written = ", ".join(summary["written"])
    parts.append(Text(
        f"this is now the run's judgement (report, show and replay use it): wrote {written}" if summary["replaced"]
        else f"kept the run's earlier judgement (report, show and replay use it); this one is in {written}. "
             "Pass --replace to make it the run's judgement."))
    return Group(*parts)
