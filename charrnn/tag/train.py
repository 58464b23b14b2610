"""Training and running taggers: batches of whole sentences, AdamW, best-on-validation checkpoints.

    sentences ─ Encoder ─ id arrays ─ batches of similar length (padded, packed by the model)
              ─ Tagger ─ cross-entropy on real positions ─ AdamW, clipping, warmup + cosine
    every epoch (or --eval-every steps): decode the validation set with constrained Viterbi,
    score it (F1 for chunks and segmentation, accuracy otherwise), write last/ and, when it
    improved, best/ — atomic safetensors + checkpoint.json folders with "task": "tag".

`fit` is the small generic loop; the masked fill model (charrnn.fill.model) trains with it too.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charrnn import checkpoint, runs
from charrnn.devices import host_to_device, resolve_device
from charrnn.errors import UserError, check_seed
from charrnn.pipes import is_reader_gone
from charrnn.tag import score as tagscore
from charrnn.tag.data import UNK, Encoder, Sentence, read_data, words_from_tags
from charrnn.tag.model import Tagger, TaggerConfig, allowed_transitions, viterbi
from charrnn.training.progress import StopFlag

DEFAULT_EPOCHS = 10


# ---- the generic loop ---------------------------------------------------------------------------
@dataclass
class Budget:
    epochs: float | None = None
    max_steps: int | None = None
    max_time: float | None = None

    def validate(self) -> None:
        for name in ("epochs", "max_steps", "max_time"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")


@dataclass
class Loop:
    """What `fit` needs from a task: batches, a loss, an evaluation and a way to save."""

    model: nn.Module
    steps_per_epoch: int
    batch: Callable[[int, int], dict]  # (epoch, step in epoch) → batch on the device
    loss: Callable[[dict], torch.Tensor]
    evaluate: Callable[[], dict]
    save: Callable[[str, dict, dict], None]  # (best|last, metrics, progress)
    key: str  # the metric that picks best/
    higher_is_better: bool = True


def make_adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # Decay matrices, not biases or embeddings (embeddings of rare ids would only shrink).
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.dim() >= 2 and "embed" not in n and "bigrams" not in n]
    keep = [p for n, p in named if not (p.dim() >= 2 and "embed" not in n and "bigrams" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": keep, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))


def fit(loop: Loop, budget: Budget, lr: float, weight_decay: float = 0.01, grad_clip: float = 5.0,
        warmup: int = 100, eval_every: int | None = None,
        log: Callable[[str], None] = lambda _: None) -> dict:
    """Train until the first budget runs out; evaluate every epoch (or `eval_every` steps).

    Ctrl-C, SIGTERM or SIGHUP (and a `log` whose reader is gone) finish the step, evaluate, save
    last/ (best/ if better) and return the outcome "interrupted"; a second Ctrl-C aborts."""
    optimizer = make_adamw(loop.model, lr, weight_decay)
    if budget.epochs is None and budget.max_steps is None and budget.max_time is None:
        budget = Budget(epochs=DEFAULT_EPOCHS)
    total = budget.max_steps
    if budget.epochs is not None:
        by_epochs = math.ceil(budget.epochs * loop.steps_per_epoch)
        total = min(total, by_epochs) if total else by_epochs
    eval_every = eval_every or loop.steps_per_epoch
    step, started, best, best_metrics = 0, time.time(), None, {}
    loss_sum, loss_n, outcome = 0.0, 0, "finished"
    closed: list[OSError] = []  # what `log` raised once its reader left (`| head`, a hangup)

    def say(line: str) -> None:
        if closed:
            return
        try:
            log(line)
        except OSError as exc:  # nobody reads: stop and save, the work must not go with it
            if not is_reader_gone(exc):
                raise
            closed.append(exc)
            stop.requested = True

    stop = StopFlag(say)

    def fraction() -> float:
        done = (step - warmup) / max(1, total - warmup) if total else 0.0
        if budget.max_time:
            done = max(done, (time.time() - started) / budget.max_time)
        return min(1.0, max(0.0, done))

    def spent() -> bool:
        return bool((total and step >= total) or
                    (budget.max_time and time.time() - started >= budget.max_time))

    evaluated_at = -1

    def evaluate_and_save() -> None:
        nonlocal best, best_metrics, evaluated_at
        evaluated_at = step
        metrics = loop.evaluate()
        value = metrics.get(loop.key)
        improved = value is not None and (best is None or (
            value > best if loop.higher_is_better else value < best))
        progress = {"step": step, "epoch": step / loop.steps_per_epoch,
                    "elapsed": time.time() - started}
        loop.save("last", metrics, progress)
        if improved:
            best, best_metrics = value, metrics
            loop.save("best", metrics, progress)
        shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        say(f"eval step {step} epoch {progress['epoch']:.2f}: {shown}{' *' if improved else ''}")

    stop.install()
    try:
        while not spent() and not stop.requested:
            epoch, pos = divmod(step, loop.steps_per_epoch)
            batch = loop.batch(epoch, pos)
            loop.model.train()
            loss = loop.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(loop.model.parameters(), grad_clip)
            scale = (step + 1) / warmup if step < warmup else 0.1 + 0.9 * 0.5 * (
                1 + math.cos(math.pi * fraction()))
            for group in optimizer.param_groups:
                group["lr"] = lr * scale
            optimizer.step()
            step += 1
            # summed on the device and read back every 50 steps: no host sync per step on CUDA
            loss_sum, loss_n = loss_sum + loss.detach().float(), loss_n + 1
            if step % 50 == 0:
                say(f"step {step}{'/' + str(total) if total else ''} loss {float(loss_sum) / loss_n:.4f} "
                    f"lr {lr * scale:.2e} {time.time() - started:.0f}s")
                loss_sum, loss_n = 0.0, 0
            if step % eval_every == 0 and not spent() and not stop.requested:
                evaluate_and_save()
        if stop.requested:
            outcome = "interrupted"
        if step != evaluated_at:  # the last step's evaluation is the final one
            evaluate_and_save()
    finally:
        stop.restore()
    if closed:  # saved: now end as a closed pipe does (the CLI exits 141, quietly but for this)
        with contextlib.suppress(OSError):
            print(f"charrnn: output closed: stopped at step {step} with last/ saved",
                  file=sys.stderr)
        raise closed[0]
    return {"outcome": outcome, "step": step, "elapsed": time.time() - started,
            "best": best, **{f"best_{k}": v for k, v in best_metrics.items()}}


# ---- tagger training --------------------------------------------------------------------------
@dataclass
class TagTrainConfig:
    format: str = "conll"
    label_column: int = -1
    features: list[int] = field(default_factory=list)
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 128
    emb: int = 100
    dropout: float = 0.2
    bigram_emb: int = 64  # segmented: character bigram features (0: off)
    char_emb: int = 32  # conll: the char encoder of each word (char_filters 0: off)
    char_filters: int = 64
    feature_emb: int = 32
    min_count: int = 1
    token_dropout: float = 0.05  # training inputs replaced by <unk>, so unseen tokens mean something
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    warmup: int = 100
    epochs: float | None = None
    max_steps: int | None = None
    max_time: float | None = None
    eval_every: int | None = None
    val_frac: float = 0.05
    seed: int = 1337
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        check_seed(self.seed)
        if not 0 <= self.val_frac < 1:
            raise UserError(f"--val-frac must be in [0, 1), got {self.val_frac}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        Budget(self.epochs, self.max_steps, self.max_time).validate()

    def model_config(self, enc: Encoder) -> TaggerConfig:
        return TaggerConfig(
            enc.level, len(enc.tokens), len(enc.labels), self.cell, self.layers, self.hidden,
            self.emb, self.dropout, n_bigrams=len(enc.bigrams) if self.bigram_emb else 0,
            bigram_emb=self.bigram_emb, n_chars=len(enc.chars) if self.char_filters else 0,
            char_emb=self.char_emb, char_filters=self.char_filters,
            feature_sizes=[len(v) for v in enc.features], feature_emb=self.feature_emb)


def collate(items: Sequence[dict[str, np.ndarray]], device: torch.device) -> dict[str, torch.Tensor]:
    """Pad a list of encoded sentences into one batch (0 = padding everywhere)."""
    lengths = [len(it["tokens"]) for it in items]
    width = max(lengths)
    out = {"lengths": torch.tensor(lengths)}
    for key, first in items[0].items():
        grid = np.zeros((len(items), width, *first.shape[1:]), dtype=np.int64)
        for i, it in enumerate(items):
            grid[i, : len(it[key])] = it[key]
        out[key] = host_to_device(grid, device)
    return out


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Batches of sentences of similar length (little padding); shuffled when rng is given."""
    order = list(range(len(lengths)))
    if rng is not None:  # sort within shuffled pools, so batches differ from epoch to epoch
        rng.shuffle(order)
        pool = batch_size * 50
        order = [i for lo in range(0, len(order), pool)
                 for i in sorted(order[lo : lo + pool], key=lengths.__getitem__)]
    else:
        order.sort(key=lengths.__getitem__)
    batches = [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


@dataclass
class TaggerBundle:
    """A loaded tagger with what it needs to read text and decode."""

    model: Tagger
    encoder: Encoder
    meta: dict
    device: torch.device

    @property
    def constraints(self) -> torch.Tensor | None:
        ok = self.meta["tag"].get("constraints")
        return None if ok is None else torch.tensor(ok, dtype=torch.bool)

    @torch.inference_mode()
    def predict(self, sentences: Sequence[Sentence], batch_size: int = 64) -> list[list[str]]:
        self.model.eval()
        encoded = [self.encoder.encode(Sentence(s.tokens, None, s.features)) for s in sentences]
        out: list[list[str] | None] = [None] * len(sentences)
        ok = self.constraints
        for index in length_batches([len(e["tokens"]) for e in encoded], batch_size, None):
            items = [encoded[i] for i in index if len(encoded[i]["tokens"])]
            batch = collate(items, self.device) if items else None
            paths = viterbi(F.log_softmax(self.model(batch).float(), -1).cpu(),
                            batch["lengths"], ok) if batch else []
            paths_iter = iter(paths)
            for i in index:
                out[i] = ([self.encoder.labels[j] for j in next(paths_iter)]
                          if len(encoded[i]["tokens"]) else [])
        return out  # type: ignore[return-value]

    def score(self, sentences: Sequence[Sentence]) -> dict:
        """Token accuracy plus the task's standard score on labelled sentences."""
        pred = self.predict(sentences)
        gold = [s.labels or [] for s in sentences]
        result: dict = {"sentences": len(sentences), "tokens": sum(map(len, gold)),
                        "accuracy": tagscore.accuracy(gold, pred)}
        if self.encoder.level == "char" and set(self.encoder.labels) <= set("BMES"):
            result["score"] = "word"
            result.update(tagscore.word_f1(
                [words_from_tags(s.tokens, g) for s, g in zip(sentences, gold, strict=True)],
                [words_from_tags(s.tokens, p) for s, p in zip(sentences, pred, strict=True)]))
        elif tagscore.is_chunk_tagset(self.encoder.labels):
            result["score"] = "chunk"
            result.update(tagscore.chunk_f1(gold, pred))
        return result


def split_validation(sentences: list[Sentence], frac: float, seed: int
                     ) -> tuple[list[Sentence], list[Sentence]]:
    if frac <= 0 or len(sentences) < 2:
        return sentences, []
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(len(sentences) * frac))
    val = set(order[:n_val])
    return ([s for i, s in enumerate(sentences) if i not in val],
            [s for i, s in enumerate(sentences) if i in val])


def train_tagger(data: str, cfg: TagTrainConfig, root: Path, run_name: str | None = None,
                 valid: str | None = None, test: str | None = None,
                 log: Callable[[str], None] = lambda _: None) -> dict:
    """`charrnn tag train`: read, build vocabularies, train, keep the best on validation."""
    train_sents = read_data(data, cfg.format, cfg.label_column, cfg.features)
    if len(train_sents) < 2:
        raise UserError(f"{data} holds {len(train_sents)} sentence(s): too few to train a tagger "
                        "(a blank line ends each CoNLL sentence; a line is one segmented sentence)")
    if valid is not None:
        val_sents = read_data(valid, cfg.format, cfg.label_column, cfg.features)
    else:
        train_sents, val_sents = split_validation(train_sents, cfg.val_frac, cfg.seed)
    test_sents = read_data(test, cfg.format, cfg.label_column, cfg.features) if test else None
    level = "char" if cfg.format == "segmented" else "word"
    encoder = Encoder.build(train_sents, level, cfg.min_count)
    if len(encoder.labels) < 2:
        raise UserError(f"{data} has a single label ({', '.join(encoder.labels)}): nothing to "
                        "learn; check --label-column and --format")
    mcfg = cfg.model_config(encoder)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = Tagger(mcfg).to(device)
    ok = allowed_transitions(encoder.labels, [s.labels or [] for s in train_sents])
    info = {"task": "tag", "data": str(data), "format": cfg.format,
            "sentences": {"train": len(train_sents), "val": len(val_sents)}, "config": asdict(cfg)}
    run_dir = runs.new_run_dir(root, run_name, "tagger", info)
    meta_base = {"task": "tag", "model": mcfg.to_json(), "tokenizer": encoder.to_json(),
                 "tag": {"format": cfg.format, "label_column": cfg.label_column,
                         "features": cfg.features, "constraints": None if ok is None else ok.tolist()},
                 "train": asdict(cfg)}
    bundle = TaggerBundle(model, encoder, meta_base, device)
    encoded = [encoder.encode(s) for s in train_sents]
    lengths = [len(e["tokens"]) for e in encoded]
    rng = random.Random(cfg.seed)
    epoch_batches: dict[int, list[list[int]]] = {}
    unk = encoder.tokens.index(UNK)
    generator = torch.Generator().manual_seed(cfg.seed)

    def batch(epoch: int, pos: int) -> dict:
        if epoch not in epoch_batches:
            epoch_batches.clear()
            epoch_batches[epoch] = length_batches(lengths, cfg.batch_size, rng)
        out = collate([encoded[i] for i in epoch_batches[epoch][pos]], device)
        if cfg.token_dropout > 0:
            drop = torch.rand(out["tokens"].shape, generator=generator) < cfg.token_dropout
            out["tokens"] = out["tokens"].masked_fill(host_to_device(drop, device) & (out["tokens"] > 0), unk)
        return out

    def loss(b: dict) -> torch.Tensor:
        logits = model(b)  # padding (token 0) is ignored; no boolean indexing: no host sync on CUDA
        labels = b["labels"].masked_fill(b["tokens"] == 0, -100)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)

    def evaluate() -> dict:
        return bundle.score(val_sents) if val_sents else {}

    def save(name: str, metrics: dict, progress: dict) -> None:
        meta = {**meta_base, "metrics": metrics, "progress": progress, "saved_at": time.time()}
        checkpoint.save(run_dir / name, model, meta, None)

    steps = math.ceil(len(encoded) / cfg.batch_size)
    key = "f1" if (level == "char" or ok is not None or
                   tagscore.is_chunk_tagset(encoder.labels)) else "accuracy"
    log(f"run {run_dir} | {len(train_sents):,} train / {len(val_sents):,} val sentences | "
        f"{len(encoder.tokens):,} tokens, {len(encoder.labels)} labels | {mcfg.cell} "
        f"{mcfg.layers}×{mcfg.hidden} bidirectional, {model.num_parameters():,} params | {device}")
    result = fit(Loop(model, steps, batch, loss, evaluate, save, key if val_sents else "none"),
                 Budget(cfg.epochs, cfg.max_steps, cfg.max_time), cfg.lr, cfg.weight_decay,
                 cfg.grad_clip, cfg.warmup, cfg.eval_every, log)
    result["run"] = str(run_dir)
    if result["outcome"] == "interrupted":
        # Saved; now the interruption goes on to the CLI, which exits 130 as `charrnn train` does
        # (the --test scoring is skipped: the user asked to stop).
        log(f"stopped at step {result['step']}; checkpoints saved in {run_dir}")
        raise KeyboardInterrupt
    if test_sents is not None:
        best = load_tagger(str(run_dir), root, cfg.device)
        result["test"] = best.score(test_sents)
    return result


def load_tagger(spec: str | None, root: Path, device: str = "auto") -> TaggerBundle:
    ckpt = checkpoint.resolve(spec, root, kind="tagger")
    if ckpt.meta.get("task") != "tag":
        raise UserError(f"{ckpt.folder} is not a tagger checkpoint (task "
                        f"{ckpt.meta.get('task', 'lm')!r}): train one with `charrnn tag train`")
    dev = resolve_device(device)
    model = Tagger(TaggerConfig.from_json(ckpt.meta["model"]))
    ckpt.load_into(model, dev)
    return TaggerBundle(model.eval(), Encoder.from_json(ckpt.meta["tokenizer"]), ckpt.meta, dev)
