"""A short sample from a model while it trains (the training view shows one at each evaluation).

It must not disturb training: the Sampler draws from its own seeded generator (the global RNG
that dropout and data order use is untouched, so resumed runs stay exact), and the model is put
back in the mode it was in.
"""

from __future__ import annotations

import torch

from charrnn.lm.model import RNNLM
from charrnn.lm.sample import SampleOptions, Sampler, encode_prime

TOKENS = {"char": 240, "word": 50, "subword": 80}


def preview_text(model: RNNLM, device: torch.device, tokenizer, tokens: int | None = None,
                 temperature: float = 0.8, seed: int = 0) -> str:
    """`tokens` tokens from a line start; a fixed seed, so evals differ by the model only."""
    count = tokens or TOKENS.get(tokenizer.level, 100)
    was_training = model.training
    try:
        # Nothing compiled: capturing a CUDA graph mid-training would empty the allocator's
        # caches, and the CPU kernel's first compile would stall training for seconds.
        sampler = Sampler(model, device, SampleOptions(length=count, temperature=temperature,
                                                       seed=seed), compiled=False)
        prime = encode_prime(tokenizer, None, "error").ids
        ids = sampler.tokens(prime).take_all(count)[0].tolist()
    finally:
        model.train(was_training)
    if model.config.direction == "backward":
        ids.reverse()
    return tokenizer.decode(ids)
