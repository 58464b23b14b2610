"""`charrnn eval` of a language model: nats/token, perplexity and bits per character.

Bits per character (total bits ÷ Unicode characters) puts char, word, subword and n-gram models on
one scale. The first token of a text has no left context, so the mean over the N-1 predicted tokens
stands for all N tokens. With `--mix`, the per-token interpolation with an n-gram (mix.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from charrnn import checkpoint, data, runs
from charrnn.devices import keeps_global_rng, resolve_device, resolve_precision
from charrnn.errors import UserError, diverged, option
from charrnn.evaluation.scores import scored, too_short
from charrnn.lm.batching import oriented
from charrnn.lm.model import load_lm
from charrnn.lm.scoring import score_ids, token_nll
from charrnn.tokenizers import check_unknown_policy, refuse_idle_unk
from charrnn.training.config import PRECISIONS


def _lm_checkpoint(spec: str | None, root: Path) -> checkpoint.Checkpoint:
    """RUN → its checkpoint, refusing other run kinds first (a tagger's tokenizer or an n-gram
    run would otherwise fail with a misleading message)."""
    try:
        folder = runs.resolve_run(spec, root, kind="lm")
    except UserError:
        folder = None  # a checkpoint path outside a run: checkpoint.resolve reports it
    if folder is not None:
        runs.check_kind(folder, runs.run_info(folder).get("kind"), "lm", "eval")
    ckpt = checkpoint.resolve(spec, root)
    runs.check_kind(ckpt.run_folder, ckpt.task, "lm", "eval")
    return ckpt


@keeps_global_rng
def evaluate_run(spec: str | None, root: Path, file: str | None = None, split: str | None = None,
                 device: str = "auto", unknown: str | None = None, errors: str = "strict",
                 precision: str = "fp32", mix: str | None = None,
                 mix_weight: float | None = None, refuse_idle: bool = True,
                 say: Callable[[str], None] | None = None) -> dict:
    """`charrnn eval`: score a checkpoint on a file or on a split of its own dataset (with `mix`,
    its interpolation with that n-gram run; `say` hears when its weight is tuned). float32 by
    default whatever the run trained in, so that figures compare (bf16 rounds each logit to ~3
    significant digits)."""
    if mix is None and mix_weight is not None:
        raise UserError(f"{option('mix_weight')} applies with {option('mix')} NGRAM_RUN")
    if precision not in PRECISIONS:  # (a library call's: it raised KeyError deep down)
        raise UserError(f"{option('precision')} must be one of {', '.join(PRECISIONS)}, not "
                        f"{precision!r}")
    check_unknown_policy(unknown)
    ckpt = _lm_checkpoint(spec, root)
    if refuse_idle:  # (compare asks a skip of its char runs, and scores the others as they are)
        refuse_idle_unk(ckpt.tokenizer.level, unknown)
    dev = resolve_device(device)
    computed, _ = resolve_precision(precision, dev)
    tokenizer = ckpt.tokenizer
    dataset_id = (ckpt.meta.get("dataset") or {}).get("id", "")
    again = f"charrnn eval {ckpt.run_folder.name}"
    ids, n_chars, source, skipped = data.scoring_text(tokenizer, dataset_id, file, split,
                                                      unknown or "error", errors, again)
    if len(ids) < 2:
        raise too_short(ids, file, split, dataset_id, again)
    model = load_lm(ckpt, dev)

    def rnn_logp(ids: np.ndarray) -> np.ndarray:
        return -token_nll(model, oriented(ids, model.config.direction), dev, precision=computed)

    extra: dict = {}
    if mix is None:
        total, predicted = score_ids(model, oriented(ids, model.config.direction), dev,
                                     precision=computed)
    else:
        total, predicted, extra = _mixed_total(ckpt, rnn_logp, ids, mix, root, mix_weight, say)
    if not math.isfinite(total):  # (it printed 'nan nats/token' and exit 0)
        raise diverged(f"on {'standard input' if file == '-' else file}" if file else
                       f"on the {split or 'test'} split")
    progress = ckpt.meta.get("progress", {})
    return {"run": ckpt.run_folder.name, "kind": "lm" if mix is None else "mix",
            "checkpoint": str(ckpt.folder), "source": source,
            **scored(total, predicted, ids, n_chars, tokenizer, skipped),
            "params": model.num_parameters(), "train_seconds": progress.get("elapsed"),
            "precision": computed, **extra}


def _mixed_total(ckpt: checkpoint.Checkpoint, rnn_logp, ids: np.ndarray, spec: str, root: Path,
                 weight: float | None, say) -> tuple[float, int, dict]:
    from charrnn.evaluation.mix import mixed_logp, mixture_for

    mixture = mixture_for(ckpt, rnn_logp, spec, root, weight, say)
    rnn, ngram = rnn_logp(ids), mixture.ngram.logp_after_first(ids)
    mixed = mixed_logp(rnn, ngram, mixture.weight)
    sides = {"lm_perplexity": math.exp(-rnn.mean()), "ngram_perplexity": math.exp(-ngram.mean())}
    return -float(mixed.sum()), len(mixed), {"mix": {**mixture.describe(), **sides}}
