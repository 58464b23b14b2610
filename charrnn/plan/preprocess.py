"""The preprocessing of a command that reads a corpus (`preprocess`, `train`, `ngram train`).

    typed options  ─ kept, always; a typed --val-frac beside a --valid file is refused
    registry corpus ─ its level and its valid / test files, for what was not typed
    dataset folder  ─ its own options; a typed one it was not made with is refused
    the rest        ─ the defaults (data.PreprocessOptions)

The result is final: the library uses it as it is (corpora.resolve_inputs(final=True)).
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

from charrnn.data import PreprocessOptions, refuse_other_levels
from charrnn.errors import UserError, option
from charrnn.inputs import refuse_empty, refuse_stdin
from charrnn.plan.request import Request


def preprocess_options(request: Request, inputs: list[str] | None = None,
                       mirror: str | None = None, kept: frozenset[str] = frozenset()
                       ) -> PreprocessOptions:
    """The options preprocessing `inputs` takes (without inputs: the typed ones and defaults);
    `kept`: the ones whose values are a resumed run's own (a registry corpus's defaults do not
    replace them)."""
    values = request.fields_of(PreprocessOptions)
    values.update(valid=_split_files(request, "valid"), test=_split_files(request, "test"),
                  exact_vocab="vocab_size" in request.typed)
    opts = PreprocessOptions(**values)
    typed = request.typed & {f.name for f in fields(PreprocessOptions)}
    for files, frac, split in (("valid", "val_frac", "validation"), ("test", "test_frac", "test")):
        if getattr(opts, files) and frac in typed:  # the file wins: the fraction would be ignored
            raise UserError(f"--{frac.replace('_', '-')} does not apply with --{files}: the "
                            f"{split} split is the --{files} file; drop one of the two")
    opts.validate(level_final=False)
    refuse_idle_mirror(inputs or [], mirror)
    if inputs and _is_dataset_folder(inputs):  # its own options; a typed other one is refused
        return _dataset_folder(opts, typed, inputs[0])
    if inputs:
        _registry_defaults(opts, typed | kept, inputs, mirror)
    refuse_other_levels(opts.level, typed)  # (typed at their defaults too)
    return opts


def _split_files(request: Request, split: str) -> list[str]:
    """Typed split files as absolute paths: the dataset records them (and its id holds them), and
    a run resumed from another folder makes its dataset again from them. Recorded ones stay as
    they are (an older run's relative ones are its dataset id)."""
    files = list(request.get(split) or [])
    for spec in files:
        refuse_empty(spec, f"{option(split)} ")  # (made absolute, "" would be the current folder,
        refuse_stdin(spec, f"{option(split)} ")  # and "-" a file of that name there)
    return [os.path.abspath(os.path.expanduser(f)) for f in files] if split in request.typed \
        else files


def resumed_preprocess_options(request: Request, inputs: list[str], mirror: str | None,
                               recorded: object) -> PreprocessOptions:
    """A resumed run's corpus given again: read with the options its dataset was made with (its
    checkpoint records them), those typed now over them."""
    if not isinstance(recorded, dict):  # a run of an older charrnn: what is typed now
        return preprocess_options(request, inputs, mirror)
    names = {f.name for f in fields(PreprocessOptions)} - set(request.typed)
    saved = {k: v for k, v in recorded.items() if k in names}
    try:
        return preprocess_options(Request.of({**request.values, **saved}, request.typed), inputs,
                                  mirror, frozenset(saved))
    except (TypeError, ValueError) as exc:  # a damaged checkpoint's record
        raise UserError(f"the run's checkpoint records its preprocess options damaged ({exc}): "
                        "resume without the corpus (its cached dataset)") from exc


def refuse_idle_mirror(inputs: list[str], mirror: str | None) -> None:
    """--mirror is where registry corpora come from: with none among the inputs it is unread."""
    from charrnn.corpora import names_registry

    if mirror is not None and not names_registry(inputs):
        raise UserError("--mirror is where registry corpora (charrnn corpus list) are copied from, "
                        "and no input names one: drop --mirror")


def _registry_defaults(opts: PreprocessOptions, typed: frozenset[str], inputs: list[str],
                       mirror: str | None) -> None:
    from charrnn.corpora import registry_files

    found = registry_files(inputs, mirror)
    if found.levels and "level" not in typed:
        opts.level = found.level()
    for split, frac in (("valid", "val_frac"), ("test", "test_frac")):
        if split in found.splits and not getattr(opts, split) and frac not in typed:
            setattr(opts, split, found.splits[split])


def _is_dataset_folder(inputs: list[str]) -> bool:
    from charrnn import data

    return len(inputs) == 1 and data.is_dataset_dir(inputs[0])


def _dataset_folder(opts: PreprocessOptions, typed: frozenset[str],
                    folder: str) -> PreprocessOptions:
    from charrnn import data

    dataset = data.Dataset(Path(folder))
    data.refuse_options(folder, dataset, opts, typed)
    return PreprocessOptions.of_dataset(dataset)
