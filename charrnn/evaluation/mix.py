"""RNN ⊕ n-gram: per token, p = λ·p_rnn + (1 − λ)·p_ngram, on one tokenizer.

    text ─ tokenizer ─ ids ─┬─ RNN     ─ ln p_rnn(tᵢ | t<ᵢ)  ┐
                            └─ n-gram  ─ ln p_ng(tᵢ | t<ᵢ)   ┴─ ln(λ·p_rnn + (1−λ)·p_ng)

The n-gram run must have been counted on the RNN's dataset (the same tokenizer, id for id): a
--lines n-gram scores each line from `<s>` with the line break as `</s>`, which is the RNN's
line-break token, so the two score the same tokens one for one. λ, when not given, is tuned on
the validation split by EM (each step: λ ← the mean posterior of the RNN over the tokens),
remembered in <run>/mixes.json for that checkpoint, and reported with every figure.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn import checkpoint, data, fsutil, runs
from charrnn.errors import UserError, option
from charrnn.ngram.model import NGramModel

MIXES = "mixes.json"


@dataclass
class Mixture:
    ngram: NGramModel
    name: str  # the n-gram run
    weight: float  # λ, the RNN's share
    tuned_on: str  # "val" (EM on the validation split) or "given" (--mix-weight)

    def side(self, history: list[int], streams: int) -> NGramSide:
        """The n-gram's side of sampling `streams` streams after `history` (lm.sample calls it:
        the sampler knows a mixture only by this method)."""
        return NGramSide(self, history, streams)

    def describe(self) -> dict:
        return {"ngram": self.name, "weight": self.weight, "tuned_on": self.tuned_on}

    def summary(self) -> str:
        """'kn5, λ 0.018 (tuned on the validation text)': λ is the RNN's share."""
        how = "tuned on the validation text" if self.tuned_on == "val" else "given"
        return f"{self.name}, λ {self.weight:.3g} ({how})"  # (3 digits: a λ of 9.4e-05 too)


def load_ngram_for(ckpt: checkpoint.Checkpoint, spec: str, root: Path) -> tuple[NGramModel, str]:
    """The n-gram run `spec`, refused unless it reads the RNN's tokens id for id."""
    from charrnn.ngram.runs import load_run

    kind = runs.run_info(runs.resolve_run(spec, root, kind="ngram")).get("kind")
    if kind != "ngram":
        raise UserError(f"{option('mix')} {spec} is {runs.a_kind(kind)} run: {option('mix')} takes "
                        "an n-gram run counted on the same dataset (charrnn ngram train with its "
                        "corpus)")
    folder, model = load_run(spec, root)
    if model.meta.get("tokenizer") != ckpt.meta.get("tokenizer"):
        rnn = (ckpt.meta.get("dataset") or {}).get("level", "?")
        raise UserError(f"{option('mix')} {spec}: its tokenizer ({model.tokenizer.level} level, "
                        f"{model.vocab_size:,} tokens) is not the one of {ckpt.run_folder.name} "
                        f"({rnn} level, {ckpt.tokenizer.vocab_size:,} tokens): count the n-gram "
                        "on the RNN's dataset (charrnn ngram train with the same corpus and "
                        "options)")
    return model, folder.name


def mixed_logp(rnn: np.ndarray, ngram: np.ndarray, weight: float) -> np.ndarray:
    """ln(λ·e^rnn + (1−λ)·e^ngram), elementwise (λ of 0 or 1 gives one side alone)."""
    rnn, ngram = np.asarray(rnn, np.float64), np.asarray(ngram, np.float64)
    if weight >= 1:
        return rnn
    if weight <= 0:
        return ngram
    return np.logaddexp(math.log(weight) + rnn, math.log1p(-weight) + ngram)


def tune_weight(rnn: np.ndarray, ngram: np.ndarray, rounds: int = 200, tol: float = 1e-7) -> float:
    """The λ that maximises the likelihood of the tokens (EM; the likelihood is concave in λ)."""
    rnn, ngram = np.asarray(rnn, np.float64), np.asarray(ngram, np.float64)
    weight = 0.5
    for _ in range(rounds):
        mixed = mixed_logp(rnn, ngram, weight)
        new = float(np.mean(np.exp(math.log(weight) + rnn - mixed)))
        new = min(max(new, 1e-6), 1 - 1e-6)
        if abs(new - weight) < tol:
            return new
        weight = new
    return weight


def _cache_key(ckpt: checkpoint.Checkpoint, ngram_name: str, ngram: NGramModel) -> str:
    """This checkpoint (by its save time) with this n-gram (by name and by what its build wrote,
    times included: an n-gram built again under the same name is tuned again)."""
    built = hashlib.sha256(json.dumps(ngram.meta, sort_keys=True, default=str).encode())
    return (f"{ngram_name}#{built.hexdigest()[:12]}@{ckpt.folder.name}:"
            f"{ckpt.meta.get('saved_at', 0)}")


def mixture_for(ckpt: checkpoint.Checkpoint, rnn_logp_of, spec: str, root: Path,
                weight: float | None = None, say: Callable[[str], None] | None = None
                ) -> Mixture:
    """The mixture of this checkpoint with n-gram run `spec`: λ as given, as tuned before for
    this checkpoint, or tuned now on the validation split (`rnn_logp_of(ids)` gives the RNN's
    ln p of ids[1:]; seconds on a large split, so `say` is told first)."""
    if (ckpt.meta.get("model") or {}).get("direction") == "backward":
        raise UserError(f"{option('mix')}: {ckpt.run_folder.name} reads right to left and an n-gram left to "
                        "right, so their per-token probabilities do not mix; use a forward LM")
    model, name = load_ngram_for(ckpt, spec, root)
    if weight is not None:
        if not 0 <= weight <= 1:
            raise UserError(f"{option('mix_weight')} must be between 0 and 1 (the RNN's share), got {weight}")
        return Mixture(model, name, float(weight), "given")
    cache = ckpt.run_folder / MIXES
    known = _read_cache(cache)
    key = _cache_key(ckpt, name, model)
    if key in known:
        return Mixture(model, name, float(known[key]["weight"]), "val")
    ids = _validation_ids(ckpt)
    if say is not None:
        say(f"tuning λ, the RNN's share of its mixture with {name}, on the validation text "
            f"({len(ids) - 1:,} tokens; kept in {ckpt.run_folder.name}/{MIXES} for next time)")
    tuned = tune_weight(rnn_logp_of(ids), model.logp_after_first(ids))
    known[key] = {"weight": tuned, "tokens": int(len(ids) - 1), "tuned_at": time.time()}
    try:
        fsutil.write_json_atomic(cache, known)
    except UserError:  # a read-only run folder: tuned again next time, nothing lost
        pass
    return Mixture(model, name, tuned, "val")


def _read_cache(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        known = fsutil.read_json(path, "mixture weights")
    except UserError:
        return {}
    return {k: v for k, v in known.items() if isinstance(v, dict)
            and isinstance(v.get("weight"), (int, float)) and 0 <= v["weight"] <= 1}


def _validation_ids(ckpt: checkpoint.Checkpoint) -> np.ndarray:
    dataset_id = (ckpt.meta.get("dataset") or {}).get("id", "")
    dataset = data.find_dataset(dataset_id)
    name = ckpt.run_folder.name
    if dataset is None:
        raise UserError(f"tuning the mixture weight needs {name}'s validation split, and its "
                        f"dataset is not in the cache: give {option('mix_weight')} W, or train again")
    if dataset.tokens("val") < 2:  # (training again as it was would make none either)
        raise UserError(f"tuning the mixture weight needs a validation split, and {name}'s data "
                        f"has none: give {option('mix_weight')} W (0 to 1, the RNN's share)")
    return np.asarray(dataset.ids("val"))


class NGramSide:
    """The n-gram half of a mixture while decoding: one n-gram state per stream (on the host),
    each step's distributions for all streams at once from the Numba kernels."""

    def __init__(self, mixture: Mixture, history: list[int], streams: int) -> None:
        import torch

        from charrnn.ngram.sample import unwritten_ids

        self.mixture, self.ngram = mixture, mixture.ngram
        self.states = self.ngram.start_states(np.asarray(history), streams)
        self.unwritten = torch.from_numpy(unwritten_ids(self.ngram))  # (as its own sampling)

    def mix(self, scores):
        """Scores (B, V) of the RNN (logits or log-probs) → ln of the mixed distribution (B, V)."""
        import torch

        weight = self.mixture.weight
        rnn = torch.softmax(scores.float().reshape(len(self.states), -1), dim=-1)
        ngram = torch.from_numpy(self.ngram.next_distributions(self.states).astype(np.float32))
        if len(self.unwritten):  # (a per-step copy saved where there is none)
            ngram[:, self.unwritten] = 0.0
        mixed = weight * rnn + (1 - weight) * ngram.to(rnn.device)
        return torch.log(mixed.clamp_min(1e-30)).view_as(scores)

    def advance(self, tokens) -> None:
        tokens = np.asarray(tokens.cpu() if hasattr(tokens, "cpu") else tokens).reshape(-1)
        self.states = self.ngram.advance(self.states, tokens)

    def reorder(self, index) -> None:
        """Keep the streams `index` picks (a beam's survivors), in that order."""
        self.states = self.states[np.asarray(index.cpu() if hasattr(index, "cpu") else index)]


def mixture_of(ckpt: checkpoint.Checkpoint, model, device, spec: str | None,
               weight: float | None, root: Path | None,
               say: Callable[[str], None] | None = None) -> Mixture | None:
    """`--mix NGRAM_RUN [--mix-weight W]` of a loaded language model (None without --mix)."""
    if spec is None:
        if weight is not None:
            raise UserError(f"{option('mix_weight')} applies with {option('mix')} NGRAM_RUN")
        return None
    from charrnn.lm.scoring import token_nll

    return mixture_for(ckpt, lambda ids: -token_nll(model, ids, device), spec, root, weight, say)
