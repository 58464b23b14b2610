"""`charrnn plot`: a PNG of train/val curves for one or several runs (matplotlib, optional extra).

Left: loss per token (train line, val dashed with markers) against the step. Right: val bits per
character — the panel to compare runs of different token levels on, since nats per *token* of a
word model and of a char model are not the same unit.
"""

from __future__ import annotations

from pathlib import Path

from charrnn import fsutil, runs
from charrnn.errors import UserError
from charrnn.runstats import read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
    curves = []
    for spec in specs:
        folder = runs.resolve_run(spec, root)
        _refuse_other_kinds(folder)
        train, evals = read_metrics(folder)
        if not train and not evals:
            raise UserError(f"run {folder.name} has no metrics yet ({folder / 'metrics.jsonl'}): "
                            "plot RNN runs that have trained for at least --log-every steps")
        curves.append((folder.name, train, evals))
    if not out.name:  # "" or "/": Path("") is "." (no name to give a suffix)
        raise UserError(f"--png needs a file name, e.g. --png curves.png (got {str(out)!r})")
    if out.suffix.lower() != ".png":
        raise UserError(f"--png {out} must be a .png file: e.g. --png {out.with_suffix('.png')}")
    # Before drawing: a mistyped --png must not replace a photo or a document, only our own plot.
    fsutil.refuse_overwrite(out, _is_png, "a PNG image", "--png")
    plt = _pyplot()
    fig, (ax_loss, ax_bpc) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, train, evals) in enumerate(curves):
        color = colors[index % len(colors)]
        if train:
            ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], color=color,
                         linewidth=1.2, label=f"{name} train")
        if evals:
            steps = [r["step"] for r in evals]
            ax_loss.plot(steps, [r["val_loss"] for r in evals], color=color, linestyle="--",
                         marker="o", markersize=3, label=f"{name} val")
            bpc = [(r["step"], r["val_bpc"]) for r in evals if r.get("val_bpc") is not None]
            if bpc:
                ax_bpc.plot(*zip(*bpc, strict=True), color=color, marker="o", markersize=3,
                            label=name)
    ax_loss.set(title="loss", xlabel="step", ylabel="nats / token")
    ax_bpc.set(title="validation", xlabel="step", ylabel="bits / character")
    for ax in (ax_loss, ax_bpc):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    try:
        with fsutil.atomic_file(out) as tmp:
            fig.savefig(tmp, dpi=110, format="png")  # the temp name has no .png suffix
    finally:
        plt.close(fig)
    return out


def _is_png(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(PNG_MAGIC)) == PNG_MAGIC


# Kinds of run without the curves plot draws, and what scores them instead.
_NO_CURVES = {
    "ngram": ("an n-gram run (counted, not trained step by step)",
              "it has none: compare it with `charrnn compare {run}` or score it with "
              "`charrnn ngram eval {run}`"),
    "tag": ("a tagger run", "its evaluations score accuracy, which plot does not draw: score it "
            "with `charrnn tag eval {run} FILE`"),
}  # (a fill model trains and evaluates as an LM does: its curves are drawn the same way)


def _refuse_other_kinds(folder: Path) -> None:
    kind = runs.run_info(folder).get("kind")
    if kind in _NO_CURVES:
        what, instead = _NO_CURVES[kind]
        raise UserError(f"{folder.name} is {what}: plot draws the loss and bits-per-character "
                        f"curves of RNN training; {instead.format(run=folder.name)}")
