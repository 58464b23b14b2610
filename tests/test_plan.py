"""The plan layer: one table of rules, recipes by situation, measured choices — decided without
torch from a request and facts, so every situation (a GPU, a bf16-fast CPU) is checked here."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from charrnn.errors import UserError
from charrnn.lm.config import DataFacts, TrainConfig
from charrnn.lm.speed import Measurement
from charrnn.plan import measured, rules
from charrnn.plan.request import Request
from charrnn.plan.train import new_config, passes_in_budget, resumed_config

OPTIONS = {**asdict(TrainConfig()), "inputs": ["c.txt"], "resume": None, "init_from": None,
           "unk": "add", "grow_vocab": 0, "run_name": None}
CHARS = DataFacts("char", 65, 1_000_000, [10, 30])
WORDS = DataFacts("word", 10_000, 929_589, [2000, 6000])


class FakeJob:
    """A machine whose measured seconds per step the test sets (candidate → seconds)."""

    def __init__(self, device: str = "cpu", seconds: dict | None = None,
                 unavailable: dict | None = None) -> None:
        self.device_type, self.calls, self.windows, self.threads = device, [], [], []
        self.seconds, self.unavailable = seconds or {}, unavailable or {}

    def measure(self, config, batch, candidates, window=None, threads=0) -> Measurement:
        self.calls.append((config, batch, dict(candidates)))
        self.windows.append(window)
        self.threads.append(threads)
        return Measurement({k: v for k, v in self.seconds.items() if k in candidates},
                           {k: v for k, v in self.unavailable.items() if k in candidates})


from charrnn.lm.speed import machine_busy as MACHINE_BUSY  # noqa: E402 (before conftest's)


def _request(**typed) -> Request:
    return Request.of({**OPTIONS, **typed}, set(typed))


def test_word_level_takes_its_recipe_for_what_was_not_typed_and_says_so() -> None:
    resolved = new_config(_request(lr=1e-3), WORDS, FakeJob(seconds={"fp32 full": 1.0}))
    cfg, sources = resolved.config, resolved.sources
    assert (cfg.batch_size, cfg.seq_len, cfg.tie_weights, cfg.lr) == (64, 35, False, 1e-3)
    assert sources["batch_size"] == "recipe: word level off CUDA" and sources["lr"] == "typed"


def test_char_corpora_of_nearly_one_vocabulary_share_one_reference_measurement() -> None:
    """58 and 62 characters were timed apart: near a lead of 1.0 one machine gave one corpus the
    bf16 recipe and the other the fp32 one, by noise."""
    from charrnn.plan.measured import bf16_lead

    vocabularies = []  # (64 and 128 still split 61 and 80 characters on one machine)
    for vocab in (58, 62, 64, 65, 80, 103, 256, 2541, 2701, 5000):
        job = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 1.0})
        bf16_lead(job, DataFacts("char", vocab, 1_000_000, [10, 30]))
        vocabularies.append(job.calls[0][0].vocab_size)
    assert vocabularies == [256] * 7 + [4096, 4096, 8192]


def test_a_faster_adaptive_softmax_is_chosen_only_when_clearly_faster() -> None:
    fast = FakeJob(seconds={"fp32 full": 1.0, "fp32 adaptive": 0.5})
    cfg = new_config(_request(precision="fp32"), WORDS, fast).config
    assert (cfg.softmax, cfg.cutoffs) == ("adaptive", [2000, 6000])
    close = FakeJob(seconds={"fp32 full": 1.0, "fp32 adaptive": 0.95})
    resolved = new_config(_request(precision="fp32"), WORDS, close)
    assert (resolved.config.softmax, resolved.config.cutoffs) == ("full", [])
    assert "adaptive ran 1.05× the speed of full" in resolved.sources["softmax"]


def test_precision_auto_follows_the_measurement_not_the_cpu_flags() -> None:
    measured = {"fp32 full": 1.0, "bf16 full": 0.4, "fp32 adaptive": 0.5, "bf16 adaptive": 0.2}
    cfg = new_config(_request(), WORDS, FakeJob(seconds=measured)).config
    assert (cfg.precision, cfg.softmax) == ("bf16", "adaptive")
    slow = {**measured, "bf16 full": 2.0, "bf16 adaptive": 1.0}
    cfg = new_config(_request(), WORDS, FakeJob(seconds=slow)).config
    assert (cfg.precision, cfg.softmax) == ("fp32", "adaptive")


def test_a_bf16_fast_cpu_gets_the_bf16_char_recipe_and_another_the_fp32_one() -> None:
    bf16 = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.4})
    fp32 = FakeJob(seconds={"fp32 full": 1.0}, unavailable={"bf16 full": "no kernel"})
    on_bf16, on_fp32 = new_config(_request(), CHARS, bf16), new_config(_request(), CHARS, fp32)
    assert on_bf16.config.precision == "bf16" and on_fp32.config.precision == "fp32"
    fp32_recipe = next(r for r in rules.RECIPES if "fp32" in r.name and "char" in r.name)
    for name, value in fp32_recipe.values.items():
        assert getattr(on_fp32.config, name) == value, name
        assert on_fp32.sources[name] == f"recipe: {fp32_recipe.name}: bf16 cannot run here (no kernel)"
    assert (on_bf16.config.cell, on_bf16.config.hidden) == ("lstm", 512)  # the dataclass's


@pytest.mark.parametrize(("bf16_seconds", "recipe"), [(0.93, "bf16"), (1.0, "bf16"), (1.05, "fp32")])
def test_the_char_recipe_follows_whichever_precision_steps_faster_with_no_margin(
        bf16_seconds: float, recipe: str) -> None:
    """A lead too small to change a measured precision (CLEARLY_FASTER) still picks the recipe:
    neither recipe is the exact one to keep; the bf16 recipe then trains in bf16."""
    job = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": bf16_seconds})
    resolved = new_config(_request(), CHARS, job)
    name = f"char level on a CPU where {'bf16 is fast' if recipe == 'bf16' else 'fp32 is the faster'}"
    assert resolved.sources["cell" if recipe == "fp32" else "precision"].startswith(f"recipe: {name}")
    assert resolved.config.cell == ("lstm" if recipe == "bf16" else "gru")
    assert resolved.config.precision == ("bf16" if recipe == "bf16" else "fp32")
    if recipe == "bf16":  # the measurement that chose it, in the header
        ratio = (f"fp32 ran {bf16_seconds:.2f}× the speed of bf16 on the 2×512 LSTM reference "
                 "step here")
        assert resolved.sources["precision"] == f"recipe: {name}: {ratio}"


def test_the_reference_step_that_picks_the_char_recipe_is_timed_on_a_longer_window() -> None:
    """bf16's lead on the 2×512 LSTM is measured on REFERENCE_WINDOW time steps (on 4, the
    costs around the recurrence hid it, and one run in a few took the fp32 recipe on a Zen 4)."""
    job = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.9})
    new_config(_request(), CHARS, job)
    (reference, _, _), *_ = job.calls  # the recipe is picked first
    assert (reference.cell, reference.layers, reference.hidden) == ("lstm", 2, 512)
    assert job.windows[0] == measured.REFERENCE_WINDOW >= 16
    assert set(job.windows[1:]) <= {None}  # the run's own choices: speed's own window


def test_the_recipes_precision_is_for_its_model_another_shape_is_measured() -> None:
    job = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.95})  # fast, not clearly
    gru = new_config(_request(cell="gru"), CHARS, job)
    assert gru.config.precision == "fp32" and gru.sources["precision"].startswith("machine: ")
    wide = new_config(_request(hidden=768), CHARS, job)
    assert wide.config.precision == "fp32" and wide.sources["precision"].startswith("machine: ")
    batch = new_config(_request(batch_size=64), CHARS, job)  # not the step that was measured
    assert batch.config.precision == "fp32" and batch.sources["precision"].startswith("machine: ")
    assert new_config(_request(), CHARS, job).config.precision == "bf16"


def test_a_fine_tune_measures_the_parents_precision_instead_of_taking_the_recipes() -> None:
    from charrnn.lm.config import ModelConfig
    from charrnn.plan.train import finetune_config

    parent = ModelConfig(65, "gru", 2, 256, dropout=0.1)
    job = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.95})  # bf16 "fast", not clearly
    resolved = finetune_config(_request(), CHARS, parent, "char", job)
    assert resolved.config.precision == "fp32"
    assert resolved.sources["precision"].startswith("machine: ")
    typed = finetune_config(_request(precision="bf16"), CHARS, parent, "char", job)
    assert typed.config.precision == "bf16" and typed.sources["precision"] == "typed"
    reference = ModelConfig(65, "lstm", 2, 512, dropout=0.25, tie_weights=True)
    same = finetune_config(_request(), CHARS, reference, "char", job)  # as a new run of it
    assert same.config.precision == "bf16" and same.sources["precision"].startswith("recipe: ")


def test_word_recipes_keep_the_measured_choices_margin_for_bf16() -> None:
    slight = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.95, "fp32 adaptive": 1.0,
                              "bf16 adaptive": 0.95})  # bf16 1.05× faster: within noise
    assert new_config(_request(), WORDS, slight).config.hidden == 256
    assert new_config(_request(), CHARS, slight).config.hidden == 512  # the char split has none


def test_a_typed_auto_precision_is_measured_like_an_untyped_one() -> None:
    job = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.5})
    typed, untyped = new_config(_request(precision="auto"), CHARS, job), new_config(_request(), CHARS, job)
    assert (typed.config.cell, typed.config.precision) == (untyped.config.cell, "bf16") == ("lstm", "bf16")

    class Windows(FakeJob):  # bf16 ahead on the reference window, behind on a 4-step one
        def measure(self, config, batch, candidates, window=None, threads=0) -> Measurement:
            bf16 = 0.7 if window == measured.REFERENCE_WINDOW else 1.25
            self.seconds = {"fp32 full": 1.0, "bf16 full": bf16}
            return super().measure(config, batch, candidates, window, threads)

    typed = new_config(_request(precision="auto"), CHARS, Windows())  # (it skipped the recipe's
    untyped = new_config(_request(), CHARS, Windows())  # bf16 and measured fp32 on 4 steps)
    assert typed.config == untyped.config and typed.sources == untyped.sources
    assert typed.config.precision == "bf16" and typed.sources["precision"].startswith("recipe: ")


def test_the_speed_is_measured_on_the_threads_the_run_trains_on() -> None:
    """A run typed --threads 1 took a reading made on 2 threads (the process's)."""
    job = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.7})
    new_config(_request(threads=1, hidden=256), CHARS, job)
    assert job.threads and set(job.threads) == {1}


def test_a_cpu_where_fp32_is_faster_trains_the_smaller_word_model() -> None:
    bf16 = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.4, "fp32 adaptive": 1.0,
                            "bf16 adaptive": 0.4})
    fp32 = FakeJob(seconds={"fp32 full": 1.0, "fp32 adaptive": 0.5},
                   unavailable={"bf16 full": "no kernel", "bf16 adaptive": "no kernel"})
    on_bf16, on_fp32 = new_config(_request(), WORDS, bf16), new_config(_request(), WORDS, fp32)
    assert on_fp32.config.hidden == 256 and on_bf16.config.hidden == 512
    assert on_fp32.sources["hidden"] == ("recipe: word level on a CPU where fp32 is the faster: "
                                        "bf16 cannot run here (no kernel)")
    assert on_fp32.config.batch_size == 64  # the rest of the word recipe stays
    assert new_config(_request(hidden=384), WORDS, fp32).config.hidden == 384


def test_cuda_recipes_scale_with_the_passes_a_budget_allows_and_never_measure() -> None:
    gpu, big = FakeJob("cuda"), DataFacts("char", 300, 500_000_000, [])
    short = new_config(_request(max_time=600.0), big, gpu).config  # 0.4 passes
    long = new_config(_request(max_time=120.0), CHARS, gpu).config  # 42 passes
    assert gpu.calls == [] and short.precision == "auto" and short.softmax == "full"
    assert long.dropout > short.dropout  # many passes over a small corpus: more regularisation
    word = new_config(_request(max_time=300.0), WORDS, gpu)
    assert word.config.softmax == "full" and word.sources["hidden"].startswith("recipe: word")
    # No budget typed: the default 3,000 steps of the CUDA recipe's 64×128 tokens are 24.6
    # passes over a million characters, 0.05 over 500 million.
    assert new_config(_request(), CHARS, gpu).config.patience == 8
    assert new_config(_request(), big, gpu).config.patience is None


def test_the_passes_a_budget_allows_are_the_least_of_its_bounds() -> None:
    def passes(tokens: int = 204_800, device: str = "cpu", **given) -> float | None:
        return passes_in_budget(TrainConfig(**given), tokens, device)  # 32×64 = 2,048 a step

    assert passes(epochs=3.0) == 3.0
    assert passes(max_steps=100) == pytest.approx(1.0)
    assert passes(max_steps=100, epochs=0.5) == pytest.approx(0.5)
    assert passes(max_time=60.0) == pytest.approx(rules.TOKENS_PER_S["cpu"] * 60 / 204_800)
    assert passes() == pytest.approx(TrainConfig.DEFAULT_MAX_STEPS / 100)  # no budget typed
    assert passes(max_time=60.0, device="mps") is None  # a time, at a rate not known


def test_a_small_corpus_on_a_cpu_gets_the_many_pass_recipes_and_tiny_shakespeare_does_not(
        ) -> None:
    fp32 = FakeJob(seconds={"fp32 full": 1.0}, unavailable={"bf16 full": "no kernel"})
    small = DataFacts("char", 65, 100_000, [10, 30])
    some = new_config(_request(max_time=300.0), small, fp32)  # 18 passes
    most = new_config(_request(), small, fp32)  # the default 3,000 steps: 61 passes
    assert (some.config.dropout, some.config.patience) == (0.3, 4)
    assert (most.config.dropout, most.config.patience) == (0.5, 4)
    recipe = "recipe: char level on a CPU where fp32 is the faster, over {} passes in the budget"
    assert some.sources["dropout"].startswith(recipe.format(8))
    assert most.sources["dropout"].startswith(recipe.format(20))
    assert most.sources["patience"] == some.sources["dropout"]
    assert new_config(_request(dropout=0.2), small, fp32).config.dropout == 0.2
    for request in (_request(), _request(max_time=600.0)):  # 6.1 and 3.6 passes: the recipe
        cfg = new_config(request, CHARS, fp32).config
        assert (cfg.dropout, cfg.patience) == (0.1, None)


def test_a_recipe_sets_no_patience_where_the_data_has_no_validation() -> None:
    """--patience counts evaluations, and without a validation split there are none: the run
    header showed a recipe's patience 4 that could never act."""
    fp32 = FakeJob(seconds={"fp32 full": 1.0}, unavailable={"bf16 full": "no kernel"})
    unscored = DataFacts("char", 65, 100_000, [10, 30], has_validation=False)
    resolved = new_config(_request(), unscored, fp32)
    assert (resolved.config.dropout, resolved.config.patience) == (0.5, None)
    assert "patience" not in resolved.sources


def test_every_rule_refuses_its_options_where_they_do_not_apply() -> None:
    cases = [
        (rules.Situation(mode="resume"), "unk", "a resumed run keeps the tokenizer"),
        (rules.Situation(mode="new"), "grow_vocab", "does not apply to a run without --init-from"),
        (rules.Situation(mode="resume", corpus_given=False), "min_count",
         "a resumed run reads its own dataset"),
        (rules.Situation(softmax="full"), "cutoffs", "applies to --softmax adaptive"),
        (rules.Situation(optim="rprop"), "weight_decay", "does not apply to --optim rprop"),
        (rules.Situation(optim="rprop"), "warmup", "reads --lr once, as each weight's first step"),
        (rules.Situation(optim="adamw"), "momentum", "applies to --optim sgd and rmsprop"),
        (rules.Situation(task="fill"), "tie_weights", "does not apply to --task fill"),
        (rules.Situation(task="tag", data_format="segmented"), "features",
         "applies to --format conll"),
        (rules.Situation(task="tag", data_format="conll"), "bigram_emb",
         "applies to --format segmented"),
        (rules.Situation(has_validation=False), "patience", "the data has no validation split"),
        (rules.Situation(device="cuda"), "threads", "this run computes on the GPU"),
    ]
    assert len(cases) == len(rules.APPLIES)
    for situation, name, said in cases:
        with pytest.raises(UserError, match=said):
            rules.refuse_inapplicable(frozenset({name}), situation)
    for rule in rules.APPLIES:  # and where they apply, nothing is refused
        rules.refuse_inapplicable(frozenset(rule.options), rules.Situation(mode="finetune",
                                                                           optim="sgd"))


def test_rprop_takes_no_weight_decay_nor_clipping_by_default() -> None:
    cfg = new_config(_request(optim="rprop", precision="fp32"), CHARS, FakeJob()).config
    assert (cfg.weight_decay, cfg.grad_clip, cfg.base_lr) == (0.0, 0.0, 1e-3)
    assert (cfg.warmup, cfg.min_lr_ratio) == (0, 1.0)  # a flat schedule: rprop reads lr once


def test_a_recipe_lr_measured_with_adamw_is_not_given_to_another_optimizer() -> None:
    sgd = new_config(_request(optim="sgd"), WORDS, FakeJob(seconds={"fp32 full": 1.0})).config
    assert sgd.lr is None and sgd.base_lr == TrainConfig.DEFAULT_LR["sgd"]
    adamw = new_config(_request(), WORDS, FakeJob(seconds={"fp32 full": 1.0})).config
    assert adamw.lr == 4e-3


def test_the_settings_line_shows_another_optimizers_default_lr_and_why() -> None:
    """Only the recipe's lr was shown: with --optim sgd the header named no lr at all."""
    from charrnn.training.config import described_settings

    resolved = new_config(_request(optim="sgd"), WORDS, FakeJob(seconds={"fp32 full": 1.0}))
    assert resolved.sources["lr"].startswith("sgd's default: the recipe's")
    assert "lr 1.0 (sgd's default" in described_settings(resolved.config, resolved.sources)


def test_a_resumed_run_takes_a_new_budget_and_refuses_other_changes() -> None:
    saved = TrainConfig(hidden=64, max_steps=100)
    resolved = resumed_config(_request(max_steps=300), saved, {}, "r")
    assert resolved.config.max_steps == 300 and resolved.config.hidden == 64
    with pytest.raises(UserError, match=r"--hidden 128 \(the run has 64\)"):
        resumed_config(_request(hidden=128), saved, {}, "r")
    assert resumed_config(_request(hidden=64), saved, {}, "r").config.hidden == 64
    with pytest.raises(UserError, match=r"--eval-tokens 500 \(the run has none\)"):
        resumed_config(_request(eval_tokens=500), saved, {}, "r")  # not "has None"
    fp32 = replace(saved, precision="fp32")  # `auto` typed is the default's: refused, as it was
    for auto in ({"precision": "auto"}, {"softmax": "auto"}):  # for precision, it is no change
        assert resumed_config(_request(**auto), fp32, {"softmax": "full"}, "r").config == fp32


def test_train_help_reads_the_table_for_the_options_train_has() -> None:
    """It listed --label-column, --features, --bigram-emb …, which only `tag train` takes."""
    import inspect

    from charrnn.cli.train import train

    own = set(inspect.signature(train).parameters)
    text = rules.help_text(own)
    for entry in rules.RECIPES:
        assert entry.name in text
    for rule in rules.APPLIES:
        assert (rule.condition in text) == any(name in own for name in rule.options)
    assert "--label-column" not in text and "--bigram-emb" not in text
    assert "--label-column" in rules.help_text(own | {"label_column"})


def test_auto_threads_take_every_core_without_a_measurement() -> None:
    job = FakeJob(seconds={"fp32 full": 1.0, "1 thread": 0.1, "2 threads": 1.0})
    resolved = new_config(_request(precision="fp32"), CHARS, job)
    assert resolved.config.threads == 0 and "threads" not in resolved.sources
    assert job.calls == []
    assert new_config(_request(precision="fp32", threads=1), CHARS, job).config.threads == 1


def test_a_typed_adaptive_softmax_gets_the_frequency_cutoffs() -> None:
    job = FakeJob()
    cfg = new_config(_request(precision="fp32", softmax="adaptive"), WORDS, job).config
    assert (cfg.softmax, cfg.cutoffs) == ("adaptive", [2000, 6000])


HANZI = DataFacts("char", 5237, 2_121_544, [720, 1583])


def test_a_fill_groups_lm_is_sized_and_measured_for_a_cpu_where_bf16_is_fast() -> None:
    from charrnn.fill.train_group import LM
    from charrnn.plan.fill import group_lm

    job = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.6, "fp32 adaptive": 0.5,
                           "bf16 adaptive": 0.25})
    cfg, sources = group_lm(LM, HANZI, job)
    assert (cfg.hidden, cfg.precision, cfg.softmax) == (512, "bf16", "adaptive")
    assert sources["hidden"] == ("recipe: fill group LM on a CPU where bf16 is fast: fp32 ran "
                                 "0.60× the speed of bf16 on the 2×512 LSTM reference step here")
    assert "fp32 ran 0.50× the speed of bf16 on this model's step" in sources["precision"]
    assert job.calls[-1][0].hidden == 512  # the precision measured on the model it trains
    assert (cfg.layers, cfg.batch_size, cfg.direction) == (LM.layers, LM.batch_size, LM.direction)


def test_a_fill_groups_lm_keeps_its_size_where_bf16_is_slow_or_absent() -> None:
    from charrnn.fill.train_group import LM
    from charrnn.plan.fill import group_lm

    slow = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 2.0, "fp32 adaptive": 0.5,
                            "bf16 adaptive": 1.0})
    cfg, sources = group_lm(LM, HANZI, slow)
    assert (cfg.hidden, cfg.precision, cfg.softmax) == (LM.hidden, "fp32", "adaptive")
    assert "hidden" not in sources and "bf16 ran 0.50× the speed of fp32" in sources["precision"]
    absent = FakeJob(seconds={"fp32 full": 1.0, "fp32 adaptive": 0.5},
                     unavailable={"bf16 full": "no AVX512", "bf16 adaptive": "no AVX512"})
    cfg, sources = group_lm(LM, HANZI, absent)
    assert (cfg.hidden, cfg.precision) == (LM.hidden, "fp32")
    assert "bf16 cannot run here" in sources["precision"]
    # The reference step barely faster in bf16, this model's not clearly: the size stays too.
    close = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.95, "fp32 adaptive": 0.5,
                             "bf16 adaptive": 0.48})
    cfg, sources = group_lm(LM, HANZI, close)
    assert (cfg.hidden, cfg.precision) == (LM.hidden, "fp32") and "hidden" not in sources


def test_a_fill_groups_lm_on_cuda_is_charrnn_trains_cuda_recipe_for_its_text_and_budget() -> None:
    """On CUDA the group's LM is what `charrnn train --device cuda` makes of this text in the
    stage's budget (here 86 passes: the many-pass regularisers), nothing measured; the group's
    own budget, direction and evaluation cadence stay."""
    from dataclasses import replace

    from charrnn.fill.train_group import LM
    from charrnn.plan.fill import group_lm

    job = FakeJob(device="cuda")
    stage = replace(LM, max_time=518.0, direction="backward", eval_seconds=51.8)
    cfg, sources = group_lm(stage, HANZI, job)
    assert job.calls == [] and cfg.softmax == "full" and cfg.precision == "auto"
    assert (cfg.layers, cfg.hidden, cfg.batch_size, cfg.seq_len) == (3, 1024, 64, 128)
    assert (cfg.dropout, cfg.weight_drop, cfg.locked_dropout) == (0.5, 0.2, True)
    assert sources["hidden"] == "recipe: char level on CUDA"
    assert sources["dropout"].startswith("recipe: char level on CUDA, over 8 passes")
    assert sources["precision"] == "rule: CUDA: float16 autocast with loss scaling"
    assert (cfg.max_time, cfg.direction, cfg.eval_seconds, cfg.patience, cfg.eval_tokens) == \
        (518.0, "backward", 51.8, LM.patience, LM.eval_tokens)
    # Less text than one batch of the recipe's: the group's batch, which the text was checked for.
    small = DataFacts("char", 3000, 6_000, [])
    cfg, sources = group_lm(stage, small, job)
    assert (cfg.hidden, cfg.batch_size, cfg.seq_len) == (1024, LM.batch_size, LM.seq_len)
    assert "batch_size" not in sources and "seq_len" not in sources


def test_typed_cutoffs_are_refused_wherever_auto_takes_the_full_softmax() -> None:
    """By measurement, by the small-vocabulary rule (a typed precision skips the measurement),
    and on CUDA: the cut-offs would be dropped."""
    for request, job in ((_request(precision="fp32", cutoffs=[10, 20]), FakeJob()),
                         (_request(cutoffs=[10, 20]), FakeJob(device="cuda"))):
        with pytest.raises(UserError, match="--cutoffs 10,20: --softmax auto chose the full"):
            new_config(request, CHARS, job)
    cfg = new_config(_request(precision="fp32", softmax="adaptive", cutoffs=[10, 20]), CHARS,
                     FakeJob()).config
    assert cfg.softmax == "adaptive" and cfg.cutoffs == [10, 20]


def test_locked_dropout_at_dropout_zero_is_refused() -> None:
    with pytest.raises(UserError, match="--locked-dropout draws the --dropout mask"):
        new_config(_request(locked_dropout=True, dropout=0.0, precision="fp32"), CHARS, FakeJob())
    cfg = new_config(_request(locked_dropout=True, dropout=0.2, precision="fp32"), CHARS,
                     FakeJob()).config
    assert cfg.locked_dropout and cfg.dropout == 0.2


def test_a_typed_warmup_as_long_as_the_run_is_said_with_the_setting() -> None:
    """The lr only climbs in such a run: said, not refused (a run trained in parts resumes
    with a longer budget and reaches the peak then)."""
    long = new_config(_request(warmup=500, max_steps=500, precision="fp32"), CHARS, FakeJob())
    assert long.config.warmup == 500
    assert long.sources["warmup"].startswith("typed; the run's 500 steps end inside it")
    by_epochs = new_config(_request(warmup=40, epochs=1.0, seq_len=1000, precision="fp32"),
                           CHARS, FakeJob())  # 1M chars / 32×1000 a step, up
    assert "the run's 32 steps end inside it" in by_epochs.sources["warmup"]
    assert new_config(_request(warmup=499, max_steps=500, precision="fp32"), CHARS,
                      FakeJob()).sources["warmup"] == "typed"
    assert "warmup" not in new_config(_request(max_steps=50, precision="fp32"), CHARS,
                                      FakeJob()).sources  # (its default: as nanoGPT, unsaid)


def test_a_batch_the_text_cannot_fill_is_refused_before_any_measurement() -> None:
    """The measurement allocated the typed batch first: 10⁸ rows ate the machine's memory."""
    job = FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 0.5})
    with pytest.raises(UserError, match="too few for one batch of 100000000×"):
        new_config(_request(batch_size=10**8), CHARS, job)
    assert not [c for c in job.calls if c[1] == 10**8]


def test_a_forward_and_a_backward_lm_of_one_shape_share_one_speed_measurement() -> None:
    """Timed apart, a fill group's forward LM trained in fp32 and its backward LM in bf16:
    the same step's work, chosen twice by noise."""
    from dataclasses import replace

    from charrnn.lm.config import ModelConfig
    from charrnn.lm.speed import _key

    forward = ModelConfig(vocab_size=300, cell="lstm", layers=2, hidden=64)
    candidates = {"fp32": ("fp32",), "bf16": ("bf16",)}
    assert _key(forward, 32, candidates, 64) == \
        _key(replace(forward, direction="backward"), 32, candidates, 64)
    assert _key(forward, 32, candidates, 64) != _key(replace(forward, hidden=65), 32, candidates, 64)


def test_the_rprop_recipe_still_says_the_neutral_values_it_sets() -> None:
    resolved = new_config(_request(optim="rprop", precision="fp32"), CHARS, FakeJob())
    assert resolved.sources["weight_decay"] == "recipe: --optim rprop"
    assert (resolved.config.weight_decay, resolved.config.warmup) == (0.0, 0)


def test_plain_sgd_takes_no_weight_decay_from_an_adamw_recipe() -> None:
    """The README's `--optim sgd --lr 20` on PTB was refused: the word recipe's AdamW decay 0.1,
    as SGD's L2 term at lr 20, would flip the weights' sign every step."""
    sgd = new_config(_request(optim="sgd", lr=20.0), WORDS, FakeJob(seconds={"fp32 full": 1.0}))
    assert sgd.config.weight_decay == 0.0 and sgd.sources["weight_decay"] == "recipe: --optim sgd"
    typed = new_config(_request(optim="sgd", weight_decay=0.01), WORDS,
                       FakeJob(seconds={"fp32 full": 1.0}))
    assert typed.config.weight_decay == 0.01


def test_a_speed_measured_while_other_work_shares_the_cores_is_not_kept(
        monkeypatch, tmp_path) -> None:
    """Taken beside another training, bf16's lead read as fp32's, was cached, and every later
    run of the machine took the other recipe."""
    from charrnn.lm import speed
    from charrnn.lm.config import ModelConfig

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))
    config, candidates = ModelConfig(vocab_size=40, hidden=16, layers=1), {"fp32 full": ("fp32", "full")}
    monkeypatch.setattr(speed, "machine_busy", MACHINE_BUSY)  # (the tests' own: never busy)
    monkeypatch.setattr(speed.os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    busy = speed.measure(config, 4, candidates)
    assert busy.busy and not speed.measure(config, 4, candidates).cached
    reason = measured._why(replace(busy, seconds={"fp32 full": 1.0, "bf16 full": 2.0}),
                           "precision", "fp32", "fp32", "full")
    assert reason.endswith("(while other work shared the cores: not kept, measured again next run)")
    monkeypatch.setattr(speed.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert not speed.measure(config, 4, candidates).busy
    assert speed.measure(config, 4, candidates).cached


def test_the_fp32_char_recipe_says_the_measurement_that_chose_it() -> None:
    """The bf16 recipe's source quoted the reference step; the fp32 one's said nothing, so a
    run header read 'recipe: … where fp32 is the faster' beside a bf16 precision measured."""
    resolved = new_config(_request(), CHARS, FakeJob(seconds={"fp32 full": 1.0, "bf16 full": 1.3}))
    assert resolved.config.cell == "gru"
    assert resolved.sources["cell"] == (
        "recipe: char level on a CPU where fp32 is the faster: bf16 ran 0.77× the speed of fp32 "
        "on the 2×512 LSTM reference step here")
    assert resolved.sources["hidden"] == resolved.sources["cell"]
