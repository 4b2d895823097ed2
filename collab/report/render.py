"""A table for the terminal (Rich) and for ``report.md`` (Markdown); names are always shown literally."""

from __future__ import annotations

import html
import re

from rich.table import Table
from rich.text import Text

from collab.report.section import Section

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#!~])")


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
    """The table as Markdown."""
    def cells(row: list[str]) -> str:
        return "| " + " | ".join(map(markdown_text, row)) + " |"

    lines = [f"## {markdown_text(section.title)}", "", cells(section.columns),
             "|" + "|".join("---" if i < section.keys else "---:" for i in range(len(section.columns))) + "|"]
    lines += [cells(row) for row in section.rows]
    if section.note:
        lines += ["", f"*{markdown_text(section.note)}*"]
    return "\n".join(lines)
