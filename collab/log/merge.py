"""Combine the run folders of a sharded run (or of several partial runs) into one run."""

from __future__ import annotations

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
)
from collab.report.summary import summarize

RUN_SUFFIX = re.compile(r"(-shard\d+of\d+)?-\d{8}-\d{6}-[0-9a-f]{6}$")
"""What ``collab simulate`` appends to the scenario's name: the shard, the time and a random id."""


def merge(runs: list[Path], out: Path, name: str | None = None) -> Path:
    """Write a new run holding every finished episode of ``runs`` once (``ok`` beats ``failed``)."""
    stores = [RunStore(path) for path in runs]
    manifests = [store.read_json(MANIFEST) for store in stores]
    for path, manifest in zip(runs, manifests):
        if manifest is None:
            raise StoreError(f"{path} is not a run folder (no {MANIFEST})")
    digests = {m["digest"] for m in manifests}
    if len(digests) != 1:
        raise StoreError("these runs are of different scenarios (digests " + ", ".join(sorted(digests)) + ")")
    chosen: dict[str, tuple[RunStore, EpisodeRecord]] = {}
    for store in stores:
        for episode_id, record in store.finished().items():
            held = chosen.get(episode_id)
            if held is None or (held[1].end.status == "failed" and record.end.status == "ok"):
                chosen[episode_id] = (store, record)
    base_name = name or RUN_SUFFIX.sub("", stores[0].path.name)
    target = RunStore.create(out, base_name + "-merged", time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6])
    shutil.copyfile(stores[0].path / SCENARIO, target.path / SCENARIO)
    manifest = {**manifests[0], "shard": None, "merged_from": [str(p) for p in runs]}
    target.write_json(MANIFEST, manifest)
    target.emit(RunStart(run_id=target.path.name, scenario=manifest.get("scenario", ""), digest=digests.pop(),
                         episodes=len(chosen)))
    for episode_id in sorted(chosen):
        _, record = chosen[episode_id]
        for event in [record.start, *record.spans, *record.values, *record.verdicts, record.end]:
            target.emit(event)
    target.emit(RunEnd(run_id=target.path.name, status="ok"))
    target.close()
    target.write_json(SUMMARY, summarize(target.episodes()))
    return target.path
