"""A table for the terminal (Rich) and for ``report.md`` (Markdown)."""

from __future__ import annotations

from rich.table import Table

from collab.report.section import Section


def to_rich(section: Section) -> Table:
    """The table for the terminal."""
    table = Table(title=section.title, title_justify="left", title_style="bold", caption=section.note or None,
                  caption_justify="left", header_style="bold")
    for index, column in enumerate(section.columns):
        table.add_column(column, justify="left" if index < section.keys else "right")
    for row in section.rows:
        table.add_row(*row)
    return table


def to_markdown(section: Section) -> str:
    """The table as Markdown."""
    def cells(row: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

    lines = [f"## {section.title}", "", cells(section.columns),
             "|" + "|".join("---" if i < section.keys else "---:" for i in range(len(section.columns))) + "|"]
    lines += [cells(row) for row in section.rows]
    if section.note:
        lines += ["", f"*{section.note}*"]
    return "\n".join(lines)
