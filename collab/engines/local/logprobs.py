"""Log-probabilities at the sampling point, for the rows whose request asks for them."""

from __future__ import annotations

import torch

from collab.engines.logprobs import TokenLogprob


def token_logprob(logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    """The chosen ``token``'s log-probability and the ``top`` best, from the raw logits (temperature 1)."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    best = logprobs.topk(min(top, logprobs.numel())).values if top > 0 else logprobs[:0]
    return TokenLogprob(float(logprobs[token]), tuple(best.tolist()))
