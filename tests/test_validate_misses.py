"""What validate used to miss: templates, missing files, --set errors, sweep typos, --dry-run and --model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from collab import cli
from collab.scenario import ScenarioError, load
from collab.sim.runner import RunOptions, shortcut_overrides

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def relay(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "scenarios" / "data", tmp_path / "data")
    shutil.copy(ROOT / "scenarios" / "relay.yaml", tmp_path / "relay.yaml")
    return tmp_path / "relay.yaml"


def problems(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load(path, overrides)
    return [str(problem) for problem in caught.value.problems]


def edit(path: Path, change) -> Path:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_template_without_problem(relay: Path) -> None:
    edit(relay, lambda d: d.update(prompt={"template": "Solve it."}))
    [line] = problems(relay)
    assert line.startswith(f"{relay}:") and "prompt.template: the template must contain {problem}" in line


def test_a_dataset_file_that_does_not_exist(relay: Path) -> None:
    edit(relay, lambda d: d["dataset"].update(file="data/missing.jsonl"))
    [line] = problems(relay)
    text = relay.read_text().splitlines()
    row = next(i for i, t in enumerate(text, 1) if "missing.jsonl" in t)
    assert line.startswith(f"{relay}:{row}:") and line.endswith("dataset.file: no such file: data/missing.jsonl")


def test_set_errors_name_the_override_not_a_line(relay: Path) -> None:
    [line] = problems(relay, ["agents.a.temperature=hot"])
    assert line.startswith("--set agents.a.temperature=hot: agents.a.temperature: Input should be a valid number")


@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_a_malformed_set_value_is_an_error(relay: Path, extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["simulate", str(relay), "--set", "engines.small={kind: local", *extra, "--out", "unused"])
    err = capsys.readouterr().err
    assert status == 2 and "--set engines.small={kind: local: engines.small: the value is not valid YAML" in err


def test_dry_run_keeps_scripted_settings_given_with_set(relay: Path) -> None:
    options = RunOptions(overrides=["engines.small.latency_s=0.25"], dry_run=True)
    loaded = load(relay, shortcut_overrides(relay, options))
    engine = loaded.scenario.engines["small"]
    assert engine.kind == "scripted" and engine.latency_s == 0.25


def test_a_misspelled_sweep_path_names_the_typo(relay: Path) -> None:
    edit(relay, lambda d: d.update(sweep={"turns.a.untl.tokens": [32, 64]}))
    [line] = problems(relay)
    assert "sweep.turns.a.untl.tokens: no `untl` in graph.turns.a: unknown key `untl` (did you mean `until`?)" in line


def test_a_sweep_over_a_default_field_is_fine(relay: Path) -> None:
    edit(relay, lambda d: d.update(sweep={"agents.a.top_k": [5, 10]}))
    assert len(load(relay).points) == 2


def test_model_over_different_models_says_so() -> None:
    said: list[str] = []
    path = ROOT / "scenarios" / "weak_then_strong.yaml"
    shortcut_overrides(path, RunOptions(model="m.gguf", warn=said.append))
    assert len(said) == 1 and "--model runs m.gguf for every local engine" in said[0]
    said.clear()
    shortcut_overrides(ROOT / "scenarios" / "relay.yaml", RunOptions(model="m.gguf", warn=said.append))
    assert said == []  # one model anyway


def test_a_resumed_run_does_not_check_files_from_its_folder(relay: Path, tmp_path: Path) -> None:
    assert cli.main(["simulate", str(relay), "--dry-run", "--limit", "1", "--samples", "1", "--quiet",
                     "--out", str(tmp_path / "runs")]) == 0
    run = next((tmp_path / "runs").iterdir())
    assert cli.main(["simulate", "--resume", str(run), "--quiet"]) == 0
