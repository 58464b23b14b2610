"""The numbers every scorer reports (`eval`, `ngram eval`, `compare`), from one formula, so RNN
and n-gram rows compare one to one. Torch-free: the n-gram commands use it.

    bits/char = nats per predicted token × tokens ÷ ln 2 ÷ characters scored

Two things make a score look better than it is, and both are reported, as KenLM reports OOVs:
- `<unk>` tokens: a word model gives one probability to every word it does not know, so a text
  full of unknown words scores well. Their count and share come with the score.
- characters dropped by `--unk skip` (char level): they are taken out of the character count,
  since no bits were spent on them.
"""

from __future__ import annotations

import math

import numpy as np

from charrnn.errors import UserError, option

UNK = "<unk>"


def unknown_count(tokenizer, ids: np.ndarray) -> int:
    """How many of ids are the tokenizer's `<unk>` (0 for a tokenizer without one)."""
    strings = tokenizer.token_strings()
    if UNK not in strings:
        return 0
    return int(np.count_nonzero(np.asarray(ids) == strings.index(UNK)))


def summarize(total_nats: float, scored: int, tokens: int, chars: int, unknown_tokens: int = 0,
              skipped_chars: int = 0) -> dict:
    if scored < 1:
        raise UserError("nothing to score: the text needs at least 2 tokens")
    per_token = total_nats / scored
    counted = max(1, chars - skipped_chars)
    return {"tokens": tokens, "chars": chars, "nats_per_token": per_token,
            "perplexity": math.exp(min(per_token, 700.0)),
            "bits_per_char": per_token * tokens / math.log(2) / counted,
            "unknown_tokens": unknown_tokens, "unknown_rate": unknown_tokens / max(1, tokens),
            "skipped_chars": skipped_chars}


def describe(result: dict) -> str:
    """The one-line human form of a score."""
    mix = result.get("mix")
    who = result["run"] if not mix else (f"{result['run']} ⊕ {mix['ngram']} (λ {mix['weight']:.3f}"
                                         f"{', tuned on val' if mix['tuned_on'] == 'val' else ''})")
    line = (f"{who} on {result['source']}: {result['tokens']:,} tokens, "
            f"{result['nats_per_token']:.4f} nats/token, perplexity {result['perplexity']:.3f}, "
            f"{result['bits_per_char']:.4f} bits/char")
    if mix:
        line += (f" (alone: the RNN {mix['lm_perplexity']:.3f}, the n-gram "
                 f"{mix['ngram_perplexity']:.3f})")
    return line + "".join(f"; {caveat}" for caveat in caveats(result))


def caveats(result: dict) -> list[str]:
    """What makes this score not quite comparable, in words (empty when nothing does)."""
    said = []
    if result.get("unknown_tokens"):
        said.append(f"{result['unknown_tokens']:,} tokens ({100 * result['unknown_rate']:.1f}%) "
                    "are <unk>, which stands for every unknown word, so this is optimistic")
    if result.get("skipped_chars"):
        count = result["skipped_chars"]
        said.append(f"{count:,} character{'s' * (count != 1)} outside the vocabulary skipped "
                    "(not counted)")
    return said


def scored(total_nats: float, predicted: int, ids: np.ndarray, chars: int, tokenizer,
           skipped: int) -> dict:
    """summarize() with the caveats counted: `<unk>` ids, and the characters `--unk skip` dropped
    (data.scoring_text says how many)."""
    return summarize(total_nats, predicted, len(ids), chars, unknown_count(tokenizer, ids), skipped)


def too_short(ids: np.ndarray, file: str | None, split: str | None, dataset_id: str,
              again: str) -> UserError:
    """The error for a text with fewer than 2 tokens, naming it and what to score instead."""
    if file is not None:
        named = "standard input" if file == "-" else file
        if len(ids) == 0:
            return UserError(f"{named} has no tokens: give a text file with text in it")
        return UserError(f"{named} has 1 token: eval predicts each token from those before it, so "
                         "it needs at least 2; give a longer text, or `charrnn score` it (each "
                         "line from a line start)")
    from charrnn.data import SPLITS, find_dataset

    split = split or "test"
    dataset = find_dataset(dataset_id)
    others = [s for s in SPLITS if s != split and dataset is not None and dataset.tokens(s) >= 2]
    instead = " or ".join(f"{option('split')} {s}" for s in others)
    what = (f"is empty (it was preprocessed without a {split} part)" if not len(ids) else
            f"has {len(ids)} token: at least 2 are needed to score it")
    return UserError(f"the {split} split of this run's dataset {what}: score "
                     f"{instead + ' or ' if instead else ''}a FILE ({again} FILE)")
