"""The first minutes of a new user: a missing model file, an offline machine, the quick start itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RELAY = str(ROOT / "scenarios" / "relay.yaml")


def collab(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collab.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=600)


def test_a_missing_model_file_says_no_such_file_and_leaves_no_run(tmp_path: Path) -> None:
    done = collab("simulate", RELAY, "--model", str(tmp_path / "nope.gguf"), "--out", str(tmp_path / "runs"))
    assert done.returncode == 1
    assert f"no such file or folder: {tmp_path / 'nope.gguf'}" in done.stderr
    assert "Traceback" not in done.stderr and "huggingface.co/" not in done.stderr
    assert not list((tmp_path / "runs").glob("*"))


def test_offline_the_first_hub_failure_ends_the_run_with_the_model_hint(tmp_path: Path) -> None:
    offline = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path)}
    done = collab("simulate", RELAY, "--out", str(tmp_path / "runs"), "--quiet", env=offline)
    assert done.returncode == 1, done.stderr
    assert "cannot fetch HuggingFaceTB/SmolLM2-135M-Instruct from the hub" in done.stderr
    assert "--model PATH" in done.stderr and "Retrying" not in done.stderr
    assert not list((tmp_path / "runs").glob("*"))  # the run never started: nothing to resume


def checkout_copy(target: Path) -> Path:
    """The project's tracked files (what a fresh clone holds), copied to ``target``."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.mark.slow
def test_readme_quick_start_in_a_fresh_venv(tmp_path: Path, smol_gguf: Path) -> None:
    """The README's install command in a new virtual environment, then its main job with ``--model``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    install, run = (line.strip() for line in block.strip().splitlines()[:2])
    assert install.startswith("pip install torch==") and "pip install -e ." in install
    assert run == "collab simulate scenarios/relay.yaml"
    checkout = checkout_copy(tmp_path / "collab")
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    subprocess.run(install, shell=True, cwd=checkout, env=env, check=True, capture_output=True, timeout=1800)
    packages = subprocess.run([bin_dir / "python", "-m", "pip", "list"], env=env, capture_output=True, text=True,
                              check=True).stdout.lower()
    assert "torch " in packages and "nvidia" not in packages and "triton" not in packages
    done = subprocess.run(f"{run} --model {smol_gguf} --quiet", shell=True, cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "6 episodes ok, 0 failed" in done.stdout and "run: runs/relay-" in done.stdout
    assert "engines ready in" in done.stderr and "Loading weights" not in done.stderr
