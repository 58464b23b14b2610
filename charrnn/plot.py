"""`charrnn plot`: a PNG of train/val curves for one or several runs (matplotlib, optional extra).

Left: loss per token (train line, val dashed with markers) against the step. Right: val bits per
character — the panel to compare runs of different token levels on, since nats per *token* of a
word model and of a char model are not the same unit. Taggers (plotted apart): loss per label,
and their validation F1 (chunks, words) or accuracy.
"""

from __future__ import annotations

from pathlib import Path

from charrnn import fsutil, runs
from charrnn.errors import UserError, option
from charrnn.runstats import TAGGER_SCORES, read_metrics, score_label, tagger_score

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOSS_PER = {"tag": "label", "fill": "masked token"}  # what a run's loss is per; else "token"


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise UserError("plotting needs matplotlib, an optional extra: pip install 'charrnn[plot]'") \
            from exc
    matplotlib.use("Agg")  # files only: never open a window, works without a display
    import matplotlib.pyplot as plt

    return plt


def plot_runs(specs: list[str], root: Path, out: Path) -> Path:
    if not specs:
        raise UserError("give at least one RUN to plot")
    curves = [_curves(spec, root) for spec in specs]
    if len({kind == "tag" for _, kind, _, _ in curves}) > 1:
        raise UserError("plot tagger runs apart from language models and fill models: a tagger's "
                        "validation is an F1 or accuracy, theirs a loss in bits per character")
    if not out.name:  # "" or "/": Path("") is "." (no name to give a suffix)
        raise UserError(f"{option('png')} needs a file name, e.g. {option('png')} curves.png (got "
                        f"{str(out)!r})")
    if out.suffix.lower() != ".png":
        named = out.with_suffix(".png") if out.stem and not out.name.startswith(".") else \
            out.with_name("curves.png")  # (".png" is a hidden file with no suffix)
        raise UserError(f"{option('png')} {out} must be a .png file: e.g. {option('png')} {named}")
    # Before drawing: a mistyped --png must not replace a photo or a document, only our own plot.
    fsutil.refuse_overwrite(out, _is_png, "a PNG image", option("png"))
    plt = _pyplot()
    fig = _figure(plt, curves)
    try:
        with fsutil.atomic_file(out) as tmp:
            fig.savefig(tmp, dpi=110, format="png")  # the temp name has no .png suffix
    finally:
        plt.close(fig)
    return out


def _figure(plt, curves: list[tuple[str, str, list[dict], list[dict]]]):
    """The two panels of `curves` (as _curves gives them), drawn on a new matplotlib figure."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    loss_unit, per = loss_axis([kind for _, kind, _, _ in curves])
    for index, (name, kind, train, evals) in enumerate(curves):
        color = colors[index % len(colors)]
        if train:
            ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], color=color,
                         linewidth=1.2, label=f"{name} train{per[kind]}",
                         marker="o" if len(train) == 1 else None, markersize=3)  # a lone point
        losses = [(r["step"], r["val_loss"]) for r in evals if "val_loss" in r]
        if losses:
            ax_loss.plot(*zip(*losses, strict=True), color=color, linestyle="--", marker="o",
                         markersize=3, label=f"{name} val{per[kind]}")
        points = validation_points(kind, evals)[1]
        if points:
            ax_val.plot(*zip(*points, strict=True), color=color, marker="o", markersize=3,
                        label=name)
    ax_loss.set(title="loss", xlabel="step", ylabel=loss_unit)
    ax_val.set(title="validation", xlabel="step",
               ylabel=" / ".join(sorted({validation_points(k, e)[0] for _, k, _, e in curves})))
    for ax in (ax_loss, ax_val):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


def _curves(spec: str, root: Path) -> tuple[str, str, list[dict], list[dict]]:
    """(run name, kind, train records, eval records) of one run to plot."""
    folder = runs.resolve_run(spec, root)
    _refuse_other_kinds(folder)
    kind = str(runs.run_info(folder).get("kind"))
    train, evals = read_metrics(folder, TAGGER_SCORES if kind == "tag" else ("val_loss",))
    if not train and not evals:
        raise UserError(f"run {folder.name} has no metrics yet ({folder / 'metrics.jsonl'}): "
                        f"plot RNN runs that have trained for at least {option('log_every')} steps")
    return folder.name, kind, train, evals


def loss_axis(kinds: list[str]) -> tuple[str, dict[str, str]]:
    """The loss panel's unit, and what each kind's legend entries add where the units differ:
    a language model's loss is per token, a fill model's per masked token (not one quantity)."""
    per = {kind: LOSS_PER.get(kind, "token") for kind in kinds}
    units = sorted(set(per.values()))
    if len(units) == 1:
        return f"nats / {units[0]}", {kind: "" for kind in kinds}
    return f"nats / ({' or '.join(units)})", {kind: f" (per {per[kind]})" for kind in kinds}


def validation_points(kind: str, evals: list[dict]) -> tuple[str, list[tuple[int, float]]]:
    """The right panel's unit and points of one run: bits per character (comparable across
    token levels), or a tagger's F1 (chunks, words) or else accuracy."""
    if kind != "tag":
        return "bits / character", [(r["step"], r["val_bpc"]) for r in evals
                                    if r.get("val_bpc") is not None]
    score = tagger_score(evals)
    return score_label(score), [(r["step"], r[score]) for r in evals if score in r]


def _is_png(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(PNG_MAGIC)) == PNG_MAGIC


# Kinds of run without the curves plot draws, and what scores them instead.
_NO_CURVES = {
    "ngram": ("an n-gram run (counted, not trained step by step)",
              "it has none: compare it with `charrnn compare {run}` or score it with "
              "`charrnn ngram eval {run}`"),
}  # (a fill model trains and evaluates as an LM does, a tagger as one scored by F1 or accuracy)


def _refuse_other_kinds(folder: Path) -> None:
    kind = runs.run_info(folder).get("kind")
    if kind in _NO_CURVES:
        what, instead = _NO_CURVES[kind]
        raise UserError(f"{folder.name} is {what}: plot draws the loss and bits-per-character "
                        f"curves of RNN training; {instead.format(run=folder.name)}")
