"""Combine the run folders of a sharded run (or of several partial runs) into one run."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

from collab.events import RunEnd, RunStart
from collab.log.store import (
    MANIFEST,
    SCENARIO,
    SUMMARY,
    EpisodeRecord,
    RunStore,
    StoreError,
    safe_name,
)
from collab.report.summary import summarize

RUN_SUFFIX = re.compile(r"(-shard\d+of\d+)?-\d{8}-\d{6}-[0-9a-f]{6}$")
"""What ``collab simulate`` appends to the scenario's name: the shard, the time and a random id."""


def merge(runs: list[Path], out: Path, name: str | None = None) -> Path:
    """Write a new run holding every finished episode of ``runs`` once (``ok`` beats ``failed``).

    The run is written into a hidden temporary folder beside its destination and renamed into place
    only when complete, so a killed merge never leaves a folder that looks like a run.
    """
    stores = [RunStore(path) for path in runs]
    manifests = [store.read_json(MANIFEST) for store in stores]
    for path, manifest in zip(runs, manifests, strict=True):
        if not isinstance(manifest, dict) or not isinstance(manifest.get("digest"), str):
            raise StoreError(f"{path} is not a run folder (no readable {MANIFEST})")
    digests = {m["digest"] for m in manifests}
    if len(digests) != 1:
        raise StoreError("these runs are of different scenarios (digests " + ", ".join(sorted(digests)) + ")")
    chosen: dict[str, EpisodeRecord] = {}
    for store in stores:
        for episode_id, record in store.finished().items():
            held = chosen.get(episode_id)
            if held is None or (held.end and held.end.status == "failed" and record.end and record.end.status == "ok"):
                chosen[episode_id] = record
    base_name = name or RUN_SUFFIX.sub("", stores[0].path.name)
    final = f"{safe_name(base_name + '-merged')}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    target = RunStore.create_at(Path(out) / f".{final}.partial")
    try:
        _write(target, final, stores[0], manifests[0], runs, digests.pop(), chosen)
        destination = Path(out) / final
        os.rename(target.path, destination)
    except BaseException:
        target.unlock()
        shutil.rmtree(target.path, ignore_errors=True)
        raise
    target.unlock()
    return destination


def _write(target: RunStore, run_id: str, first: RunStore, manifest: dict, runs: list[Path], digest: str,
           chosen: dict[str, EpisodeRecord]) -> None:
    try:
        target.replace(SCENARIO, (first.path / SCENARIO).read_bytes())
    except OSError as error:
        raise StoreError(f"cannot read {first.path / SCENARIO}: {error.strerror or error}") from error
    target.emit(RunStart(run_id=run_id, scenario=str(manifest.get("scenario", "")), digest=digest,
                         episodes=len(chosen)))
    for episode_id in sorted(chosen):
        record = chosen[episode_id]
        for event in [record.start, *record.spans, *record.values, *record.verdicts, record.end]:
            if event is not None:
                target.emit(event)
    target.emit(RunEnd(run_id=run_id, status="ok"))
    target.close()
    target.write_json(SUMMARY, summarize(target.episodes()))
    target.write_json(MANIFEST, {**manifest, "shard": None, "merged_from": [str(p) for p in runs]})  # last: a run
