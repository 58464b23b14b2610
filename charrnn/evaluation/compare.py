"""`charrnn compare`: every run, RNN and n-gram, scored on the same text, best first.

Bits per character of the original text is the common scale: it does not depend on the
tokenizer, so a word LSTM, a char 7-gram and a subword GRU line up. Perplexity is per token of
each run's own tokenizer, so it only compares runs of the same level. Torch is imported only
when an RNN run is in the list.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn import runs
from charrnn.checkpoint import META, named_folder
from charrnn.errors import UserError, option

if TYPE_CHECKING:
    from rich.console import Console

BAR_WIDTH = 8


def _ngram_row(spec: str, root: Path, file: str | None, split: str, unk: str) -> dict:
    from charrnn.evaluation.ngram import evaluate_ngram
    from charrnn.ngram.runs import load_run
    from charrnn.ngram.sample import sampling_speed

    result = evaluate_ngram(spec, root, file, None if file else split, unk, refuse_idle=False)
    _, model = load_run(spec, root)
    return {**result, "level": model.tokenizer.level, "order": model.order,
            "size": model.num_ngrams, "size_unit": "n-grams",
            "train_seconds": model.meta.get("train_seconds"),
            "dataset": (model.meta.get("dataset") or {}).get("id"),
            "sample_tokens_per_s": sampling_speed(model)}


def _rnn_row(spec: str, root: Path, file: str | None, split: str, unk: str) -> dict:
    from charrnn.evaluation.lm import evaluate_run
    from charrnn.lm.sample import sampling_speed

    result = evaluate_run(spec, root, file, None if file else split, unknown=unk,
                          refuse_idle=False)
    info = _info(Path(result["checkpoint"]))
    return {**result, "level": (info.get("dataset") or {}).get("level"),
            "cell": (info.get("config") or {}).get("cell"),
            "direction": (info.get("config") or {}).get("direction"),
            "size": result.get("params"), "size_unit": "params",
            "dataset": (info.get("dataset") or {}).get("id"),
            "sample_tokens_per_s": sampling_speed(spec, root, tokens=300)}


def _not_compared(kind: str | None, info: dict, file: str | None) -> str | None:
    """Why a run is left out before it is read, or None."""
    if kind in ("fill", "tag"):
        use = "charrnn fill eval" if kind == "fill" else "charrnn tag eval"
        what = "fill" if kind == "fill" else "tagger"
        return f"{what} runs are not compared (score them with `{use}`)"
    if kind == "ngram" and file is None and not info.get("dataset"):
        return f"imported model has no dataset split: use {option('file')} FILE to score every run on it"
    return None


def _mix_rows(rows: list[dict], root: Path, file: str | None, split: str, unk: str,
              skipped: list[dict], asked: bool, say=None) -> list[dict]:
    """RNN ⊕ n-gram (λ tuned on the validation split, `say` told) for each LM and n-gram pair
    counted on one dataset, forward LMs only; `asked` for, and no such pair, is an error."""
    pairs = [(lm, ngram) for lm in rows if lm["kind"] == "lm" and lm.get("direction") != "backward"
             for ngram in rows if ngram["kind"] == "ngram"
             and lm.get("dataset") and lm["dataset"] == ngram.get("dataset")]
    if asked and not pairs:
        raise UserError(f"{option('mix')} adds a row for each RNN ⊕ n-gram pair counted on one dataset, and "
                        f"no language model and n-gram run compared share one: drop {option('mix')}")
    out = []
    for lm, ngram in pairs:
        from charrnn.evaluation.lm import evaluate_run  # torch: only when there is a pair

        name = f"{lm['run']} ⊕ {ngram['run']}"
        try:
            result = evaluate_run(lm["path"], root, file, None if file else split, unknown=unk,
                                  mix=ngram["path"], refuse_idle=False, say=say)
        except UserError as exc:
            skipped.append({"run": name, "reason": str(exc)})
            continue
        seconds = [lm.get("train_seconds"), ngram.get("train_seconds")]
        total = None if None in seconds else sum(seconds)  # (an imported n-gram's is unknown)
        out.append({**result, "run": name, "level": lm.get("level"), "cell": lm.get("cell"),
                    "order": ngram.get("order"), "size": lm.get("size"), "size_unit": "params",
                    "ngram_size": ngram.get("size"), "dataset": lm["dataset"],
                    "train_seconds": total,
                    "sample_tokens_per_s": _mixed_sampling_speed(lm["path"], ngram["path"],
                                                                 root)})
    return out


def _mixed_sampling_speed(lm: str, ngram: str, root: Path) -> float:
    """Tokens per second of `sample LM --mix NGRAM` (the weight eval tuned and stored)."""
    from charrnn import checkpoint
    from charrnn.evaluation.mix import mixture_of
    from charrnn.lm.sample import sampling_speed

    ckpt = checkpoint.resolve(lm, root)
    return sampling_speed(lm, root, tokens=300,
                          mixing=lambda model, dev: mixture_of(ckpt, model, dev, ngram, None, root))


def _targets(specs: list[str] | None, root: Path) -> dict[Path, str]:
    """What is compared: {run folder, or a checkpoint folder named (my-run/last): its row's
    label}; without names every run under the root (a damaged one too: skipped, saying why).
    One row for a run named twice (by name and by path)."""
    if not specs:
        return {folder: folder.name for folder in runs.list_runs(root) + runs.damaged_runs(root)}
    out: dict[Path, str] = {}
    for spec in specs:
        named = named_folder(spec, root)
        if named is not None:  # its own row: best/ and last/ are two models
            in_run = named.name in ("best", "last")
            target, label = named, f"{named.parent.name}/{named.name}" if in_run else named.name
        else:
            target = runs.resolve_run(spec, root)
            label = target.name
        if all(_scored(t) != _scored(target) for t in out):  # (run and run/best: one row)
            out[target] = label
    return out


def _scored(target: Path) -> Path:
    """The model a target's row scores: a checkpoint folder; a network run's best/ (its last/
    where it has no best/), as evaluate_run takes it; an n-gram run itself."""
    for sub in ("", "best", "last"):
        if (target / sub / META).is_file():
            return (target / sub).resolve()
    return target.resolve()


def _info(target: Path) -> dict:
    """A compared target's kind, dataset and model: a run's run.json, or what a checkpoint
    folder's own record says (a run whose run.json was lost is compared by its checkpoint)."""
    if (target / META).is_file():
        from charrnn import fsutil

        meta = fsutil.read_json(target / META, "checkpoint")
        return {"kind": meta.get("task", "lm"), "dataset": meta.get("dataset") or {},
                "config": meta.get("model") or {}}
    if target.name in ("best", "last") and not target.exists():  # (a run's, missing: eval's
        return runs.run_info(target.parent)  # own error says so, as the row is scored)
    return runs.run_info(target)


def _refuse_idle_unk(unk: str | None, folders: list[Path]) -> None:
    """--unk is read by char-level runs only: with none among those compared, it does nothing."""
    if unk is not None and not any(_level(folder) == "char" for folder in folders):
        named = option("unknown", "unk")
        raise UserError(f"{named} {unk} says how a char model reads characters it lacks, and no "
                        "run compared is char level (a word model reads unknown words as its "
                        f"<unk>, a subword model spells any text): drop {named}")


def _level(folder: Path) -> str | None:
    """A compared run's token level (None: a run compare does not score, or cannot read)."""
    try:
        info = _info(folder)
    except UserError:  # a damaged run.json: the table's loop skips it, saying why
        return None
    return (info.get("dataset") or {}).get("level") if info.get("kind") in ("lm", "ngram") else None


def compare(specs: list[str] | None, root: Path, split: str = "test",
            file: str | None = None, unk: str | None = None, mix: bool | None = None,
            say=None) -> dict:
    """{"results": rows sorted by bits/char, "skipped": [{"run", "reason"}], "note": ...}; with
    `mix` (None: where there are pairs), a row for each RNN ⊕ n-gram pair on one dataset too;
    True asked for with no language model and n-gram run among them is refused."""
    if split not in ("train", "val", "test"):
        raise UserError(f"{option('split')} must be train, val or test, not {split!r}")
    if file is not None:  # once, here: not the same error again for every run
        from charrnn.data import refuse_dataset_as_text
        from charrnn.inputs import read_text

        if file == "-":  # every run reads the text: standard input can be read once
            raise UserError(f"{option('file')} -: compare scores every run on the text, so it reads it from "
                            "a file; save standard input to one first")
        refuse_dataset_as_text(file)
        read_text([file], "strict")
    targets = _targets(specs, root)
    folders = list(targets)
    if not folders:
        raise UserError(f"no runs under {root}: train one (charrnn train / charrnn ngram train) "
                        f"or name runs / pass {option('out')}")
    _refuse_idle_unk(unk, folders)
    rows, skipped = [], []
    for folder, label in targets.items():
        spec = str(folder)
        try:
            info = _info(folder)
        except UserError as exc:
            skipped.append({"run": label, "reason": str(exc)})
            continue
        kind = info.get("kind")
        row_of = {"ngram": _ngram_row, "lm": _rnn_row}.get(kind)
        reason = _not_compared(kind, info, file)
        if row_of is None or reason:
            skipped.append({"run": label, "reason": reason or f"unknown run kind {kind!r}"})
            continue
        try:
            row = row_of(spec, root, file, split, unk)
        except UserError as exc:
            skipped.append({"run": label, "reason": str(exc)})
            continue
        rows.append({"run": label, "path": spec,
                     **{k: v for k, v in row.items() if k != "run"}})
    if not rows:
        reasons = {s["reason"] for s in skipped}
        if len(reasons) == 1 and len(skipped) > 1:
            raise UserError(f"no run could be evaluated: {reasons.pop()} (all {len(skipped)} runs)")
        listed = "; ".join(f"{s['run']}: {s['reason']}" for s in skipped)
        raise UserError(f"no run could be evaluated ({listed})")
    if mix is not False:
        rows += _mix_rows(rows, root, file, split, unk, skipped, asked=bool(mix), say=say)
    rows.sort(key=lambda r: r["bits_per_char"])
    return {"source": file or f"split:{split}", "results": rows, "skipped": skipped,
            "note": _note(rows, file, split)}


def _note(rows: list[dict], file: str | None, split: str) -> str | None:
    """What the table cannot show: texts that differ, scores that <unk> or skipped characters
    flatter."""
    said = []
    datasets = {r.get("dataset") for r in rows}
    if file is None and len(datasets) > 1:
        said.append(f"these runs come from {len(datasets)} different datasets, so their {split} "
                    f"texts may differ; pass {option('file')} to score all of them on one text")
    flattered = [f"{r['run']} {100 * r['unknown_rate']:.1f}%" for r in rows if r.get("unknown_tokens")]
    if flattered:
        said.append("<unk> tokens (" + ", ".join(flattered) + ") get one probability for every "
                    "unknown word, so those rows score better than they predict; compare on text "
                    "their vocabularies cover")
    skipping = [f"{r['run']} {r['skipped_chars']:,}" for r in rows if r.get("skipped_chars")]
    if skipping:
        said.append("characters outside a char model's vocabulary were skipped (" +
                    ", ".join(skipping) + f", {option('unknown', 'unk')} skip): those rows are "
                    "not scored on the whole text")
    return "; ".join(said) or None


def _fmt_seconds(value) -> str:
    if value is None or not math.isfinite(value):
        return "?"
    if value < 60:
        return f"{value:.2f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


def _compact(value: float | None) -> str:
    if value is None:
        return "?"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= div:
            return f"{value / div:.1f}{suffix}"
    return f"{value:.0f}"


def _fmt_size(row: dict) -> str:
    """A mixture's: its RNN's parameters + its n-gram's n-grams."""
    unit = "ngr" if row.get("size_unit") == "n-grams" else "par"
    ngrams = f"\n+ {_compact(row['ngram_size'])} ngr" if row["kind"] == "mix" else ""
    return f"{_compact(row.get('size'))} {unit}{ngrams}"


def render(report: dict, console: Console | None = None) -> None:
    """One Rich table, best first, with a bar per row (shorter is better).

    size: parameters (par) or n-grams (ngr); train: training time; tok/s: sampling speed.
    """
    from rich.console import Console
    from rich.table import Table

    rows = report["results"]
    worst = max(r["bits_per_char"] for r in rows) or 1.0
    table = Table(title=f"on {report['source']}, best first (bits/char: lower is better)",
                  box=None, pad_edge=False, padding=(0, 1), header_style="bold underline")
    show_unk = any(r.get("unknown_tokens") for r in rows)  # a column only when it says something
    for name, justify in (("#", "right"), ("run", "left"), ("model", "left"),
                          ("bits/char", "right"), ("ppl", "right"), ("size", "right"),
                          ("unk", "right"), ("train", "right"), ("tok/s", "right"), ("", "left")):
        if name == "unk" and not show_unk:
            continue
        table.add_column(name, justify=justify, no_wrap=name not in ("run", "model"),
                         overflow="fold" if name in ("run", "model") else "ellipsis",
                         min_width={"run": 6, "model": 11, "": BAR_WIDTH}.get(name))
        # (long names fold, whole, as in `charrnn runs`: they were cut to 'a-rather-lo…', one
        # like the other; the bars keep their width, which they lost at 80 columns)
    for rank, row in enumerate(rows, 1):
        level = row.get("level") or ""
        model = {"ngram": f"{level} {row.get('order')}-gram",
                 "mix": f"{level} {row.get('cell') or 'rnn'} ⊕ {row.get('order')}-gram"}.get(
            row["kind"], f"{level} {row.get('cell') or 'rnn'}")
        bar = "█" * max(1, round(BAR_WIDTH * row["bits_per_char"] / worst))
        unk = [f"{100 * row['unknown_rate']:.1f}%" if row.get("unknown_tokens") else "-"]
        table.add_row(str(rank), row["run"], model, f"{row['bits_per_char']:.4f}",
                      f"{row['perplexity']:.2f}", _fmt_size(row), *(unk if show_unk else []),
                      _fmt_seconds(row.get("train_seconds")),
                      _compact(row.get("sample_tokens_per_s")),
                      f"[green]{bar}[/green]" if rank == 1 else bar)
    console = console or Console()
    console.print(table)
    for item in report["skipped"]:
        console.print(f"skipped {item['run']}: {item['reason']}", style="yellow", markup=False)
    if report.get("note"):
        console.print(f"note: {report['note']}", style="yellow", markup=False)
