"""The one error type for user mistakes.

Library code raises `UserError` for anything the user can fix (a bad path, a bad option value, a
corrupt checkpoint). The CLI turns it into a one-line message and exit code 2; everything else is
a bug and keeps its traceback under CHARRNN_DEBUG=1.
"""

from __future__ import annotations

# How `option` names an option: False for a library caller, who passed a config field or a
# parameter; True while the CLI runs a command (charrnn/cli/app.py), whose user typed flags.
# A module setting, not a ContextVar: a message made on a worker thread must name it alike.
_as_flags = False


def spell_options_as_flags(on: bool) -> bool:
    """Name options as command-line flags (`--max-steps`) from now on, or as the field and
    parameter names the library takes (`max_steps`); returns the setting it replaces.

    A message is made where the mistake is found, deep in the library, which does not know who
    called it; only the CLI knows that its user typed flags, so it switches this on for the
    command it runs and back when the command ends (`charrnn.cli.app`)."""
    global _as_flags
    before, _as_flags = _as_flags, on
    return before


def flag(name: str) -> str:
    """An option's command-line spelling, always: max_steps → --max-steps. For what reads or
    answers a command line (charrnn.cli, charrnn.plan, the prompt of `fill -i`); the library
    names options with `option`."""
    return "--" + name.replace("_", "-")


def option(name: str, typed: str | None = None) -> str:
    """An option as a message names it: the field or parameter name (`max_steps`) to a library
    caller, the flag (`--max-steps`) while the CLI runs a command (`spell_options_as_flags`).
    `typed`: the flag's own name where it differs from the field's (`temperature`, typed as
    --temp). A flag without a field of its name (`--out`, `--mix`) is named by its long name
    all the same: the bare word to a library caller."""
    return flag(typed or name) if _as_flags else name


class UserError(Exception):
    """A problem with the user's input, stated as: what, where, what to do."""

    exit_code = 2
    # Under torchrun every rank runs the same command on the same files and meets a mistake
    # alike: rank 0 alone says it.
    alike_on_every_rank = True


class RankError(UserError):
    """A user's problem one process of a torchrun may meet alone (its GPU's memory): each rank
    that meets it says so, naming itself."""

    alike_on_every_rank = False


MAX_SEED = 2**63  # torch takes seeds below 2**64: room for the seeds derived by adding to it


def check_seed(seed: int | None) -> None:
    """The seed, wherever it is taken (train, sample, tag train)."""
    if seed is not None and not 0 <= seed < MAX_SEED:
        raise UserError(f"{option('seed')} must be in [0, 2**63), got {seed}")


def diverged(where: str, sampling: bool = False) -> UserError:
    """The error of a language model whose probabilities are NaN or infinite `where` (at
    generated token 7, on the text): weights damaged, or a run that diverged. The way to the
    run's other checkpoint: sampling's option, or (eval, score, compare) naming it."""
    other = (f"sample the run's other checkpoint ({option('checkpoint')} best|last)" if sampling
             else "give the run's other checkpoint as RUN (RUN/best or RUN/last)")
    return UserError(f"the model's probabilities are not finite {where}: its weights hold NaN or "
                     f"inf, or values so large that its sums overflow (a run that diverged?); "
                     f"{other}, or train again")
