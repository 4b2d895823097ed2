"""Paper-style tables from ``summary["twin_tests"]``: models as rows, positions as columns, Avg last.

Every cell is a percentage with its 95% Wilson interval. Injection episodes get a second table with
the outcomes (recovered / followed the injection / other wrong) per model, position and subset.
"""

from __future__ import annotations

from typing import Any

from collab.report.intervals import wilson
from collab.report.section import Section

OUTCOMES = {"recovered": "recovered", "followed_injection": "followed", "other_wrong": "other wrong"}


def label(key: str | None, value: Any) -> str:
    """A column heading: shares of a trace as percentages (``0.2`` -> ``20%``), anything else as is."""
    if key is not None and key.endswith("fraction") and isinstance(value, (int, float)) and 0 <= value <= 1:
        return f"{value:.0%}"
    return str(value)


def share(part: int, total: int) -> str:
    """``part`` of ``total`` as a percentage with its 95% interval: ``75.0 [30.1–95.4]``."""
    interval = wilson(part, total)
    if interval is None:
        return "-"
    return f"{100 * part / total:.1f} [{100 * interval[0]:.1f}–{100 * interval[1]:.1f}]"


def _percent(cell: dict[str, Any]) -> str:
    text = share(cell["correct"], cell["n"])
    if cell.get("answer_in_prefix") is not None:
        text += f" ({100 * cell['answer_in_prefix']:.1f})"
    return text


def _outcome(cell: dict[str, Any], kind: str) -> str:
    found = cell.get("outcomes") or {}
    return share(found.get(kind, 0), sum(found.get(k, 0) for k in OUTCOMES))


def paper_tables(summary: dict[str, Any], name: str = "Twin tests") -> list[Section]:
    """One table per subset, benchmark and sweep key (and its outcomes); empty without twin tests.

    Rows name the model an agent ran where ``summary["agent_models"]`` says (else the agent)."""
    found = (summary or {}).get("twin_tests") or {}
    models = (summary or {}).get("agent_models") or {}
    tables = []
    for entry in found.get("tables", []):
        key = entry["key"]
        by = f", by {key.removeprefix('graph.').removeprefix('turns.')}" if key else ""
        source = f" · {entry['source']}" if entry.get("source") else ""
        guided = any(c["guide_prefixes"] for row in entry["rows"] for c in [*row["cells"], row["avg"]])
        counts = sorted({c["n"] for row in entry["rows"] for c in row["cells"]})
        note = ("% of continuations with a correct final answer [95% Wilson interval]; "
                "Avg: over all of the row's items")
        if counts:
            note += f"; items per cell: {counts[0]}" + (f"–{counts[-1]}" if counts[-1] != counts[0] else "")
        if guided:
            note += "; (x): % of guide prefixes that already state the correct answer"
        columns = [*(label(key, v) for v in entry["columns"]), "Avg"]
        title = f"{name}: {entry['subset']} subset{source}{by}"
        tables.append(Section(
            title=title, columns=["model", *columns],
            rows=[[models.get(row["model"], row["model"]), *map(_percent, row["cells"]), _percent(row["avg"])]
                  for row in entry["rows"]],
            note=note,
        ))
        if any(c.get("outcomes") for row in entry["rows"] for c in row["cells"]):
            tables.append(Section(
                title=f"{title}: outcomes", columns=["model", "outcome", *columns],
                rows=[[models.get(row["model"], row["model"]), text,
                       *(_outcome(c, kind) for c in [*row["cells"], row["avg"]])]
                      for row in entry["rows"] for kind, text in OUTCOMES.items()],
                keys=2,
                note="% of judged injection episodes [95% Wilson interval]: recovered (correct), followed "
                     "(final answer = the injected problem's), other wrong",
            ))
    return tables
