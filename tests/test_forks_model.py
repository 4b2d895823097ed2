"""Forks on the relay scenario with the real SmolLM2 model: the radix cache computes the shared prefixes once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from local_models import smol  # noqa: F401  (sets torch to one thread: much faster on a shared machine)

from collab.cli import main
from collab.engines.base import Completion, GenerateRequest
from collab.engines.local.engine import LocalEngine
from collab.log.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
FORKS = "judge.forks={at: all, alternatives: [same, b], samples: 2, max_tokens: 24, answer_tokens: 8}"
"""Alternatives that sample at temperature 0.6 and 0.9: the unique-token count merges identical samples, which
every engine computes once per sample (agent c, at 0.3, often draws the same 24 tokens twice)."""


def unique_tokens(sequences: list[list[int]]) -> int:
    """Nodes of the token trie over ``sequences``: what a perfect prefix cache computes once."""
    root: dict[int, dict] = {}
    count = 0
    for sequence in sequences:
        node = root
        for token in sequence:
            if token not in node:
                node[token] = {}
                count += 1
            node = node[token]
    return count


@pytest.mark.model
def test_relay_forks_compute_each_token_once(smol_gguf: Path, tmp_path: Path, monkeypatch) -> None:
    sequences: list[list[int]] = []
    generate = LocalEngine.generate

    async def recorded(self: LocalEngine, request: GenerateRequest) -> Completion:
        completion = await generate(self, request)
        sequences.append(list(request.input_ids) + completion.token_ids)
        return completion

    monkeypatch.setattr(LocalEngine, "generate", recorded)
    out = tmp_path / "runs"
    assert main(["simulate", str(ROOT / "scenarios/relay.yaml"), "--model", str(smol_gguf), "--limit", "1",
                 "--samples", "2", "--out", str(out), "--quiet", "--set", "limits.max_turns=3",
                 *(f"--set=graph.turns.{t}.until={{tokens: 16, align: token}}" for t in "abc"), "--set", FORKS]) == 0
    (run,) = list(out.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    stats = summary["engines"]["small"]
    computed = stats["prefill_tokens"] + stats["decode_tokens"]
    forks = summary["forks"]
    ratio = computed / unique_tokens(sequences)
    print(f"computed {computed} / unique {unique_tokens(sequences)} = {ratio:.3f}; forks {forks}")
    assert forks["continuations"] > 0 and forks["requests"] >= forks["continuations"]
    records = RunStore(run).episodes().values()
    assert all(f.boundary >= 1 and f.samples == 2 for r in records for f in r.forks)
    assert ratio <= 1.1
