"""Authoring commands: new, graph, validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from collab.cli import main
from collab.scenario.templates import TEMPLATES


@pytest.mark.parametrize("template", TEMPLATES)
def test_new_writes_a_valid_runnable_starter(tmp_path: Path, capsys, template: str) -> None:
    path = tmp_path / "mine" / f"{template}.yaml"
    assert main(["new", template, str(path)]) == 0
    assert (tmp_path / "mine" / "demo.jsonl").exists() and path.read_text().startswith("#")
    assert main(["validate", str(path)]) == 0
    assert main(["simulate", str(path), "--dry-run", "--limit", "1", "--samples", "1", "--quiet",
                 "--out", str(tmp_path / "runs")]) == 0
    assert main(["new", template, str(path)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err


def test_graph_draws_turns_agents_and_edges(capsys) -> None:
    assert main(["graph", "scenarios/interjector.yaml"]) == 0
    out = capsys.readouterr().out
    assert "[solver] solver on model: until tokens=64" in out
    assert "[heckler] heckler: injects" in out and "└─> solver2" in out
