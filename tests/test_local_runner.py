"""The relay scenario on the real SmolLM2 model: token-exact append-only traces, cache-invariant output."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from collab.cli import main
from collab.engines.local.engine import LocalEngine
from collab.log.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
GREEDY = ["--set", "agents.a.temperature=0", "--set", "agents.b.temperature=0", "--set", "agents.c.temperature=0",
          "--set", "limits.max_tokens=72"]
pytestmark = pytest.mark.model


def relay(out: Path, model: Path, *extra: str) -> Path:
    assert main(["simulate", str(ROOT / "scenarios/relay.yaml"), "--model", str(model), "--limit", "1",
                 "--samples", "2", "--quiet", "--out", str(out), *GREEDY, *extra]) == 0
    (path,) = out.iterdir()
    return path


def test_each_request_extends_the_episode_and_cache_changes_nothing(tmp_path: Path, smol_gguf: Path,
                                                                     monkeypatch) -> None:
    requests: dict[str, list[tuple[list[int], list[int]]]] = {}
    generate = LocalEngine.generate

    async def recording(self, request):
        completion = await generate(self, request)
        if request.context.purpose != "rollout":  # the judge's probes branch off the trace; turns extend it
            requests.setdefault(request.context.episode_id, []).append((list(request.input_ids), completion.token_ids))
        return completion

    monkeypatch.setattr(LocalEngine, "generate", recording)
    cached = relay(tmp_path / "cached", smol_gguf)
    assert len(requests) == 2
    for sequence in requests.values():
        assert len(sequence) >= 2
        for (before, output), (after, _) in itertools.pairwise(sequence):
            assert after[: len(before) + len(output)] == before + output
    records = RunStore(cached).episodes()
    assert all(r.end.status == "ok" for r in records.values())
    assert all(span.extends for r in records.values() for span in r.spans if span.type == "turn")
    assert sum(r.end.cached_tokens for r in records.values()) > 0
    counted = json.loads((cached / "summary.json").read_text())["engines"]["small"]
    assert counted["requests"] == sum(len(sequence) for sequence in requests.values())
    assert counted["cached_tokens"] > 0, "counted before the engine closed"

    uncached = relay(tmp_path / "uncached", smol_gguf, "--set", "engines.small.cache=false")

    def texts(path: Path) -> dict[tuple[str, int], list[str]]:  # the engine setting changes episode ids
        return {(r.start.problem_id, r.start.sample): [s.text for s in r.spans]
                for r in RunStore(path).episodes().values()}

    assert texts(cached) == texts(uncached)
