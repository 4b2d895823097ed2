"""Reports: tables, report.md, PNG plots, comparisons."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image
from rich.console import Console
from runlog import demo_run

from collab import cli
from collab.report.combine import combine, merge_tables, short_names
from collab.report.figures import wilson
from collab.report.plots import DPI, FIGSIZE
from collab.report.rundata import RunData
from collab.report.section import Section
from collab.report.sections import sections

ROOT = Path(__file__).resolve().parent.parent
SIZE = (int(FIGSIZE[1] * DPI), int(FIGSIZE[0] * DPI))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    status = cli.main(["simulate", str(ROOT / "scenarios" / "interjector.yaml"), "--dry-run", "--out", str(out),
                       "--quiet"])
    assert status == 0
    (run,) = out.iterdir()
    return run


@pytest.fixture
def judged(tmp_path: Path) -> Path:
    return demo_run(tmp_path / "judged")


def png(path: Path) -> np.ndarray:
    pixels = image.imread(path)
    assert pixels.shape[:2] == SIZE
    assert pixels.std() > 0.01, f"{path.name} is blank"
    return pixels


def test_report_on_a_dry_run_writes_markdown_and_plots(dry_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(dry_run)]) == 0
    out = capsys.readouterr().out
    for title in ("Overview", "Accuracy per sweep point", "Per agent", "Handoffs", "Engines"):
        assert title in out
    markdown = (dry_run / "report.md").read_text(encoding="utf-8")
    assert markdown.startswith(f"# Report: {dry_run.name}")
    assert "| tokens=32 | 8 |" in markdown and "| tokens=96 | 8 |" in markdown
    assert re.search(r"\| solver \|  \| \d+ · 0.0% \|", markdown)
    assert "![accuracy](plots/accuracy.png)" in markdown and "![handoffs](plots/handoffs.png)" in markdown
    png(dry_run / "plots" / "accuracy.png")
    png(dry_run / "plots" / "handoffs.png")
    assert (dry_run / "plots" / "values.png").stat().st_size > 0  # the scenario judges with the answers method


def test_judge_figures_reach_tables_and_value_plot(judged: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli.main(["report", str(judged), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text(encoding="utf-8")
    # per agent: derailed, rescued (ep1: b derailed span 1, a rescued span 3; ep2: heckler derailed span 2)
    assert "| a | 6 | 78 | 3 | 66.7% | 0 | 1 |" in markdown
    assert "| b | 3 | 39 | 3 | 66.7% | 1 | 0 |" in markdown
    assert "| heckler | 3 | 24 | 3 | 66.7% | 1 | 0 |" in markdown
    assert "| tokens=96 | 1 | 0 (0.0%) | 1 (100.0%) | 0 (0.0%) | 0 (0.0%) |" in markdown
    assert "| b |  |  | 3 · 66.7% ▼1 |" in markdown and "| heckler | 3 · 66.7% ▲1 |" in markdown
    assert "![values](plots/values.png)" in markdown
    pixels = png(out / "plots" / "values.png")
    assert pixels.shape[2] in (3, 4)
    assert not (judged / "report.md").exists()


def test_compare_puts_runs_side_by_side(dry_run: Path, judged: Path, tmp_path: Path) -> None:
    console = Console(record=True, width=200, file=io.StringIO())
    from collab.report.tables import report

    assert report([dry_run, judged], tmp_path, console) == 0
    text = console.export_text()
    overview = text[text.index("Overview"):text.index("Accuracy per sweep point")]
    assert "interjector" in overview and "judged" in overview
    assert "accuracy" in overview and "0.0% of 16" in overview and "66.7% of 3" in overview
    assert "Handoffs: row → column · interjector" in text and "Handoffs: row → column · judged" in text
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert f"# Report: {dry_run.name} vs judged" in markdown
    assert "| metric | interjector · scripted | judged |" in markdown  # scenario · model
    for name in ("accuracy", "handoffs", "values"):
        png(tmp_path / "plots" / f"{name}.png")


def test_merge_lines_runs_up_on_keys() -> None:
    one = Section("t", ["k", "v"], [["a", "1"], ["b", "2"]])
    two = Section("t", ["k", "v"], [["b", "3"], ["c", "4"]])
    assert merge_tables(["x", "y"], [one, two]).rows == [["a", "1", ""], ["b", "2", "3"], ["c", "", "4"]]
    wide = Section("t", ["k", "v", "w"], [["a", "1", "2"]])
    merged = merge_tables(["x", "y"], [wide, None])
    assert merged.columns == ["k", "run", "v", "w"] and merged.rows == [["a", "x", "1", "2"]] and merged.keys == 2


def test_combine_keeps_the_order_of_sections_only_some_runs_have() -> None:
    def table(title: str, *columns: str) -> Section:
        return Section(title, ["k", *columns], [["a", *("1" for _ in columns)]])

    one = [table("Overview", "v"), table("Per agent", "n", "m"), table("Handoffs", "a")]
    two = [table("Overview", "v"), table("Per agent", "n", "m"), table("Outcomes", "r", "s"), table("Handoffs", "b")]
    titles = [s.title for s in combine(["x", "y"], [one, two])]
    assert titles == ["Overview", "Per agent", "Outcomes", "Handoffs · x", "Handoffs · y"]


def test_short_names() -> None:
    paths = [Path("relay-20260101-120000-abcdef"), Path("relay-20260101-130000-123456"), Path("other")]
    assert short_names(paths) == ["relay-abcdef", "relay-123456", "other"]
    assert short_names(paths[:1]) == ["relay"]


def test_wilson_interval() -> None:
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 16)[1] == pytest.approx(0.1936, abs=1e-4)
    assert wilson(0, 0) is None


def test_sections_skip_what_a_run_lacks(judged: Path) -> None:
    titles = [s.title if s else None for s in sections(RunData.load(judged))]
    assert titles[:2] == ["Overview", "Accuracy per sweep point"]
    assert "Injection outcomes" in titles


def test_report_of_a_missing_run_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
