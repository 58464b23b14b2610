"""`charrnn fill -i`: type sentences with blanks, see ranked fills highlighted in place.

    fill> I want to ___ a new phone
    ┌ bidirectional ─────────────────────┬ ngram ─────────────────────────────┐
    │ 1  62.1%  I want to buy a new phone │ 1  40.2%  I want to get a new phone │ …
    bidirectional 0.41 s · ngram 0.05 s  ·  models: fwd RUN, bwd RUN, ngram RUN

The RNN method and the n-gram baseline are shown side by side, then how long each took and
which models answered. History is kept with Python's
readline (arrow keys, saved in the cache folder). Commands start with a colon:

    :k N / :top-k N     how many fills to show        :model RUN   add or replace a model
    :method NAME        the RNN method to show (ngram: the n-gram's column alone)
    :models             what is loaded
    :unk skip|error     characters a model lacks       :help        this list
    :q / Ctrl-D         leave
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from charrnn.errors import UserError, flag
from charrnn.fill.config import FillOptions
from charrnn.fill.engine import fill_template, shown_prob
from charrnn.fill.families import METHODS, Family, available_methods, skip_reads_nothing
from charrnn.fill.syntax import parse

HELP = (":k N  top-k fills  ·  :method NAME  (left, forward, bidirectional; ngram: its column "
        "alone)  ·  :model RUN  add a model  ·  :models  ·  :unk skip|error  ·  :help  ·  :q or "
        "Ctrl-D to leave")
HIGHLIGHT = "bold black on bright_green"


def _history_file() -> Path:
    from charrnn.fsutil import cache_dir

    return cache_dir() / "fill_history"


def _setup_readline() -> Callable[[], None]:
    """Arrow-key history where readline exists (not on every platform); returns a saver."""
    try:
        import readline
    except ImportError:
        return lambda: None
    path = _history_file()
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(1000)

    def save() -> None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)

    return save


CELL_CONTEXT = 80  # characters of text kept each side of a blank in a table's cell


def render(template, fills: list[str], context: int | None = None) -> Text:
    """The sentence with each fill highlighted in place; with `context`, the text between and
    around the blanks cut to that many characters each side (a line of 11,000 characters was
    printed whole in every cell of the prompt's table)."""
    pieces = template.pieces
    if context is not None:
        pieces = [_cut(piece, context, i > 0, i < len(pieces) - 1) for i, piece in enumerate(pieces)]
    text = Text(pieces[0])
    for fill, piece in zip(fills, pieces[1:], strict=True):
        text.append(fill or "∅", style=HIGHLIGHT)
        text.append(piece)
    return text


def _cut(piece: str, keep: int, after_blank: bool, before_blank: bool) -> str:
    """`piece` with at most `keep` characters next to each blank beside it, '…' for the rest."""
    head = piece[:keep] if after_blank else ""
    tail = piece[-keep:] if before_blank else ""
    if len(head) + len(tail) >= len(piece):
        return piece
    return f"{head}…{tail}"


# What the command line's errors name, as it is done at the prompt. The prompt runs under
# `charrnn fill -i`, whose messages name flags (charrnn.errors.option): matched as flags.
PROMPT_WORDS = ((f"pass {flag('unk')} skip", "type :unk skip"),
                (f"give it alone with {flag('model')}, or its runs one by one",
                 "its models go together; to add to them, start `charrnn fill -i -m RUN …` with "
                 "its runs one by one"),
                (f"{flag('model')} ", ":model "), (f"{flag('method')} ", ":method "))


def at_the_prompt(message: str) -> str:
    for said, meant in PROMPT_WORDS:
        message = message.replace(said, meant)
    return message


class Repl:
    def __init__(self, families: dict[str, Family], load: Callable[[list[str]], dict[str, Family]],
                 specs: list[str], opts: FillOptions, method: str | None,
                 console: Console | None = None) -> None:
        from charrnn.fill.families import method_family

        self.families, self.load, self.specs, self.opts = families, load, list(specs), opts
        self.console = console or Console(highlight=False)
        rnn_methods = [m for m in available_methods(families) if m != "ngram"]
        if method is not None:  # refused now, not on every line
            method_family(families, method)
        self.method = method or (rnn_methods[0] if rnn_methods else None)

    def columns(self) -> list[str]:
        cols = [self.method] if self.method and "rnn" in self.families else []
        return [*dict.fromkeys(cols + (["ngram"] if "ngram" in self.families else []))]

    def show(self, line: str) -> None:
        template = parse(line)
        table = Table(show_lines=False, expand=False)
        results, took = [], []
        for method in self.columns():
            table.add_column(method, overflow="fold")
            started = time.perf_counter()
            results.append(fill_template(template, self.families, method, self.opts))
            took.append(f"{method} {time.perf_counter() - started:.2f} s")
        for rank in range(self.opts.top_k):
            row = []
            for fills in results:
                if rank < len(fills):
                    cell = Text(f"{rank + 1}  {shown_prob(fills[rank].prob)}  ")
                    row.append(cell.append_text(render(template, fills[rank].fills, CELL_CONTEXT)))
                else:
                    row.append(Text(""))
            if any(cell.plain for cell in row):
                table.add_row(*row)
        self.console.print(table)
        self.console.print(Text(f"{' · '.join(took)}  ·  models: {self.answered()}", style="dim"))

    def warm_up(self) -> None:
        """One blank filled by every column's models before the first prompt, from token ids
        (no text to tokenize): the n-gram query tables are built and the compiled kernels
        loaded here, not inside the first answer (2-3 s on a 2-core AMD EPYC)."""
        from charrnn.fill.engine import blank_candidates, one_thread
        from charrnn.fill.families import method_family

        # Only a head start: Ctrl-C skips it, and what cannot fill says so in its answer.
        with (self.console.status("loading the models' tables and kernels…"), one_thread(),
              contextlib.suppress(KeyboardInterrupt)):
            for method in self.columns():
                with contextlib.suppress(UserError):
                    family = method_family(self.families, method)
                    edge = family.line_break if family.line_break is not None else 0
                    blank_candidates(family, method, [edge], [edge], 1, 2, self.opts)

    def answered(self) -> str:
        """The models behind the columns: 'fwd RUN⊕NGRAM, bwd RUN, ngram RUN'."""
        names = next(iter(self.families.values())).names if self.families else {}
        used = {"bidirectional": ("fwd", "bwd", "mask"), "forward": ("fwd",), "left": ("fwd",)}
        roles = [r for r in used.get(self.method or "", ()) if r in names]
        roles += ["ngram"] if "ngram" in self.families and "ngram" in names else []
        # The left method's beam is the forward RNN's own, a group's mixture aside.
        shown = {**names, "fwd": names.get("fwd", "").split("⊕")[0]} if self.method == "left" \
            else names
        return ", ".join(f"{role} {shown[role]}" for role in roles) or "none"

    def command(self, line: str) -> bool:
        """Handle a :command; False means leave."""
        name, _, arg = line[1:].strip().partition(" ")
        arg = arg.strip()
        if name in ("q", "quit", "exit"):
            return False
        if name in ("k", "top-k"):
            # Checked before it is set: a refused value must leave the old k working.
            if not arg.strip().isdigit() or int(arg) < 1:
                raise UserError(f":k takes a number ≥ 1, not {arg!r}")
            self.opts.top_k = int(arg)
            self.console.print(f"top-k {self.opts.top_k}")
        elif name == "method":  # (ngram: its column alone, as --method ngram starts it)
            if arg not in METHODS:
                raise UserError(f":method takes {', '.join(METHODS)}, not {arg!r}")
            from charrnn.fill.families import method_family

            method_family(self.families, arg)  # says what is missing, if anything
            self.method = arg
            self.console.print(f"method {arg}")
        elif name == "unk":
            if arg not in ("error", "skip"):
                raise UserError(f":unk takes error or skip, not {arg!r}")
            if skip_reads_nothing(self.families):
                raise UserError(f":unk {arg} says how a char model reads characters it lacks, and "
                                "these models read unknown words as <unk> (or spell any text): "
                                "nothing to decide")
            self.opts.unknown = arg
            self.console.print(f"characters the model does not know: {arg}")
        elif name == "model":
            if not arg:
                raise UserError(":model takes a run name or folder")
            if not self.specs:  # loading [arg] alone would drop every model shown now
                raise UserError(":model adds a run to those given with -m, and these were found "
                                "without it (the newest fill group or runs): start `charrnn fill "
                                "-i -m RUN …` with the runs you want")
            families = self.load([*self.specs, arg])
            self.specs.append(arg)
            self.families = families
            if self.method is None:
                self.method = next((m for m in available_methods(families) if m != "ngram"), None)
            self.warm_up()
            self.command(":models")
        elif name == "models":
            names = next(iter(self.families.values())).names if self.families else {}
            for role, spec in names.items():
                self.console.print(f"{role:6} {spec}")
        elif name == "help":
            self.console.print(HELP)
        else:
            raise UserError(f"unknown command :{name} ({HELP})")
        return True

    def run(self, read: Callable[[str], str] = input) -> None:
        save = _setup_readline() if read is input else (lambda: None)
        self.warm_up()
        self.console.print(f"blanks: ___ (any length), {{N}} (N tokens)  ·  {HELP}")
        try:
            while True:
                try:
                    line = read("fill> ").strip()
                except EOFError:
                    self.console.print()
                    break
                except KeyboardInterrupt:  # Ctrl-C drops the line, as in a shell
                    self.console.print()
                    continue
                if not line:
                    continue
                try:
                    if line.startswith(":"):
                        if not self.command(line):
                            break
                    else:
                        self.show(line)
                except UserError as exc:
                    self.console.print(Text(f"error: {at_the_prompt(str(exc))}", style="red"))
                except KeyboardInterrupt:  # a fill taking long: dropped, the session goes on
                    self.console.print(Text("interrupted", style="dim"))
        finally:
            save()
