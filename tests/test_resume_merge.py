"""Resume and merge keep what the first run set and counted: concurrency, engine counters, the name."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import yaml

from collab import cli
from collab.engines import scripted
from collab.sim.driver import add_counters

ROOT = Path(__file__).resolve().parent.parent
RELAY = str(ROOT / "scenarios" / "relay.yaml")


@dataclass
class Counted:
    requests: int = 0
    max_batch: int = 0


class CountingEngine(scripted.ScriptedEngine):
    """A scripted engine that counts like the local engine does, and forgets its counts on close."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stats = Counted()

    async def generate(self, request):
        self.stats.requests += 1
        self.stats.max_batch = 1
        return await super().generate(request)

    def counters(self) -> dict:
        return asdict(self.stats)

    async def aclose(self) -> None:
        self.stats = Counted()


def test_counters_add_up_and_levels_keep_the_larger() -> None:
    earlier = {"requests": 22, "max_batch": 4, "errors": {"timeout": 1}, "model": "m"}
    assert add_counters(earlier, {"requests": 3, "max_batch": 2, "errors": {"timeout": 2, "reset": 1}}) == {
        "requests": 25, "max_batch": 4, "errors": {"timeout": 3, "reset": 1}, "model": "m"}


def test_engine_counters_survive_close_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scripted, "ScriptedEngine", CountingEngine)
    assert cli.main(["simulate", RELAY, "--dry-run", "--limit", "1", "--samples", "2", "--quiet",
                     "--out", str(tmp_path)]) == 0
    run = next(tmp_path.iterdir())
    first = json.loads((run / "summary.json").read_text())["engines"]["small"]
    assert first["requests"] > 0  # read before the engine closed
    events = (run / "events.jsonl").read_text().splitlines()
    last_start = max(i for i, line in enumerate(events) if '"episode.start"' in line)
    (run / "events.jsonl").write_text("\n".join(events[:last_start]) + "\n")  # as if killed: one episode lost
    assert cli.main(["simulate", "--resume", str(run), "--quiet"]) == 0
    after = json.loads((run / "summary.json").read_text())
    assert after["ok"] == 2 and after["engines"]["small"]["requests"] > first["requests"]


def test_concurrency_is_kept_for_resume(tmp_path: Path) -> None:
    assert cli.main(["simulate", RELAY, "--dry-run", "--limit", "1", "--samples", "1", "--concurrency", "3",
                     "--quiet", "--out", str(tmp_path)]) == 0
    run = next(tmp_path.iterdir())
    assert yaml.safe_load((run / "scenario.yaml").read_text())["concurrency"] == 3


def test_merge_keeps_the_scenario_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for shard in ("0/2", "1/2"):
        assert cli.main(["simulate", RELAY, "--dry-run", "--limit", "2", "--samples", "1", "--shard", shard,
                         "--set", "name=relay4-branch", "--quiet", "--out", str(tmp_path / "shards")]) == 0
    shards = sorted(map(str, (tmp_path / "shards").iterdir()))
    assert all(Path(s).name.startswith("relay4-branch-shard") for s in shards)
    assert cli.main(["merge", *shards, "--out", str(tmp_path / "merged")]) == 0
    [merged] = (tmp_path / "merged").iterdir()
    assert merged.name.startswith("relay4-branch-merged-")
