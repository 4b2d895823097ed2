"""Ctrl-C at any moment of a run: no traceback, the real folder in the hint (or nothing left behind)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["simulate", str(ROOT / "scenarios/relay.yaml"), "--limit", "10", "--samples", "4", "--concurrency", "2",
        "--quiet", "--set", "engines.small={kind: scripted, latency_s: 0.05}"]


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2])
@pytest.mark.parametrize("delay", [0.1, 0.4, 0.8, 1.5, 3.0, 5.0])
def test_ctrl_c_at_any_moment(tmp_path: Path, delay: float, presses: int) -> None:
    out = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "collab.cli", *ARGS, "--out", str(out)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    pressed = time.monotonic()
    for _ in range(presses):
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
    _, err = process.communicate(timeout=60)
    took = time.monotonic() - pressed
    if "init_import_site" in err:  # Python itself was still starting: no collab code had run yet
        assert f"{Path('collab', 'cli.py')}" not in err and "/collab/" not in err, err
        return
    assert "Traceback" not in err, err
    runs = list(out.iterdir()) if out.exists() else []
    hint = re.search(r"--resume (\S+)", err)
    if process.returncode == 0:  # it finished before the key was pressed
        return
    assert process.returncode in (130, -signal.SIGINT), err
    if hint:
        assert (tmp_path / hint.group(1)).resolve() == runs[0].resolve() and (runs[0] / "manifest.json").exists()
    else:
        assert not runs, f"no hint, yet a folder was left: {runs} ({err})"
    print(f"Ctrl-C x{presses} at {delay:g} s: exit {process.returncode} after {took:.2f} s, "
          f"{'hint ' + hint.group(1) if hint else 'nothing saved'}")
