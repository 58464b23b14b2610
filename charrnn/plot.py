"""`charrnn plot`: a PNG of train/val curves for one or several runs (matplotlib, optional extra).

Left: loss per token (train line, val dashed with markers) against the step. Right: val bits per
character — the panel to compare runs of different token levels on, since nats per *token* of a
word model and of a char model are not the same unit.
"""

from __future__ import annotations

from pathlib import Path

from charrnn import runs
from charrnn.errors import UserError
from charrnn.runstats import read_metrics


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
        train, evals = read_metrics(folder)
        if not train and not evals:
            raise UserError(f"run {folder.name} has no metrics yet ({folder / 'metrics.jsonl'}): "
                            "plot RNN runs that have trained for at least --log-every steps")
        curves.append((folder.name, train, evals))
    if out.suffix.lower() != ".png":
        raise UserError(f"--png {out} must be a .png file: e.g. --png {out.with_suffix('.png')}")
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
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
    return out
