"""One check says what a run folder is, with one error, for every command that reads one."""

from __future__ import annotations

from pathlib import Path

import pytest
from runlog import demo_run

from collab.log.store import EVENTS, MANIFEST, StoreError, open_run


def test_a_run_is_found_by_its_folder_or_its_log(tmp_path: Path) -> None:
    run = demo_run(tmp_path / "run")
    assert open_run(run).path == run
    assert open_run(run / EVENTS).path == run


def test_what_is_not_a_run_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=rf"is not a run folder \(no {EVENTS}\)"):
        open_run(tmp_path)
    with pytest.raises(StoreError, match=rf"is not a run folder \(no {EVENTS}\)"):
        open_run(tmp_path / "nowhere", live=True)
    assert open_run(tmp_path, live=True).path == tmp_path  # a run just starting has no log yet
    run = demo_run(tmp_path / "run")
    with pytest.raises(StoreError, match=rf"is not a run folder \(no {MANIFEST}\)"):
        open_run(run, needs=(MANIFEST,))


def test_rewrite_replaces_the_log_at_once(tmp_path: Path) -> None:
    store = open_run(demo_run(tmp_path / "run"))
    events = list(store.events())
    store.rewrite(e for e in store.events() if e.type != "run.end")
    assert [e.type for e in store.events()] == [e.type for e in events if e.type != "run.end"]
    assert not list(tmp_path.glob("run/*.tmp"))
