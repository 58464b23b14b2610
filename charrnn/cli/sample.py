"""`charrnn sample`: text from a trained model, streamed as it is produced (a live view in a
terminal, plain text in a pipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli import options as opt
from charrnn.errors import UserError
from charrnn.lm.config import SampleOptions as S


def sample(
    ctx: typer.Context,
    run: Annotated[Optional[str], typer.Argument(help="Run name, run folder or checkpoint (default: newest run).")] = None,
    temp: opt.Temp = S.temperature,
    top_k: Annotated[Optional[int], typer.Option(help="Sample from the K most likely tokens.")] = S.top_k,
    top_p: Annotated[Optional[float], typer.Option(help="Nucleus sampling: smallest set with mass ≥ P.")] = S.top_p,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the most likely token.")] = S.greedy,
    beam: Annotated[Optional[int], typer.Option(help="Beam search with N beams (most likely text).")] = S.beam,
    length: opt.Length = S.length, prime: opt.Prime = None,
    prime_file: Annotated[Optional[str], typer.Option(help="Read the prime from a file.")] = None,
    num_samples: Annotated[int, typer.Option(help="Independent samples, generated side by side (one batch) from --seed.")] = 1,
    seed: opt.SampleSeed = S.seed,
    unk: opt.Unk = None, device: opt.Device = "auto",
    mix: Annotated[Optional[str], typer.Option("--mix", help="An n-gram run on the same dataset: per token, p = λ·p_rnn + (1−λ)·p_ngram. Sampling with it stays per token (each step visits the host, where the n-gram's states live), so it is slower than without.")] = None,
    mix_weight: opt.MixWeight = None,
    checkpoint_name: Annotated[Optional[opt.CheckpointChoice], typer.Option("--checkpoint", help="best or last checkpoint of the run (default: best).")] = None,
    plain: Annotated[bool, typer.Option("--plain", help="Plain streaming text (what a pipe gets).")] = False,
    out: opt.Out = None,
) -> None:
    """Generate text from a trained model, streamed as it is produced."""
    from charrnn import checkpoint, tui
    from charrnn.lm.config import lm_config

    prime = _prime_text(prime, prime_file)
    opt.refuse_text_options(bool(prime), unk, source="a --prime")
    opts = S(length=length, temperature=temp, top_k=top_k, top_p=top_p, greedy=greedy,
             beam=beam, seed=seed)
    opts.validate(num_samples, given=_typed_fields(ctx))
    root = opt.root(out)
    ckpt = checkpoint.resolve(run, root, asked=opt.plain(checkpoint_name)
                              if checkpoint_name is not None else None)
    opts.check_vocabulary(lm_config(ckpt).vocab_size)
    unk = opt.plain(unk)
    opt.note_unknown_prime(ckpt.tokenizer, prime, unk)
    if tui.use_live_view(plain, beam, num_samples, lm_config(ckpt).direction):
        tui.live_sample(ckpt, opts, prime, device, unk, mix=mix, mix_weight=mix_weight,
                        root=root, say=opt.note)  # a terminal: the live view
        return

    _plain(ckpt, opts, prime, num_samples, device, unk, mix, mix_weight, root)


def _plain(ckpt, opts: S, prime: str | None, num_samples: int, device: str, unk: str | None,
           mix: str | None, mix_weight: float | None, root: Path) -> None:
    """Plain text to stdout (a pipe, or --plain), streamed as the tokens come."""
    from charrnn.lm import plain as plain_text
    from charrnn.lm.config import lm_config

    def mixing(model, dev):  # the loaded model's --mix mixture, or None
        from charrnn.evaluation.mix import mixture_of

        mixture = mixture_of(ckpt, model, dev, mix, mix_weight, root, say=opt.note)
        if mixture is not None:
            opt.note(f"mixed per token with {mixture.summary()}")
        return mixture

    mixing_asked = mix is not None or mix_weight is not None  # (a weight alone: its error)
    with opt.streamed_text() as write:
        if plain_text.without_torch(lm_config(ckpt), opts, num_samples, device, mixing_asked):
            plain_text.generate_on_cpu(ckpt, opts, prime, write, unk)
        else:
            from charrnn.lm.sample import generate

            generate(ckpt, opts, prime, num_samples, write, device, unk, mixing)
        write("\n")


def _typed_fields(ctx: typer.Context) -> frozenset[str]:
    """The SampleOptions fields typed even at their default: a typed --temp 1.0 beside --greedy
    is refused as another temperature is (it would be ignored)."""
    return frozenset({"temperature"} if "temp" in opt.typed_params(ctx) else ())


def _prime_text(prime: str | None, prime_file: str | None) -> str | None:
    from charrnn.inputs import read_text

    if prime is not None and prime_file is not None:
        raise UserError("give --prime or --prime-file, not both")
    opt.refuse_empty_prime(prime)
    if prime_file is None:
        return prime
    if prime_file == "-":  # standard input, as eval and score read it
        from charrnn.inputs import read_stdin

        text = read_stdin("strict")
    elif Path(prime_file).expanduser().is_file():
        text = read_text([prime_file])
    else:  # (a folder read file by file could be GBs; a glob is no one file)
        raise UserError(f"--prime-file {prime_file} is not a file: give one text file, or - for "
                        "standard input")
    if not text:  # (it was read as no prime at all)
        raise UserError(f"--prime-file {prime_file} is empty: give a file with text, or drop "
                        "--prime-file to start at a line break")
    return text
