"""How training reports itself: records of the loop in, lines (or nothing) out.

    {"type": "train", "step", "epoch", "loss", "lr", "tokens_per_s", "elapsed", "eta", "max_steps"}
    {"type": "eval", "step", "elapsed", "best", <the task's metrics: val_loss, val_bpc | f1 …>}

`PlainReporter` prints lines, `SilentReporter` (ranks other than 0 under DDP) nothing; the live
terminal view (charrnn.tui.train_view) is a Reporter too, which the CLI hands in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol

from charrnn.pipes import is_reader_gone, silence_stdout


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = max(0, int(seconds))  # a run past its --max-time has 0 left, not "-1h59m"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def fmt_train(rec: dict) -> str:
    total = f"/{rec['max_steps']}" if rec.get("max_steps") else ""
    return (f"step {rec['step']}{total} | epoch {rec['epoch']:.2f} | loss {rec['loss']:.4f} | "
            f"lr {rec['lr']:.2e} | {rec['tokens_per_s'] / 1000:.1f}k tok/s | "
            f"eta {fmt_duration(rec.get('eta'))}")


def fmt_eval(rec: dict) -> str:
    mark = " (best)" if rec.get("best") else ""
    if "val_bpc" in rec:  # a language model
        return (f"eval step {rec['step']} | val {rec['val_loss']:.4f} nats/token | "
                f"{rec['val_bpc']:.4f} bits/char{mark}")
    shown = " | ".join(f"{k} {v:.4f}" for k, v in rec.items()
                       if isinstance(v, float) and k != "elapsed")
    return f"eval step {rec['step']} | {shown}{mark}"


class Reporter(Protocol):
    def start(self, preview: Callable[[], str] | None) -> None:
        """Training begins; `preview` gives a short sample of the current model (LMs only)."""

    def train(self, rec: dict) -> None: ...
    def eval(self, rec: dict) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


def resume_command(reporter: Reporter, own: str) -> str:
    """How a stopped run is continued: its `own` command, or what the reporter of a larger job
    says instead (a fill group's stage: the group's resume, which keeps its budget and state)."""
    return getattr(reporter, "resume_command", None) or own


class PlainReporter:
    """Plain lines. When the reader goes away (`charrnn train … | head`, a hung-up terminal), it
    falls silent and says so in `reader_gone`: the trainer then stops and saves, rather than die
    with the work since the last checkpoint."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.reader_gone = False

    def start(self, preview: Callable[[], str] | None) -> None:
        pass

    def _print(self, line: str) -> None:
        if self.reader_gone:
            return
        try:
            print(line, file=self.stream, flush=True)
        except OSError as exc:
            if not is_reader_gone(exc):
                raise
            self.reader_gone = True
            if self.stream is sys.stdout:
                silence_stdout()  # what is still buffered must not fail again at exit

    def train(self, rec: dict) -> None:
        self._print(fmt_train(rec))

    def eval(self, rec: dict) -> None:
        self._print(fmt_eval(rec))

    def message(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        pass


class SilentReporter:
    """What ranks other than 0 report under DDP: nothing."""

    reader_gone = False

    def start(self, preview: Callable[[], str] | None) -> None:
        pass

    def train(self, rec: dict) -> None:
        pass

    def eval(self, rec: dict) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass
