"""A report table as plain data: the report and the paper's tables both produce these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Section:
    """One table. The first ``keys`` columns name a row; a comparison lines runs up on them."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    keys: int = 1
    note: str = ""
