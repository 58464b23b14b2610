"""Fine-tuning: a new run whose weights start from a trained one (`train NEWTEXT --init-from RUN`).

    RUN/best ─ its tokenizer reads NEWTEXT: characters it never saw are added (--unk skip drops
               them, --unk error refuses them); words it never saw are <unk> (--grow-vocab N adds
               the N most frequent); subword pieces stay (byte fallback: nothing is unknown)
             ─ its model, grown by a row per added token: every old row stays bit-identical;
               a new embedding or output row is the mean of the old ones and a new output bias
               the smallest old one, so a new token starts as an unremarkable rare one
             ─ a new run: optimizer, schedule, budget and peak lr start fresh, as for a run from
               scratch (a lower lr measured worse, bench/finetune.py); run.json records the parent
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from charrnn import checkpoint, runs
from charrnn.data import GivenTokenizer
from charrnn.devices import require_loadable
from charrnn.errors import UserError, option
from charrnn.lm.config import REGULARISERS, SHAPE, ModelConfig, TrainConfig, lm_config
from charrnn.lm.model import RNNLM, load_lm
from charrnn.tokenizers import CharTokenizer, Tokenizer, WordTokenizer

UNKNOWN = ("add", "skip", "error")


@dataclass
class Parent:
    ckpt: checkpoint.Checkpoint
    config: ModelConfig
    tokenizer: Tokenizer

    @property
    def name(self) -> str:
        return f"{self.ckpt.run_folder.name}/{self.ckpt.folder.name}"

    def record(self, added: int) -> dict:
        """What run.json says of the parent."""
        return {"run": self.ckpt.run_folder.name, "checkpoint": self.ckpt.folder.name,
                "path": str(self.ckpt.folder.resolve()),
                "step": self.ckpt.meta.get("progress", {}).get("step"),
                "added_tokens": added}


def open_parent(spec: str, root: Path) -> Parent:
    """RUN[/best|/last] of --init-from: a language model, its config checked."""
    try:
        kind = runs.run_info(runs.resolve_run(spec, root)).get("kind")
    except UserError:
        kind = None  # a checkpoint folder outside a run: checkpoint.resolve says what is wrong
    if kind not in (None, "lm"):
        raise UserError(f"{option('init_from')} {spec} is {runs.a_kind(kind)} run: "
                        "fine-tuning starts from a language model (a run of charrnn train)")
    ckpt = checkpoint.resolve(spec, root)
    ckpt.require_task("lm", "fine-tuning starts from a language model (a run of charrnn train)")
    config = lm_config(ckpt)
    # Its size and its weights file checked now, before anything is built from its config.
    ckpt.check_weights(require_loadable(lambda: RNNLM(config), torch.device("cpu"),
                                        f"{ckpt.folder / checkpoint.META} claims a model this "
                                        "size: the checkpoint is damaged"))
    return Parent(ckpt, config, ckpt.tokenizer)


def refuse_idle_growth(parent: str, level: str, unknown: str | None, grow: int | None) -> None:
    """`unknown` and `grow` asked for (None: not asked; the plan passes its defaults where they
    were typed) where the parent's level gives them nothing to do."""
    if grow is not None and level != "word":
        raise UserError(f"{option('grow_vocab')} applies to word-level runs; {parent} is {level} "
                        "level (" + ("characters it never saw are added anyway" if level ==
                                     "char" else "subword pieces cover any text") + ")")
    if unknown is not None and level == "subword":
        named = option("unknown", "unk")
        raise UserError(f"{named} {unknown}: {parent} is subword level, whose pieces cover "
                        f"any text (byte fallback), so nothing is unknown; drop {named}")


def given_tokenizer(parent: Parent, unknown: str, grow: int) -> GivenTokenizer:
    """How NEWTEXT is tokenized: the parent's tokenizer, grown as asked (see the module)."""
    if unknown not in UNKNOWN:
        raise UserError(f"{option('unknown', 'unk')} must be one of {', '.join(UNKNOWN)}, not {unknown!r}")
    base = parent.tokenizer
    refuse_idle_growth(parent.name, base.level, unknown if unknown != "add" else None,
                       grow or None)
    if grow < 0:
        raise UserError(f"{option('grow_vocab')} must be ≥ 0, got {grow}")

    def build(text: Iterator[str]) -> Tokenizer:
        if base.level == "char":
            return _grown_chars(base, text, unknown)
        if base.level == "word":
            return _grown_words(base, text, unknown, grow)
        return base

    digest = hashlib.sha256(json.dumps(base.to_json(), sort_keys=True).encode()).hexdigest()
    mode = "skip" if unknown == "skip" else "map"
    key = {"base": digest[:24], "unknown": unknown, "grow": grow}
    if grow and base.level == "word":  # the new words counted at \n, as encoded (not as before)
        key["lines"] = "lf"
    return GivenTokenizer(build, key, mode)


def resumed_given(ckpt) -> GivenTokenizer | None:
    """A fine-tuned run's tokenizer for its corpus given again on resume: its own (what the
    parent's grew into on that corpus), under the key its dataset was made with (recorded in
    its checkpoint since this version; None for other runs)."""
    key = (ckpt.meta.get("dataset") or {}).get("given_tokenizer")
    if not isinstance(key, dict):
        return None
    return GivenTokenizer(lambda text: ckpt.tokenizer, key,
                          "skip" if key.get("unknown") == "skip" else "map")


def _grown_chars(base: CharTokenizer, text: Iterator[str], unknown: str) -> CharTokenizer:
    seen: set[str] = set()
    for chunk in text:
        seen.update(chunk.lower() if base.lower else chunk)
    new = sorted(seen - set(base.chars))
    if new and unknown == "error":
        shown = ", ".join(repr(c) for c in new[:10])
        raise UserError(f"the new text has {len(new)} character(s) the model never saw ({shown}): "
                        f"drop {option('unknown', 'unk')} error to add them, or "
                        f"{option('unknown', 'unk')} skip to drop them")
    return base if unknown == "skip" or not new else CharTokenizer(base.chars + new, base.lower)


def _grown_words(base: WordTokenizer, text: Iterator[str], unknown: str, grow: int) -> WordTokenizer:
    counts: Counter[str] = Counter()
    for chunk in text:
        for line in chunk.split("\n"):  # as WordTokenizer.encode splits
            counts.update(w for w in base.split(line) if w not in base.index)
    ranked = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    new, left = ranked[:grow], ranked[grow:]
    if left and unknown == "error":
        grown = f" after {option('grow_vocab')} {grow}" if grow else ""
        raise UserError(f"the new text has {len(left):,} word(s) the model never saw{grown} (e.g. "
                        f"{left[0]!r}): drop {option('unknown', 'unk')} error (they become "
                        "<unk>), or give a larger "
                        f"{option('grow_vocab')} N to add the N most frequent")
    return WordTokenizer(base.words + new, base.pattern, base.lower) if new else base


def parent_shaped(cfg: TrainConfig, parent: Parent) -> TrainConfig:
    """`cfg` with the parent's shape, which is what trains (as nanoGPT's init_from takes the
    checkpoint's model arguments): its record must not say another model."""
    return replace(cfg, **{k: getattr(parent.config, k) for k in SHAPE})


def grown_model(parent: Parent, vocab: int, cfg: TrainConfig) -> tuple[ModelConfig, dict]:
    """The parent's model with rows for tokens vocab_old … vocab-1 (and the regularisers of
    `cfg`): its config and its weights (a state dict on the CPU)."""
    old = load_lm(parent.ckpt, "cpu")
    config = replace(parent.config, vocab_size=vocab,
                     **{k: getattr(cfg, k) for k in REGULARISERS})
    state = {k: v.clone() for k, v in old.state_dict().items()}
    added = vocab - parent.config.vocab_size
    if added > 0:
        for name, tensor in list(state.items()):
            state[name] = _grow(name, tensor, old, added)
    with torch.device("meta"):  # the grown shapes must be what the config builds
        expected = {k: v.shape for k, v in RNNLM(config).state_dict().items()}
    if {k: v.shape for k, v in state.items()} != expected:
        raise UserError(f"{parent.name}: its weights do not match its config; use the run's "
                        "other checkpoint")
    return config, state


def _grow(name: str, tensor: torch.Tensor, old: RNNLM, added: int) -> torch.Tensor:
    vocab = old.config.vocab_size
    last_tail = f"head.tails.{len(old.config.cutoffs) - 1}.1." if old.adaptive else None
    if name in ("head.order", "head.rank"):  # new tokens rank last: the last tail holds them
        return torch.cat([tensor, torch.arange(vocab, vocab + added)])
    grows = name in ("embed.weight", "head.weight", "head.bias") or (
        last_tail is not None and name.startswith(last_tail))
    if not grows:
        return tensor
    fill = tensor.min(0, keepdim=True).values if name.endswith("bias") else \
        tensor.mean(0, keepdim=True)
    return torch.cat([tensor, fill.expand(added, *tensor.shape[1:])])


def unseen_after(parent: Parent, dataset) -> list[int] | None:
    """The tokens neither the parent's training text nor this one held, which sampling never
    writes (lm.plain.unwritten); None where the parent recorded none (trained before they were)."""
    before = (parent.ckpt.meta.get("dataset") or {}).get("unseen")
    if before is None:
        return None
    vocab = dataset.tokenizer.vocab_size
    counts = np.bincount(np.asarray(dataset.ids("train")), minlength=vocab)[:vocab]
    return [int(x) for x in before if x < vocab and counts[x] == 0]
