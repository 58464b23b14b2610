"""How training reports itself (a Rich progress display in a terminal, plain lines otherwise) and
how it is told to stop (Ctrl-C, SIGTERM, SIGHUP, a closed stdout).

Every record also goes to <run>/metrics.jsonl, so curves can be plotted after the fact.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from charrnn.errors import UserError
from charrnn.pipes import is_reader_gone, silence_stdout

# Each means "stop now, keep the work": Ctrl-C, a polite kill (SIGTERM: systemd, Slurm, docker
# stop) and the terminal going away (SIGHUP: a closed window, a dropped ssh session).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))  # no SIGHUP on Windows
STOPPING = "stopping: saving last/ (Ctrl-C again to abort without saving)"


class StopFlag:
    """While installed, the first Ctrl-C, SIGTERM or SIGHUP only sets `requested`: the training
    loop finishes its step, saves and stops. A second Ctrl-C raises KeyboardInterrupt (abort
    without saving). Signals that arrive outside the loop keep their usual effect."""

    def __init__(self, say: Callable[[str], None] = lambda _: None) -> None:
        self.requested = False
        self.say = say
        self._saved: dict = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        try:
            self.say(STOPPING)
        except OSError:  # the terminal may be gone (SIGHUP): saving matters, the line does not
            pass

    def install(self) -> None:
        try:
            for sig in STOP_SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread (e.g. inside a test runner thread)
            pass

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()


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
    return (f"eval step {rec['step']} | val {rec['val_loss']:.4f} nats/token | "
            f"{rec['val_bpc']:.4f} bits/char{mark}")


class Reporter(Protocol):
    def train(self, rec: dict) -> None: ...
    def eval(self, rec: dict) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class PlainReporter:
    """Plain lines. When the reader goes away (`charrnn train … | head`, a hung-up terminal), it
    falls silent and says so in `reader_gone`: the trainer then stops and saves, rather than die
    with the work since the last checkpoint."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.reader_gone = False

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

    def train(self, rec: dict) -> None:
        pass

    def eval(self, rec: dict) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class RichReporter:
    """A live progress bar (step, epoch, loss, val, bits/char, tokens/s, ETA) with eval lines."""

    def __init__(self, total_steps: int | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console()
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.fields[total_s]}"),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"),
            console=self.console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, total_s=total_steps or "?",
                                           status="", eta="?")
        self.val = ""

    def train(self, rec: dict) -> None:
        status = (f"epoch {rec['epoch']:.2f} loss {rec['loss']:.4f} {self.val}"
                  f"lr {rec['lr']:.1e} {rec['tokens_per_s'] / 1000:.1f}k tok/s")
        self.progress.update(self.task, completed=rec["step"], status=status,
                             eta=fmt_duration(rec.get("eta")))

    def eval(self, rec: dict) -> None:
        self.val = f"val {rec['val_loss']:.4f} ({rec['val_bpc']:.3f} bpc) "
        self.progress.console.print(fmt_eval(rec))

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    def close(self) -> None:
        self.progress.stop()


def make_reporter(total_steps: int | None, plain: bool | None = None,
                  preview: Callable[[], str] | None = None) -> Reporter:
    """Plain lines when piped (or asked); in a terminal, the live view (charrnn.tui.train_view)
    with loss curves and, when `preview` is given, a sample from the model at each evaluation."""
    if plain is None:
        plain = not sys.stdout.isatty()
    if plain:
        return PlainReporter()
    from charrnn.tui.train_view import LiveTrainReporter

    return LiveTrainReporter(total_steps, preview)


class MetricsLog:
    """Append-only metrics.jsonl; on resume, records after the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.exists():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and _step_of(line) <= resume_step]
            tmp = path.with_name(path.name + ".tmp")
            try:
                tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
                tmp.replace(path)
            except OSError as exc:
                raise UserError(f"cannot update {path}: {exc.strerror or exc}; the run folder "
                                "must be writable to resume") from exc

    def write(self, rec: dict) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(rec) + "\n")
        except OSError as exc:
            raise UserError(f"could not append to {self.path}: {exc.strerror or exc}; the "
                            "checkpoints are intact (free some disk space, then --resume)") from exc


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn last line from a crash: drop it
