"""One writer per run folder: a second writer is refused at once, naming the first; readers never wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from collab.cli import main
from collab.log import merge as merge_module
from collab.log.store import RunStore, StoreError

ROOT = Path(__file__).resolve().parent.parent
RELAY = str(ROOT / "scenarios/relay.yaml")
SLOW = ["--set", "engines.small={kind: scripted, latency_s: 0.05}"]
HANGING = ["--set", "engines.small={kind: scripted, latency_s: 0.5}"]  # without --dry-run, which would replace it


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "collab.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_episodes(out: Path, count: int, process: subprocess.Popen) -> Path:
    while process.poll() is None:
        logs = list(out.glob("*/events.jsonl")) if out.exists() else []
        if logs and logs[0].read_bytes().count(b'"episode.end"') >= count:
            return logs[0].parent
        time.sleep(0.05)
    raise AssertionError(f"the writer ended early: {process.communicate()}")


def test_a_second_store_cannot_lock_a_locked_folder(tmp_path: Path) -> None:
    first = RunStore.create(tmp_path, "run", "1")
    with pytest.raises(StoreError, match=rf"being written by pid {os.getpid()} "):
        RunStore(first.path).lock()
    first.unlock()
    RunStore(first.path).lock()


@pytest.mark.slow
def test_two_writers_on_one_run_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    writer = start(["simulate", RELAY, "--limit", "10", "--samples", "6", "--concurrency", "2",
                    "--quiet", "--out", str(out), *HANGING])
    run = wait_for_episodes(out, 1, writer)
    log_before = (run / "events.jsonl").stat().st_ino
    took = {}
    for argv in (["simulate", "--resume", str(run), "--quiet"], ["judge", str(run)],
                 ["merge", str(run), "--out", str(tmp_path / "merged")], ["report", str(run), "--out", str(tmp_path)]):
        began = time.monotonic()
        status = main(argv)
        took[argv[0]] = time.monotonic() - began
        err = capsys.readouterr().err
        if argv[0] in ("merge", "report"):  # they only read the run: no lock needed
            assert status == 0, err
            continue
        assert status == 2 and f"being written by pid {writer.pid} (collab simulate" in err, err
    second = start(["simulate", "--resume", str(run), "--quiet"])
    _, err = second.communicate(timeout=120)
    assert writer.poll() is None, "the first writer was still running"
    assert second.returncode == 2 and f"pid {writer.pid}" in err
    writer.send_signal(signal.SIGINT)
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 130, err
    assert (run / "events.jsonl").stat().st_ino == log_before, "nobody replaced the log under the writer"
    events = list(RunStore(run).events())
    starts = Counter(e.episode_id for e in events if e.type == "episode.start")
    ends = Counter(e.episode_id for e in events if e.type == "episode.end")
    assert ends and set(ends.values()) == set(starts.values()) == {1}
    assert main(["judge", str(run)]) == 0, "the lock is free once the writer ends"
    print(f"two writers: resume refused in {took['simulate']:.3f} s, judge in {took['judge']:.3f} s, a second "
          f"process refused too; merge and report read meanwhile; {len(ends)} episodes ended, each once")


def test_a_killed_writer_leaves_the_folder_free(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    writer = start(["simulate", RELAY, "--limit", "10", "--samples", "6", "--concurrency", "2",
                    "--quiet", "--out", str(out), *SLOW])
    run = wait_for_episodes(out, 2, writer)
    writer.send_signal(signal.SIGKILL)
    writer.communicate()
    assert main(["simulate", "--resume", str(run), "--quiet"]) == 0


def test_a_failed_merge_leaves_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "runs"
    assert main(["simulate", RELAY, "--dry-run", "--limit", "3", "--quiet", "--out", str(out)]) == 0
    (run,) = out.iterdir()
    calls = Counter[str]()
    real = RunStore.emit

    def dying(self: RunStore, event) -> None:
        calls["emit"] += 1
        if calls["emit"] > 10:
            raise StoreError("disk gone")
        real(self, event)

    monkeypatch.setattr(RunStore, "emit", dying)
    merged = tmp_path / "merged"
    with pytest.raises(StoreError):
        merge_module.merge([run], merged)
    assert not merged.exists() or not any(merged.iterdir()), "no partial folder is left"
    monkeypatch.setattr(RunStore, "emit", real)
    path = merge_module.merge([run], merged)
    assert [p.name for p in merged.iterdir()] == [path.name] and (path / "manifest.json").exists()
