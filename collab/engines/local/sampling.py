"""Next-token sampling for every row of a decode step at once.

Softmax and the top-``k`` pre-filter run once for the whole batch: top-k and top-p then work on at
most :data:`CANDIDATES` sorted probabilities per row instead of sorting the vocabulary. A row falls
back to its full distribution only when its nucleus does not fit in the candidates, and one without
top-k or top-p is drawn from its unsorted distribution. Each row draws one uniform number from its
own generator and picks by inverse CDF, so its token depends only on its own logits, settings and
generator, never on the other rows of the batch. Rows whose request asks for log-probabilities get
them here too, from the same logits (see :func:`token_logprobs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from collab.engines.base import GenerateRequest
from collab.engines.logprobs import TokenLogprob

CANDIDATES = 256
"""Highest-probability tokens kept per row before top-k and top-p."""


def sample(logits: torch.Tensor, requests: Sequence[GenerateRequest],
           generators: Sequence[torch.Generator]) -> list[int]:
    """One token per row of ``logits`` (``[rows, vocab]``): greedy at temperature 0, else top-k, then top-p."""
    tokens: list[int] = logits.argmax(-1).tolist()
    hot = [i for i, request in enumerate(requests) if request.temperature > 0]
    if not hot:
        return tokens
    device = logits.device
    rows = logits[hot].float() if len(hot) < len(requests) else logits.float()
    temperature = torch.tensor([requests[i].temperature for i in hot], device=device)
    probs = torch.softmax(rows / temperature[:, None], dim=-1)
    top_k = torch.tensor([requests[i].top_k for i in hot], device=device)
    top_p = torch.tensor([requests[i].top_p for i in hot], device=device)
    uniform = torch.cat([torch.rand(1, generator=generators[i], device=generators[i].device) for i in hot]).to(device)

    vocab = probs.shape[-1]
    k = min(vocab, max(CANDIDATES, int(top_k.max())))
    candidates, order = probs.topk(k)
    plain = (top_k <= 0) & (top_p >= 1)
    spill = (top_k <= 0) & (top_p < 1) & (candidates.sum(-1) < top_p)  # the nucleus reaches past the candidates
    picked = order.gather(-1, _draw(candidates, top_k, top_p, uniform)[:, None])[:, 0]
    if plain.any():
        index = plain.nonzero()[:, 0]
        picked[index] = _inverse_cdf(probs[index], uniform[index])
    if spill.any():
        index = spill.nonzero()[:, 0]
        ranked, full_order = probs[index].sort(descending=True)
        picked[index] = full_order.gather(-1, _draw(ranked, top_k[index], top_p[index], uniform[index])[:, None])[:, 0]
    for j, token in zip(hot, picked.tolist(), strict=True):
        tokens[j] = token
    return tokens


def token_logprobs(logits: torch.Tensor, requests: Sequence[GenerateRequest],
                   tokens: Sequence[int]) -> list[TokenLogprob | None]:
    """Per row of ``logits``: the chosen token's log-probability and the best ``request.logprobs`` ones, from
    the raw logits (temperature 1), for the rows whose request asks for them (``None`` for the others)."""
    found: list[TokenLogprob | None] = [None] * len(requests)
    asked = [i for i, request in enumerate(requests) if request.logprobs is not None]
    if not asked:
        return found
    scores = torch.log_softmax(logits[asked].float(), dim=-1)
    chosen = torch.tensor([tokens[i] for i in asked], device=scores.device)
    picked = scores.gather(-1, chosen[:, None])[:, 0].tolist()
    top = min(scores.shape[-1], max(requests[i].logprobs or 0 for i in asked))
    best = scores.topk(top).values.tolist() if top > 0 else [[] for _ in asked]
    for j, i in enumerate(asked):
        found[i] = TokenLogprob(picked[j], tuple(best[j][: requests[i].logprobs]))
    return found


def _draw(ranked: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Column picked per row among probabilities sorted in descending order, after top-k then top-p."""
    columns = torch.arange(ranked.shape[-1], device=ranked.device)
    kept = ranked * ((top_k[:, None] <= 0) | (columns[None, :] < top_k[:, None]))
    kept = kept / kept.sum(-1, keepdim=True)  # top-p applies to the renormalised top-k
    kept = kept * ((kept.cumsum(-1) - kept) < top_p[:, None])  # always keeps the first
    return _inverse_cdf(kept, uniform)


def _inverse_cdf(weights: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Per row, the first column whose cumulative weight exceeds ``uniform`` times the row's total."""
    cumulative = weights.cumsum(-1)
    target = uniform[:, None] * cumulative[:, -1:]
    index = (cumulative <= target).sum(-1)
    return index.clamp(max=weights.shape[-1] - 1)
