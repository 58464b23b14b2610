"""Typer option declarations shared by several commands (preprocess, train, ngram train, …).

Declared once here so that every command spells, documents and validates them the same way.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from charrnn.data import PreprocessOptions

Level = Annotated[str, typer.Option("--level", help="Token level: char, word or subword.")]
Lower = Annotated[bool, typer.Option("--lower", help="Lower-case the text first.")]
ValFrac = Annotated[float, typer.Option("--val-frac", help="Fraction of the corpus tail held out for validation.")]
TestFrac = Annotated[float, typer.Option("--test-frac", help="Fraction of the corpus tail held out for test (after val).")]
Valid = Annotated[Optional[list[str]], typer.Option("--valid", help="Validation file(s) instead of a tail fraction.")]
Test = Annotated[Optional[list[str]], typer.Option("--test", help="Test file(s) instead of a tail fraction.")]
Errors = Annotated[str, typer.Option("--errors", help="Invalid UTF-8: 'strict' (stop) or 'replace' (U+FFFD).")]
Pattern = Annotated[Optional[str], typer.Option("--pattern", help="Word level: regex matching one token (default: split on whitespace).")]
MinCount = Annotated[int, typer.Option("--min-count", help="Word level: words seen fewer times become <unk>.")]
MaxVocab = Annotated[Optional[int], typer.Option("--max-vocab", help="Word level: keep at most this many words (with specials).")]
VocabSize = Annotated[int, typer.Option("--vocab-size", help="Subword level: sentencepiece vocabulary size.")]
SubwordModel = Annotated[str, typer.Option("--subword-model", help="Subword level: bpe or unigram.")]
Mirror = Annotated[Optional[str], typer.Option("--mirror", help="Folder with local copies of registry corpora (or $CHARRNN_MIRROR).")]
Out = Annotated[Optional[str], typer.Option("--out", help="Runs root folder (default ./checkpoints or $CHARRNN_RUNS).")]


def typed_params(ctx: typer.Context) -> frozenset[str]:
    """The options typed on this command line (not defaults): a dataset folder or a resumed
    run refuses a typed option it would otherwise ignore."""
    return frozenset(name for name in ctx.params
                     if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE")


def preprocess_options(level: str, lower: bool, val_frac: float, test_frac: float,
                       valid: list[str] | None, test: list[str] | None, errors: str,
                       pattern: str | None, min_count: int, max_vocab: int | None,
                       vocab_size: int, subword_model: str) -> PreprocessOptions:
    opts = PreprocessOptions(level=level, lower=lower, val_frac=val_frac, test_frac=test_frac,
                             valid=list(valid or []), test=list(test or []), errors=errors,
                             pattern=pattern, min_count=min_count, max_vocab=max_vocab,
                             vocab_size=vocab_size, subword_model=subword_model)
    opts.validate()
    return opts
