"""`--precision auto` and `--softmax auto`, decided by measuring this model on this machine.

    CPU:  one training step of the run's own model (cell, sizes, vocabulary, batch), timed in
          each setting the plan leaves open (machine.py; cached per machine and shape):
              precision  fp32 │ bf16 autocast        → bf16 only when it is ≥ 10% faster
              softmax    full │ adaptive (word level) → adaptive only when it is ≥ 10% faster
          a setting this CPU cannot run (oneDNN has no bf16 LSTM kernel without AVX512) is out;
          which CPU recipe (bf16_lead): fp32's time over bf16's on the 2×512 LSTM's step,
          read by the recipes (rules.py); the char one where bf16 is fast trains that model in
          bf16, the source saying this measurement
    CUDA: float16 autocast with loss scaling (cuDNN's RNNs run in float16 under any autocast) and
          the full softmax (the product is cheap there; the adaptive one reads each tail apart)

The source of each choice says the measured ratio, so the run header shows it.
"""

from __future__ import annotations

from dataclasses import replace

from charrnn.errors import UserError

CLEARLY_FASTER = 1.10  # a measured lead below this is noise: keep the exact / simpler choice
ADAPTIVE_MIN_VOCAB = 2000  # below this the full softmax is a small part of a step: not measured
# The shape whose bf16 speed tells a "bf16-fast" CPU (the char recipe that bf16 made affordable).
BF16_REFERENCE = {"cell": "lstm", "layers": 2, "hidden": 512, "batch": 32}
# Its window, in time steps: on a 4-step window (the other measurements') the per-step costs
# around the recurrence hide bf16's lead. Zen 4, 2026-12-06, 12 measurements each: 4 steps
# 1.01-1.38× (and one run's below 1.0 gave it the fp32 recipe: 1.4424 nats/char against 1.4133),
# 16 steps 1.34-1.73×, 64 steps (the recipe's own windows) 1.62-1.73×. The word recipes' split
# reads the same lead: no CPU measured so far is near it (Zen 1 and the Xeons have no usable bf16).
REFERENCE_WINDOW = 16
REFERENCE_VOCAB_LEAST = 256  # the reference step's vocabulary: the run's, up to a power of 2
REFERENCE_STEP = "the 2×512 LSTM reference step"  # how a run header names it


def measured_choices(resolved, facts, job):
    """`resolved` (plan.train.Resolved) with precision and softmax decided."""
    cfg, sources = resolved.config, dict(resolved.sources)
    if job.device_type != "cpu":
        softmax = "full" if cfg.softmax == "auto" else cfg.softmax
        precision = cfg.precision
        if cfg.softmax == "auto":
            sources["softmax"] = f"rule: {job.device_type}: the full softmax"
        if cfg.precision == "auto" and job.device_type == "cuda":
            sources["precision"] = "rule: CUDA: float16 autocast with loss scaling"
        _refuse_dropped_cutoffs(cfg, softmax, sources)
        return type(resolved)(replace(cfg, softmax=softmax, cutoffs=_cutoffs(cfg, facts, softmax)),
                              sources)
    precisions = ["fp32", "bf16"] if cfg.precision == "auto" else [cfg.precision]
    softmaxes = _softmax_candidates(cfg, facts)
    if cfg.softmax == "auto" and len(softmaxes) == 1:
        sources["softmax"] = f"rule: {facts.vocab:,} tokens: the full softmax"
    if len(precisions) * len(softmaxes) == 1 and precisions != ["bf16"]:
        _refuse_dropped_cutoffs(cfg, softmaxes[0], sources)
        cfg = replace(cfg, precision=precisions[0], softmax=softmaxes[0],
                      cutoffs=_cutoffs(cfg, facts, softmaxes[0]))
        return type(resolved)(cfg, sources)
    cutoffs = list(cfg.cutoffs or facts.cutoffs)
    model = cfg.model_config(facts.vocab, "full", cutoffs)
    candidates = {f"{p} {s}": (p, s) for p in precisions for s in softmaxes}
    measurement = job.measure(model, cfg.batch_size, candidates, threads=cfg.threads)
    if not measurement.seconds:
        raise UserError(f"this CPU cannot train this model in {precisions[0]}: "
                        f"{next(iter(measurement.unavailable.values()))}; use --precision fp32")
    precision, softmax = _pick(measurement, precisions, softmaxes)
    for name, chosen, other in (("precision", precision, precisions),
                                ("softmax", softmax, softmaxes)):
        if len(other) > 1:
            sources[name] = "machine: " + _why(measurement, name, chosen, precision, softmax)
    _refuse_dropped_cutoffs(cfg, softmax, sources)
    cfg = replace(cfg, precision=precision, softmax=softmax,
                  cutoffs=cutoffs if softmax == "adaptive" else [])
    return type(resolved)(cfg, sources)


def _refuse_dropped_cutoffs(cfg, softmax: str, sources: dict) -> None:
    """Typed --cutoffs where `auto` chose the full softmax (by rule or measurement): an error,
    as they would be dropped."""
    if cfg.cutoffs and softmax == "full" and cfg.softmax == "auto":
        raise UserError(f"--cutoffs {','.join(map(str, cfg.cutoffs))}: --softmax auto chose the "
                        f"full softmax here ({sources['softmax']}): type --softmax adaptive to "
                        "use them, or drop them")


def _softmax_candidates(cfg, facts) -> list[str]:
    if cfg.softmax != "auto":
        return [cfg.softmax]
    if facts.vocab < ADAPTIVE_MIN_VOCAB or not (cfg.cutoffs or facts.cutoffs):
        return ["full"]
    return ["full", "adaptive"]


def _cutoffs(cfg, facts, softmax: str) -> list[int]:
    """The adaptive softmax's clusters: typed, else by the training frequencies; none for full."""
    return list(cfg.cutoffs or facts.cutoffs) if softmax == "adaptive" else []


def _pick(measurement, precisions: list[str], softmaxes: list[str]) -> tuple[str, str]:
    """The measured choice, preferring fp32 and the full softmax unless clearly slower."""
    seconds = measurement.seconds
    best = (precisions[0], softmaxes[0])
    for p in precisions:
        for s in softmaxes:
            here, current = seconds.get(f"{p} {s}"), seconds.get(f"{best[0]} {best[1]}")
            if here is not None and (current is None or here * CLEARLY_FASTER < current):
                best = (p, s)
    return best


def _why(measurement, name: str, chosen: str, precision: str, softmax: str,
         step: str = "this model's step") -> str:
    """'bf16 ran 0.48× the speed of fp32 on this model's step here' and the like."""
    seconds, cut = measurement.seconds, measurement.unavailable
    other = {"precision": {"fp32": "bf16", "bf16": "fp32"},
             "softmax": {"full": "adaptive", "adaptive": "full"}}[name][chosen]
    mine = f"{chosen} {softmax}" if name == "precision" else f"{precision} {chosen}"
    theirs = f"{other} {softmax}" if name == "precision" else f"{precision} {other}"
    if theirs in cut:
        return f"{other} cannot run here ({cut[theirs][:80]})"
    if theirs not in seconds or mine not in seconds:
        return f"{chosen}, the faster in a measurement of {step}"
    ratio = seconds[mine] / seconds[theirs]
    return (f"{other} ran {ratio:.2f}× the speed of {chosen} on {step} here"
            + (" (cached)" if measurement.cached else "")
            + (" (while other work shared the cores: not kept, measured again next run)"
               if measurement.busy else ""))


def reference_vocab(vocab: int) -> int:
    """The vocabulary the reference step is timed with: the run's rounded up to a power of two,
    at least REFERENCE_VOCAB_LEAST, so that every alphabet (58, 80 or 103 characters) shares one
    cached measurement and one machine one recipe: timed apart, a lead near 1.0 split them
    between the two by noise (64 and 128 did on one 2-core machine). CJK text (2,500 and 2,700
    characters) shares one too; its larger output layer may lead otherwise, measured apart."""
    return max(REFERENCE_VOCAB_LEAST, 1 << max(0, vocab - 1).bit_length())


def bf16_lead(job, facts, threads: int = 0) -> tuple[float, str]:
    """fp32's step time over bf16's on the bf16 reference model (0 where bf16 cannot run), and
    the measurement in words (for the source of a recipe's precision), on the run's
    `threads` (0: the process's)."""
    from charrnn.lm.config import ModelConfig

    shape = {k: v for k, v in BF16_REFERENCE.items() if k != "batch"}
    model = ModelConfig(vocab_size=reference_vocab(facts.vocab), tie_weights=True, **shape)
    measurement = job.measure(model, BF16_REFERENCE["batch"],
                              {"fp32 full": ("fp32", "full"), "bf16 full": ("bf16", "full")},
                              REFERENCE_WINDOW, threads)
    fp32, bf16 = measurement.seconds.get("fp32 full"), measurement.seconds.get("bf16 full")
    lead = fp32 / bf16 if fp32 and bf16 else 0.0
    return lead, _why(measurement, "precision", "bf16" if lead >= 1 else "fp32", "", "full",
                      REFERENCE_STEP)


def is_bf16_reference(cfg) -> bool:
    """Whether a TrainConfig trains the step bf16_lead measured (then that figure is its own)."""
    reference = BF16_REFERENCE
    return (cfg.cell, cfg.layers, cfg.hidden, cfg.batch_size) == (
        reference["cell"], reference["layers"], reference["hidden"], reference["batch"]) \
        and cfg.emb in (0, cfg.hidden) and cfg.tie_weights and not cfg.weight_drop
