"""Scoring text with a model: nats/token, perplexity and bits per character of the original text.

Bits per character (total bits ÷ Unicode characters) puts char, word, subword and n-gram models on
one scale. The first token of a text has no left context, so the mean over the N-1 predicted tokens
stands for all N tokens.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from charrnn import checkpoint, data, runs
from charrnn.devices import autocast, resolve_device, resolve_precision
from charrnn.errors import UserError
from charrnn.lm.batching import oriented
from charrnn.lm.model import RNNLM, load_lm
from charrnn.lm.state import select_rows
from charrnn.scores import scored, too_short


def score_ids(model: RNNLM, ids: np.ndarray, device: torch.device, streams: int = 32,
              seq_len: int = 256, precision: str = "fp32") -> tuple[float, int]:
    """Sum of -log p (nats) over ids[1:], reading `streams` contiguous rows with carried state."""
    nll = token_nll(model, ids, device, streams, seq_len, precision)
    return float(nll.sum(dtype=np.float64)), len(nll)


@torch.inference_mode()
def token_nll(model: RNNLM, ids: np.ndarray, device: torch.device, streams: int = 32,
              seq_len: int = 256, precision: str = "fp32") -> np.ndarray:
    """-log p of each of ids[1:] (float32, in order). The text is read as `streams` contiguous
    rows side by side, each with its carried state, and the rest continues the last row:

        ids   a b c d e f g h i j k      rows ┌ a b c d ┐ → targets b c d e
                                              └ e f g h ┘ → targets f g h i,   then i j → j k
    """
    n_targets = len(ids) - 1
    if n_targets < 1:
        raise UserError(f"need at least 2 tokens to evaluate, got {len(ids)}")
    was_training = model.training
    model.eval()
    ids_t = torch.from_numpy(np.asarray(ids).astype(np.int64))
    streams = max(1, min(streams, n_targets // max(1, seq_len)))
    row = n_targets // streams
    xs = ids_t[: streams * row].view(streams, row).to(device)
    ys = ids_t[1 : streams * row + 1].view(streams, row).to(device)
    windows, state = [], None  # on the device: one copy to the host at the end
    for lo in range(0, row, seq_len):
        nll, state = _nll(model, xs[:, lo : lo + seq_len], ys[:, lo : lo + seq_len], state,
                          device, precision)
        windows.append(nll.view(streams, -1))
    parts = [torch.cat(windows, dim=1).reshape(-1)]
    if n_targets > streams * row:  # the tail continues the last row, with its hidden state
        tail_state = select_rows(state, slice(streams - 1, streams)) if state is not None else None
        x = ids_t[streams * row : n_targets].view(1, -1).to(device)
        y = ids_t[streams * row + 1 :].view(1, -1).to(device)
        parts.append(_nll(model, x, y, tail_state, device, precision)[0])
    model.train(was_training)
    return torch.cat(parts).cpu().numpy()


def _nll(model: RNNLM, x: torch.Tensor, y: torch.Tensor, state, device: torch.device,
         precision: str):
    with autocast(device, precision):
        nll, state = model(x, state, y)
    return nll.float(), state


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


def evaluate_run(spec: str | None, root: Path, file: str | None = None, split: str | None = None,
                 device: str = "auto", unknown: str = "error", errors: str = "strict",
                 precision: str = "fp32", mix: str | None = None,
                 mix_weight: float | None = None) -> dict:
    """`charrnn eval`: score a checkpoint on a file or on a split of its own dataset (with `mix`,
    its interpolation with that n-gram run). float32 by default whatever the run trained in, so
    that figures compare (bf16 rounds each logit to ~3 significant digits)."""
    if mix is None and mix_weight is not None:
        raise UserError("--mix-weight applies with --mix NGRAM_RUN")
    ckpt = _lm_checkpoint(spec, root)
    dev = resolve_device(device)
    computed, _ = resolve_precision(precision, dev)
    tokenizer = ckpt.tokenizer
    dataset_id = (ckpt.meta.get("dataset") or {}).get("id", "")
    again = f"charrnn eval {ckpt.run_folder.name}"
    ids, n_chars, source, skipped = data.scoring_text(tokenizer, dataset_id, file, split, unknown, errors,
                                             again)
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
        total, predicted, extra = _mixed_total(ckpt, rnn_logp, ids, mix, root, mix_weight)
    progress = ckpt.meta.get("progress", {})
    return {"run": ckpt.run_folder.name, "kind": "lm" if mix is None else "mix",
            "checkpoint": str(ckpt.folder), "source": source,
            **scored(total, predicted, ids, n_chars, tokenizer, skipped),
            "params": model.num_parameters(), "train_seconds": progress.get("elapsed"),
            "precision": computed, **extra}


def _mixed_total(ckpt: checkpoint.Checkpoint, rnn_logp, ids: np.ndarray, spec: str, root: Path,
                 weight: float | None) -> tuple[float, int, dict]:
    from charrnn.lm.mix import mixed_logp, mixture_for

    mixture = mixture_for(ckpt, rnn_logp, spec, root, weight)
    rnn, ngram = rnn_logp(ids), mixture.ngram.logp_after_first(ids)
    mixed = mixed_logp(rnn, ngram, mixture.weight)
    sides = {"lm_perplexity": math.exp(-rnn.mean()), "ngram_perplexity": math.exp(-ngram.mean())}
    return -float(mixed.sum()), len(mixed), {"mix": {**mixture.describe(), **sides}}
