"""The one table: where each option applies, and what each situation's defaults are, and why.

    APPLIES   option(s) ── apply when ──→ a condition on the situation, in words for the message
    RECIPES   situation ── defaults ────→ values for every option not typed, with the measurement
                                          that chose them (command, figure, date, machine)

A typed option whose condition is false is refused, naming the condition; a recipe fills in what
was not typed, later recipes refining earlier ones. `charrnn train --help` prints both tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace

from charrnn.errors import UserError, flag
from charrnn.fill.config import FillTrainConfig
from charrnn.lm.config import TrainConfig
from charrnn.plan.measured import CLEARLY_FASTER
from charrnn.training.config import MOMENTUM_OPTIMIZERS, RPROP_NEUTRAL


@dataclass(frozen=True)
class Situation:
    """What the defaults and the applicability of options depend on."""

    mode: str = "new"  # new | resume | finetune
    task: str = "lm"  # lm | fill
    level: str = "char"  # char | word | subword
    device: str = "cpu"  # cpu | cuda | mps
    cpu_bf16_lead: float = 0.0  # measured: fp32's step time over bf16's on the reference model
    #                             (plan.measured.bf16_lead; 0: bf16 cannot run, inf: typed bf16)
    corpus_given: bool = True
    optim: str = "adamw"
    softmax: str = "auto"
    epochs_in_budget: float | None = None  # passes over the training text the budget allows
    #                                        (plan.train.passes_in_budget)
    has_validation: bool = True  # the data has a validation split (known once it is prepared)
    data_format: str = ""  # a tagger's: conll | segmented


@dataclass(frozen=True)
class Applies:
    options: tuple[str, ...]
    when: Callable[[Situation], bool]
    condition: str  # where they apply, for --help
    refusal: str  # what follows the options' names in the error: why not, and what to do


@dataclass(frozen=True)
class Recipe:
    name: str
    when: Callable[[Situation], bool]
    values: Mapping[str, object]
    because: str


# Options of a language model only: --task fill refuses them (the options it shares it takes).
LM_ONLY = tuple(sorted({f.name for f in fields(TrainConfig)} - {f.name for f in fields(FillTrainConfig)}
                       | {"init_from", "unk", "grow_vocab"}))
PREPROCESS = ("level", "lower", "val_frac", "test_frac", "valid", "test", "errors", "pattern",
              "min_count", "max_vocab", "vocab_size", "subword_model")
EVALUATION = ("eval_every", "eval_tokens", "eval_seconds", "patience")
# What a resumed run may change: its budget and where it runs; the rest is the run's own.
BUDGET = ("max_steps", "max_time", "epochs", "patience", "device", "threads")

APPLIES: tuple[Applies, ...] = (
    Applies(("unk", "grow_vocab"), lambda s: s.mode != "resume", "not to a resumed run",
            ": a resumed run keeps the tokenizer it started with; drop it"),
    Applies(("unk", "grow_vocab"), lambda s: s.mode != "new", "with --init-from",
            " does not apply to a run without --init-from: drop it"),
    Applies((*PREPROCESS, "mirror"), lambda s: s.mode != "resume" or s.corpus_given,
            "to a resumed run only with its corpus",
            ": a resumed run reads its own dataset, so without a corpus these say nothing; drop "
            "them (or give the run's corpus with the options it was made with)"),
    Applies(("cutoffs",), lambda s: s.softmax != "full", "with --softmax adaptive or auto",
            " applies to --softmax adaptive (or auto), not full"),
    Applies(("weight_decay", "grad_clip"), lambda s: s.optim != "rprop", "not with --optim rprop",
            " does not apply to --optim rprop: it steps by the sign of each gradient, so a decay "
            "term or a clipped norm changes nothing; drop it"),
    Applies(("momentum",), lambda s: s.mode == "resume" or s.optim in MOMENTUM_OPTIMIZERS,
            "with --optim sgd or rmsprop",  # (a resumed run keeps its own: refused as such)
            " applies to --optim sgd and rmsprop (adam's and adamw's momentum is their betas, "
            "rprop has none): drop it, or use --optim sgd"),
    Applies(("warmup", "min_lr_ratio"), lambda s: s.optim != "rprop", "not with --optim rprop",
            " does not apply to --optim rprop: it reads --lr once, as each weight's first step, "
            "and adapts the steps itself after that (a warm-up would only shrink that first "
            "step: set --lr instead); drop it"),
    Applies(LM_ONLY, lambda s: s.task != "fill", "to language models, not to --task fill",
            " does not apply to --task fill (the masked bidirectional model): drop it"),
    Applies(("label_column", "features", "char_emb", "char_filters", "feature_emb"),
            lambda s: s.data_format != "segmented", "to a tagger of --format conll",
            " applies to --format conll (columns per token), not segmented text: drop it"),
    Applies(("bigram_emb",), lambda s: s.data_format != "conll",
            "to a tagger of --format segmented",
            " applies to --format segmented (characters of words separated by spaces), not "
            "conll: drop it"),
    Applies(("threads",), lambda s: s.device == "cpu", "on the CPU",
            " sets how many CPU threads torch computes with, and this run computes on the GPU "
            "(--device): drop it"),
    Applies(EVALUATION, lambda s: s.has_validation, "where the data has a validation split",
            ": the data has no validation split to evaluate on (none made, or shorter than 2 "
            "tokens, a fill model's one --seq-len window): "
            "drop it, or give the text a validation split (--val-frac or --valid FILE)"),
)

# What a device class trains at, for how many passes over a corpus a --max-time allows. CUDA:
# an H200 (a 3×512 LSTM, 128×256 under float16: bench/train_speed.py, 1.11 M tokens/s;
# ../shared/gpu-runs), where tiny Shakespeare's 3×1024 recipe ran at 350k tokens/s. CPU: the
# fp32 char recipe (2×256 GRU) at 6,100–6,700 tokens/s on 2 AMD EPYC Zen 1 cores, whatever
# model is trained: a faster CPU or a smaller model makes more passes than counted (its
# many-pass recipe comes later than it could), a bigger model typed with --max-time fewer.
TOKENS_PER_S = {"cuda": 350_000.0, "cpu": 6_000.0}

LR_MEASURED_WITH = ("adamw", "adam")  # the optimizers every recipe's lr was measured with

# Measured on 2 cores unless said; each figure is in the README's Benchmarks.
CHAR_CPU_BF16 = ("bench/train_shakespeare.py --budget 600, Zen 4, 2026-12-02: 1.4163; another Zen 4 "
                 "(its 2×512 LSTM step 1.08× faster in bf16), 2026-12-05: 1.4232, where the fp32 "
                 "recipe reached 1.4468; 2026-12-06, --as-typed: 1.4133 and 1.4134 (the fp32 "
                 "recipe there: 1.4424)")
CHAR_CPU_FP32 = ("bench/train_shakespeare.py --budget 600, AMD EPYC Zen 1 (no bf16), 2026-12-04: "
                 "1.486 nats/char; 300-s screens there: this 1.623, 2×256 LSTM 1.678, 3×256 GRU "
                 "1.822, and the 2×512 LSTM above trains a few steps a minute")
WORD_CPU = "bench/train_ptb.py --budget 600, 2026-12-02: test ppl 97.27, with KN5 87.55"
WORD_CPU_FP32 = ("bench/train_ptb.py --budget 600, AMD EPYC Zen 1 (no bf16), 2026-12-04: test ppl "
                 "147.66, with KN5 112.69 (6.2k tok/s); at the 2×512 it has elsewhere: 230.53 "
                 "and 130.20 (1.7k tok/s, a third of an epoch)")
CHAR_CPU_PASSES = ("bench/train_shakespeare.py --corpus (tiny Shakespeare's first 110 kB), AMD EPYC "
                   "Zen 1, 2026-12-05: dropout 0.1 / 0.3 / 0.5 in 240 s (14 passes) 1.5765 / "
                   "1.5568 / 1.5974 nats/char; in 480 s (28 passes) 1.6141 / 1.5812 / 1.5520, "
                   "where 0.1's best came at a third of the run, 0.22 better than its end")
GPU_RUNS = "one H200, ../shared/gpu-runs, 2026-12-04"
MANY_PASSES = 8  # a budget reading the training text more often than this overfits: on CUDA a
# big model (tiny Shakespeare, 3×1024 LSTM, dropout 0.4: best val 1.4047 at 60 s = 21 passes,
# then worse to 1.4285 at 120 s), on a CPU the 2×256 GRU (CHAR_CPU_PASSES), so the recipes
# regularise harder and stop at a plateau


def _lm(level: str, device: str) -> Callable[[Situation], bool]:
    def when(s: Situation) -> bool:
        return s.task == "lm" and (s.level == "word") == (level == "word") and s.device == device
    return when


MOST_PASSES = 20  # CPU: beyond this the char recipe's dropout is raised again (CHAR_CPU_PASSES)


def _many_passes(s: Situation, passes: float = MANY_PASSES) -> bool:
    return s.epochs_in_budget is not None and s.epochs_in_budget > passes


# Where bf16's lead on the reference step splits the CPU recipes. Char level: no margin, neither
# recipe being the exact choice to keep (a Zen 4 measured 1.08×, and there the bf16 recipe reached
# 1.4232 nats/char against the fp32 one's 1.4468, 2026-12-05). Word level: the measured choices'
# margin, as the word recipes were measured with (no machine between 1.0× and 1.1× tried yet).
CHAR_BF16_LEAD = 1.0
WORD_BF16_LEAD = CLEARLY_FASTER


def _bf16_char(s: Situation) -> bool:
    return _lm("char", "cpu")(s) and s.cpu_bf16_lead >= CHAR_BF16_LEAD


def _fp32_cpu_char(s: Situation) -> bool:
    return _lm("char", "cpu")(s) and s.cpu_bf16_lead < CHAR_BF16_LEAD


RECIPES: tuple[Recipe, ...] = (
    Recipe("char level on a CPU where bf16 is fast", _bf16_char, {"precision": "bf16"},
           f"the defaults shown; bf16 for that model only, another shape's precision measured; "
           f"{CHAR_CPU_BF16} nats/char"),
    Recipe("char level on a CPU where fp32 is the faster", _fp32_cpu_char,
           {"cell": "gru", "hidden": 256, "dropout": 0.1, "lr": 6e-3}, CHAR_CPU_FP32),
    Recipe(f"char level on a CPU where fp32 is the faster, over {MANY_PASSES} passes in the budget",
           lambda s: _fp32_cpu_char(s) and _many_passes(s), {"dropout": 0.3, "patience": 4},
           f"{CHAR_CPU_PASSES}; patience derived: 4 evaluations without a better val end the "
           "run"),
    Recipe(f"char level on a CPU where fp32 is the faster, over {MOST_PASSES} passes in the budget",
           lambda s: _fp32_cpu_char(s) and _many_passes(s, MOST_PASSES), {"dropout": 0.5},
           CHAR_CPU_PASSES),
    Recipe("word level off CUDA", lambda s: s.task == "lm" and s.level == "word"
           and s.device != "cuda",
           {"cell": "lstm", "tie_weights": False, "locked_dropout": True, "dropout": 0.2,
            "seq_len": 35, "batch_size": 64, "lr": 4e-3, "weight_decay": 0.1, "grad_clip": 0.25,
            "eval_every": 1000}, WORD_CPU),
    Recipe("word level on a CPU where fp32 is the faster",
           lambda s: _lm("word", "cpu")(s) and s.cpu_bf16_lead < WORD_BF16_LEAD, {"hidden": 256},
           WORD_CPU_FP32),
    Recipe("char level on CUDA", _lm("char", "cuda"),
           {"cell": "lstm", "layers": 3, "hidden": 1024, "tie_weights": False, "dropout": 0.25,
            "seq_len": 128, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.1, "warmup": 200,
            "min_lr_ratio": 0.02},
           f"{GPU_RUNS}: this model at dropout 0.4 reached 1.4047 nats/char on tiny Shakespeare "
           "in 60 s, 350k tokens/s; for corpora read fewer times, less dropout (not measured yet)"),
    Recipe(f"char level on CUDA, over {MANY_PASSES} passes in the budget",
           lambda s: _lm("char", "cuda")(s) and _many_passes(s),
           {"dropout": 0.5, "locked_dropout": True, "weight_drop": 0.2, "patience": 8},
           f"{GPU_RUNS}: at dropout 0.4 the best val came at 60 s of 120 and got worse after; "
           "derived, waiting for a GPU to measure (bench/gpu_suite.sh recipes)"),
    Recipe("word level on CUDA", _lm("word", "cuda"),
           {"layers": 2, "hidden": 1500, "tie_weights": True, "locked_dropout": False,
            "dropout": 0.65, "seq_len": 35, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.01,
            "warmup": 300, "min_lr_ratio": 0.02, "eval_every": 500},
           f"{GPU_RUNS}: PTB in 140 s, test ppl 85.38 alone, 77.37 with KN5, 257k tokens/s"),
    Recipe(f"word level on CUDA, over {MANY_PASSES} passes in the budget",
           lambda s: _lm("word", "cuda")(s) and _many_passes(s),
           {"locked_dropout": True, "dropout": 0.5, "weight_drop": 0.3, "embed_drop": 0.1,
            "patience": 8},
           f"{GPU_RUNS}: 140 s were 38 passes over PTB and still improving; AWD-LSTM's "
           "regularisers for the longer budget; derived, waiting for a GPU to measure"),
    Recipe("--optim sgd", lambda s: s.optim == "sgd", {"weight_decay": 0.0},
           "plain SGD, as pytorch/examples' word language model trains it (lr 20, clip 0.25): the "
           "decays above are AdamW's, decoupled; as SGD's L2 term at its lr (1 to 20) they would "
           "shrink the weights by 1% to 200% a step"),
    Recipe("--optim rprop", lambda s: s.optim == "rprop", dict(RPROP_NEUTRAL),
           "rprop steps by the sign of each gradient: a decay term or a clipped norm would change "
           "nothing; it reads --lr once, as each weight's first step (torch.optim.Rprop), so the "
           "schedule is flat: a warm-up would only shrink that first step"),
)


def refuse_inapplicable(typed: frozenset[str], situation: Situation) -> None:
    """A typed option whose condition does not hold here: an error saying why."""
    for rule in APPLIES:
        stray = [flag(n) for n in rule.options if n in typed]
        if stray and not rule.when(situation):
            raise UserError(f"{', '.join(stray)}{rule.refusal}")


def by_bf16_speed(situation: Situation) -> set[str]:
    """The names of the recipes that bf16's measured speed on a CPU decides (in or out)."""
    fast, slow = replace(situation, cpu_bf16_lead=math.inf), replace(situation, cpu_bf16_lead=0.0)
    return {r.name for r in RECIPES if r.when(fast) != r.when(slow)}


def recipe(situation: Situation, typed: frozenset[str]) -> tuple[dict[str, object], dict[str, str]]:
    """The values of every matching recipe for the options not typed and applying here (later
    recipes win), and for each the recipe it came from."""
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    # (data with no validation split leaves an evaluation option nothing to act on; the other
    # rules' refusals are of typed values: rprop's recipe sets their neutral ones, and says so)
    idle = set() if situation.has_validation else set(EVALUATION)
    for entry in RECIPES:
        if entry.when(situation):
            for name, value in entry.values.items():
                # a recipe's lr was measured with Adam(W): another optimizer keeps its own default
                lr_elsewhere = name == "lr" and situation.optim not in LR_MEASURED_WITH
                # (nor an evaluation option where there is nothing to evaluate: --patience)
                if name not in typed and not lr_elsewhere and name not in idle:
                    values[name], sources[name] = value, f"recipe: {entry.name}"
                elif name not in typed and lr_elsewhere:  # said, as it differs from the recipe's
                    sources[name] = (f"{situation.optim}'s default: the recipe's {value} was "
                                     "measured with adamw")
    return values, sources


def help_text(command_options: set[str]) -> str:
    """Both tables, for `charrnn train --help`: the rules of the command's own options (the table
    also holds `tag train`'s, which `train` does not take)."""
    lines = ["Defaults by situation (an option typed always wins):"]
    for entry in RECIPES:
        said = ", ".join(_spelled(k, v) for k, v in entry.values.items()) or "as shown below"
        lines.append(f"  {entry.name}: {said} ({entry.because}).")
    lines.append("Options that apply only in some situations:")
    for rule in APPLIES:
        names = [n for n in rule.options if n in command_options]
        if names:
            lines.append(f"  {', '.join(flag(n) for n in names)}: {rule.condition}.")
    return "\n\n".join(lines)


def _spelled(name: str, value: object) -> str:
    if isinstance(value, bool):
        return flag(name) if value else f"--no-{name.replace('_', '-')}"
    return f"{flag(name)} {value}"
