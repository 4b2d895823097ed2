"""Paper-style tables from ``summary["twin_tests"]``: models as rows, positions as columns, Avg last."""

from __future__ import annotations

from typing import Any

from collab.report.section import Section


def label(key: str | None, value: Any) -> str:
    """A column heading: shares of a trace as percentages (``0.2`` -> ``20%``), anything else as is."""
    if key is not None and key.endswith("fraction") and isinstance(value, (int, float)) and 0 <= value <= 1:
        return f"{value:.0%}"
    return str(value)


def _percent(cell: dict[str, Any]) -> str:
    text = "-" if cell["accuracy"] is None else f"{100 * cell['accuracy']:.1f}"
    if cell.get("answer_in_prefix") is not None:
        text += f" ({100 * cell['answer_in_prefix']:.1f})"
    return text


def paper_tables(summary: dict[str, Any], name: str = "Twin tests") -> list[Section]:
    """One table per subset and sweep key; empty when the run has no twin tests."""
    found = (summary or {}).get("twin_tests") or {}
    tables = []
    for entry in found.get("tables", []):
        key = entry["key"]
        by = f", by {key.removeprefix('graph.').removeprefix('turns.')}" if key else ""
        guided = any(c["guide_prefixes"] for row in entry["rows"] for c in [*row["cells"], row["avg"]])
        counts = sorted({c["n"] for row in entry["rows"] for c in row["cells"]})
        note = "% of continuations with a correct final answer; Avg: over all of the row's items"
        if counts:
            note += f"; items per cell: {counts[0]}" + (f"–{counts[-1]}" if counts[-1] != counts[0] else "")
        if guided:
            note += "; (x): % of guide prefixes that already state the correct answer"
        tables.append(Section(
            title=f"{name}: {entry['subset']} subset{by}",
            columns=["model", *(label(key, v) for v in entry["columns"]), "Avg"],
            rows=[[row["model"], *map(_percent, row["cells"]), _percent(row["avg"])] for row in entry["rows"]],
            note=note,
        ))
    return tables
