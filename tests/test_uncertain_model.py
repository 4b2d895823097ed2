"""The uncertainty trigger on the real SmolLM2 model, checked against a plain transformers forward pass."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch
from local_models import smol

from collab.cli import main
from collab.engines.base import GenerateRequest
from collab.engines.local.engine import load_model, locate
from collab.engines.logprobs import top_entropy
from collab.log.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
TOP = 20
SCENARIO = """\
name: uncertain-model
dataset: {{file: {data}, limit: 1}}
prompt: {{template: "{{problem}}"}}
engines: {{small: {{kind: local, model: {model}}}}}
agents: {{writer: {{engine: small, temperature: 0}}}}
graph:
  start: writer
  turns: {{writer: {{until: {{uncertain: {{entropy: {threshold}, top: {top}, chunk: 8}}, align: token}}}}}}
limits: {{max_tokens: 48}}
"""


def forward_entropies(gguf: Path, prompt: list[int], ids: list[int]) -> list[float]:
    """Top-k entropy of the distribution at each output position, from one forward pass without any cache."""
    folder, name = locate(str(gguf))
    model = load_model(folder, name, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + ids])).logits[0].float()
    logprobs = torch.log_softmax(logits[len(prompt) - 1 :], dim=-1)
    return [top_entropy(row.topk(TOP).values.tolist()) for row in logprobs]


@pytest.mark.model
def test_trigger_fires_where_the_forward_pass_entropy_crosses(smol_gguf: Path, tmp_path: Path) -> None:
    engine = smol(smol_gguf)
    data = ROOT / "scenarios/data/demo.jsonl"
    text = json.loads(data.read_text().splitlines()[0])["problem"]
    prompt = engine.tokenizer.render_prompt(text)
    greedy = asyncio.run(engine.generate(GenerateRequest(prompt, 40, temperature=0.0, logprobs=TOP)))
    assert greedy.logprobs is not None
    entropies = [lp.entropy for lp in greedy.logprobs]
    threshold = max(entropies[4:])  # first reached somewhere after the fourth token
    expected_at = next(t for t in range(1, len(entropies)) if entropies[t] >= threshold)

    (tmp_path / "s.yaml").write_text(SCENARIO.format(data=data, model=smol_gguf, threshold=threshold - 1e-4, top=TOP))
    out = tmp_path / "runs"
    assert main(["simulate", str(tmp_path / "s.yaml"), "--out", str(out), "--quiet"]) == 0
    (run,) = list(out.iterdir())
    (record,) = RunStore(run).episodes().values()
    turn = record.spans[0]
    kept = turn.ids[engine.tokenizer.key]
    profile = turn.uncertainty
    assert turn.trigger == "uncertain" and profile["at"] == len(kept) == expected_at
    assert kept == greedy.token_ids[:expected_at]

    reference = forward_entropies(smol_gguf, prompt, kept)  # positions 0..at: the crossing one included
    assert len(reference) == expected_at + 1
    tolerance = 0.005  # cached decoding and one full forward pass differ in rounding only
    crossing = next(t for t in range(1, len(reference)) if reference[t] >= threshold - tolerance)  # min_tokens: 1
    assert crossing == expected_at
    assert profile["crossed"] == pytest.approx(reference[-1], abs=0.01)
    assert [h / 10 for h in profile["entropy"]] == pytest.approx(reference[:-1], abs=0.06)
