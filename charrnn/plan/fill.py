"""`charrnn fill train`, planned: each language model of a fill group sized for this machine.

    the group's LM (fill.train_group.LM: the size measured best where fp32 is the faster)
        ← CPU:  GROUP_RECIPES: the size where this CPU's bf16 is fast (the reference step's
                lead, measured.bf16_lead, as for `charrnn train`'s char recipes)
          CUDA: the recipes `charrnn train --device cuda` gives this text in this budget
                (rules.RECIPES), but for what the group decides itself (GROUP_OWN)
        ← `precision` and `softmax` auto measured on that model (measured.py)
        → the library (lm.job.TrainJob) starts the run with it, the header saying why

The group's stages, budget shares and the fill model are the library's (fill.train_group); the
library alone trains them as they are, in float32 on a CPU.
"""

from __future__ import annotations

from dataclasses import replace

from charrnn.lm.config import DataFacts, TrainConfig, tbptt_min_tokens
from charrnn.plan import rules
from charrnn.plan.measured import bf16_lead, measured_choices
from charrnn.plan.rules import CHAR_BF16_LEAD, Recipe, Situation
from charrnn.plan.train import Job, Resolved, passes_in_budget

GROUP_LM_BF16 = ("`charrnn fill train zh_reviews.txt news.txt`'s forward LM, 518 s, AMD EPYC Zen 4 "
                 "(2 cores; the 2×512 reference step 1.92× faster in bf16, this 1×512's own 1.56×), "
                 "2026-12-06: 1×512 in bf16 "
                 "3.534 nats/char on the held-out 20,000, the 1×256 (float32, as before) 3.692")

GROUP_RECIPES: tuple[Recipe, ...] = (
    Recipe("fill group LM on a CPU where bf16 is fast",
           lambda s: s.device == "cpu" and s.cpu_bf16_lead >= CHAR_BF16_LEAD, {"hidden": 512},
           GROUP_LM_BF16),
)


# What the group decides for its LMs on every device: its budget and reading direction, and an
# evaluation cadence that stops an LM overfitting its text early (train_group.LM_EVALS).
GROUP_OWN = frozenset({"max_time", "direction", "device", "eval_every", "eval_seconds",
                       "eval_tokens", "patience"})
BATCH = frozenset({"batch_size", "seq_len"})


def group_lm(cfg: TrainConfig, facts: DataFacts, job: Job) -> tuple[TrainConfig, dict[str, str]]:
    """A fill group's LM stage for this machine: its recipe, then precision and softmax measured
    (the bigger size only where it trains in bf16); with where each changed value came from (the
    run header says it)."""
    if job.device_type == "cuda":
        return cuda_group_lm(cfg, facts, job)
    situation, measured = Situation(task="lm", level=facts.level, device=job.device_type), ""
    if job.device_type == "cpu":
        lead, measured = bf16_lead(job, facts, cfg.threads)
        situation = replace(situation, cpu_bf16_lead=lead)
    values, sources = {}, {}
    for entry in GROUP_RECIPES:
        if entry.when(situation):
            values.update(entry.values)
            sources.update({k: f"recipe: {entry.name}: {measured}" for k in entry.values})
    resolved = measured_choices(Resolved(replace(cfg, **values), sources), facts, job)
    if values and resolved.config.precision != "bf16":  # bf16's speed is what made it affordable
        resolved = measured_choices(Resolved(cfg, {}), facts, job)
    return resolved.config, resolved.sources


def cuda_group_lm(cfg: TrainConfig, facts: DataFacts, job: Job
                  ) -> tuple[TrainConfig, dict[str, str]]:
    """On CUDA, the group's LM as `charrnn train` makes a char model of this text in the stage's
    budget (the many-pass regularisers where the budget reads it often); the batch stays the
    group's where the text has less than one batch of the recipe's."""
    situation = Situation(task="lm", level=facts.level, device="cuda")
    first, _ = rules.recipe(situation, GROUP_OWN)
    passes = passes_in_budget(replace(cfg, **first), facts.train_tokens, "cuda")
    values, sources = rules.recipe(replace(situation, epochs_in_budget=passes), GROUP_OWN)
    batch, seq_len = values.get("batch_size", cfg.batch_size), values.get("seq_len", cfg.seq_len)
    if facts.train_tokens < tbptt_min_tokens(batch, seq_len):
        values = {k: v for k, v in values.items() if k not in BATCH}
        sources = {k: v for k, v in sources.items() if k not in BATCH}
    resolved = measured_choices(Resolved(replace(cfg, **values), sources), facts, job)
    return resolved.config, resolved.sources
