"""The one error type for user mistakes.

Library code raises `UserError` for anything the user can fix (a bad path, a bad option value, a
corrupt checkpoint). The CLI turns it into a one-line message and exit code 2; everything else is
a bug and keeps its traceback under CHARRNN_DEBUG=1.
"""

from __future__ import annotations


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
    """--seed, wherever it is taken (train, sample, tag train)."""
    if seed is not None and not 0 <= seed < MAX_SEED:
        raise UserError(f"--seed must be in [0, 2**63), got {seed}")
