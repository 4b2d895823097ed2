"""Commented starter scenarios for ``collab new``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

TEMPLATES = ("relay", "weak-then-strong", "interjector")
DEMO_DATA = "demo.jsonl"


def write_template(name: str, path: Path) -> list[Path]:
    """Write template ``name`` to ``path`` (and the demo problems beside it); returns what was written."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose one of {', '.join(TEMPLATES)}")
    folder = resources.files("collab.scenario") / "templates"
    if path.exists():
        raise FileExistsError(f"{path} exists; not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((folder / f"{name}.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    written = [path]
    data = path.parent / DEMO_DATA
    if not data.exists():
        data.write_text((folder / DEMO_DATA).read_text(encoding="utf-8"), encoding="utf-8")
        written.append(data)
    return written
