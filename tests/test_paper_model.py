"""Recoverability with the real SmolLM2 model on the local engine, then ``collab report``'s table.

The pool is the recorded R1-Distill-Qwen-1.5B one (SmolLM2 solves nothing 8/8, so a solo stage would
select no problem); the model continues each stitched trace for a few tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collab.cli import main

ROOT = Path(__file__).resolve().parent.parent
POOL = "data/trajectories/reasoning/R1-Distill-Qwen-1.5B.jsonl"

pytestmark = pytest.mark.model


def test_recoverability_on_smollm2_then_the_report_table(shared: Path, smol_gguf: Path, tmp_path: Path,
                                                         capsys) -> None:
    pytest.importorskip("collab.engines.local.engine")
    out = tmp_path / "runs"
    args = ["simulate", str(ROOT / "scenarios/paper/recoverability.yaml"), "--model", str(smol_gguf), "--limit", "1",
            "--out", str(out), "--quiet", "--concurrency", "1",
            "--set", f"pools.solo={{files: [{shared / POOL}], agent: model}}", "--set", "dataset={pool: solo}",
            "--set", "agents.model.max_new_tokens=8"]
    assert main(args) == 0
    (run,) = list(out.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ok"] == 5 and summary["failed"] == 0
    assert summary["tokens"]["requests_extending_previous"] == 1.0
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "Twin tests: shared subset" in printed and "Twin tests: individual subset" in printed
    header = next(line for line in printed.splitlines() if "80%" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == ["model", "0%", "20%", "40%", "60%", "80%", "Avg"]
    assert "## Twin tests: shared subset, by own.seed.fraction" in (run / "report.md").read_text()
