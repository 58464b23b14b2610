"""The real live views in a real terminal: tmux runs `python -m charrnn ...` in a pane, we type
with send-keys and read the screen with capture-pane.

Each test has its own tmux server (a socket in its temp folder), so nothing leaks between tests
or into a user's tmux.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.cells import cell_len

from helpers import SMALL_LINES

REPO = Path(__file__).resolve().parents[1]
TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it)")


class Pane:
    def __init__(self, folder: Path, width: int = 120, height: int = 40) -> None:
        self.socket = str(folder / "tmux.sock")
        env = {**os.environ, "PYTHONPATH": str(REPO), "PS1": "$ ", "HISTFILE": "/dev/null"}
        subprocess.run([TMUX, "-S", self.socket, "-f", "/dev/null", "new-session", "-d",
                        "-x", str(width), "-y", str(height), "-c", str(folder),
                        "bash --norc --noprofile"], check=True, env=env, timeout=20)

    def tmux(self, *args: str) -> str:
        return subprocess.run([TMUX, "-S", self.socket, *args], check=True, capture_output=True,
                              text=True, timeout=20).stdout

    def type(self, text: str, enter: bool = False) -> None:
        self.tmux("send-keys", "-l", text)
        if enter:
            self.tmux("send-keys", "Enter")

    def run(self, command: str) -> None:
        self.type(command, enter=True)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def flag(self, name: str) -> str:
        return self.tmux("display-message", "-p", f"#{{{name}}}").strip()

    def wait(self, check: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run([TMUX, "-S", self.socket, "kill-server"], capture_output=True, timeout=20)


@pytest.fixture
def pane(tmp_path: Path):
    pane = Pane(tmp_path)
    yield pane
    pane.close()


def charrnn(*args: object) -> str:
    return " ".join(shlex.quote(str(a)) for a in [sys.executable, "-m", "charrnn", *args])


def speed(screen: str) -> int:
    found = re.search(r"speed\s+([\d,]+) tok/s", screen)
    return int(found.group(1).replace(",", "")) if found else 0


def temperature(screen: str) -> str | None:
    found = re.search(r"temp\s+(\d+\.\d\d)", screen)
    return found.group(1) if found else None


def tokens(screen: str) -> int:
    found = re.search(r"tokens\s+([\d,]+) /", screen)
    return int(found.group(1).replace(",", "")) if found else -1


def boxed(screen: str, width: int) -> bool:
    """The frame is drawn at this width: the top border spans it (not tmux's crop of an old one)."""
    top = screen.splitlines()[0].rstrip() if screen.strip() else ""
    return top.startswith("╭─ sample") and top.endswith("╮") and cell_len(top) == width


def assert_terminal_usable(pane: Pane) -> None:
    """Normal screen, cursor shown, and the line discipline back to canonical mode with echo."""
    pane.wait(lambda s: pane.flag("alternate_on") == "0", "the normal screen")
    assert pane.flag("cursor_flag") == "1"
    pane.run("stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo|isig)' | tr '\\n' ' ';"
             " echo ok-$((40+2))")
    screen = pane.wait(lambda s: "ok-42" in s.split("ok-$((40+2))")[-1], "the shell to answer")
    modes = screen.split("ok-$((40+2))")[-1]
    assert "icanon echo" in modes and "-icanon" not in modes and "-echo" not in modes, modes


def test_sample_view_shows_text_candidates_speed_and_obeys_keys(pane: Pane, tiny_run: Path) -> None:
    pane.run(charrnn("sample", tiny_run, "--prime", "the quick", "--length", "1000000",
                     "--seed", "3", "--temp", "0.8"))
    screen = pane.wait(lambda s: speed(s) > 0 and "top-5 candidates" in s, "the live view")
    assert "p(token)" in screen  # the colour legend (the prime has scrolled away by now)
    text_panel = "".join(line.split("│")[1] for line in screen.splitlines() if line.count("│") >= 2)
    assert sum(c.isalpha() for c in text_panel) > 40, screen  # generated text
    assert temperature(screen) == "0.80" and "seed        3" in screen
    candidates = re.findall(r"(\d+\.\d)%", screen)
    assert len(candidates) == 5, screen

    pane.type("+")
    pane.wait(lambda s: temperature(s) == "0.90", "temp 0.90")
    pane.type("++")
    pane.wait(lambda s: temperature(s) == "1.10", "temp 1.10")
    pane.type("-")
    pane.wait(lambda s: temperature(s) == "1.00", "temp 1.00")

    pane.type(" ")
    paused = pane.wait(lambda s: "sample · paused" in s, "pause")
    time.sleep(0.4)
    assert tokens(pane.screen()) == tokens(paused)  # nothing generated while paused

    pane.tmux("resize-window", "-x", "60", "-y", "20")  # narrow: the text alone, nothing torn
    small = pane.wait(lambda s: boxed(s, 60), "a redraw at 60×20")
    assert "sample · paused" in small and "top-5" not in small and len(small.splitlines()) <= 20
    assert all(cell_len(line) <= 60 for line in small.splitlines())
    pane.tmux("resize-window", "-x", "120", "-y", "40")
    pane.wait(lambda s: "top-5 candidates" in s and boxed(s, 120), "a redraw at 120×40")

    pane.type("s")
    saved = pane.wait(lambda s: "saved" in s, "the save message")
    files = list(Path(pane.socket).parent.glob("sample-*.txt"))
    assert len(files) == 1 and files[0].read_text(encoding="utf-8").startswith("the quick")
    assert files[0].name[:20] in saved

    pane.type(" ")
    pane.wait(lambda s: "sample · live" in s, "resume")
    pane.type("q")
    assert_terminal_usable(pane)


def test_ctrl_c_in_the_sample_view_restores_the_terminal(pane: Pane, tiny_run: Path) -> None:
    pane.run(charrnn("sample", tiny_run, "--length", "1000000", "--seed", "1"))
    pane.wait(lambda s: speed(s) > 0, "the live view")
    pane.tmux("send-keys", "C-c")
    pane.wait(lambda s: "interrupted" in s, "the interrupted message")
    assert_terminal_usable(pane)


def test_sigterm_in_the_sample_view_exits_143_and_restores_the_terminal(pane: Pane,
                                                                       tiny_run: Path) -> None:
    """It said 'interrupted' and exited 130, as for a Ctrl-C (plain output: 143)."""
    pane.run(charrnn("sample", tiny_run, "--length", "1000000", "--seed", "1") + "; echo exit-$?")
    pane.wait(lambda s: speed(s) > 0, "the live view")
    shell = pane.tmux("display-message", "-p", "#{pane_pid}").strip()
    child = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True).stdout.split()
    subprocess.run(["kill", "-TERM", *child], check=True)
    screen = pane.wait(lambda s: "exit-1" in s, "the exit code")
    assert "exit-143" in screen and "interrupted" not in screen, screen
    assert_terminal_usable(pane)


def test_an_error_mid_line_in_a_terminal_starts_a_line_of_its_own(pane: Pane, tiny_run: Path,
                                                                  tmp_path: Path) -> None:
    """Plain output in a terminal stopped mid-line: 'cacharrnn: error: …' on one line."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    run = tmp_path / "huge"
    shutil.copytree(tiny_run, run)
    weights = run / "best" / "model.safetensors"
    tensors = load_file(weights)
    tensors["embed.weight"] = np.sign(tensors["embed.weight"]) * np.float32(3e38)
    save_file(tensors, weights)
    pane.run(charrnn("sample", run, "--plain", "--length", "50", "--seed", "1", "--prime", "th")
             + "; echo done-$((1+1))")
    screen = pane.wait(lambda s: "done-2" in s.split("done-$((1+1))")[-1], "the command to end")
    assert any(line.startswith("charrnn: error: the model's probabilities are not finite")
               for line in screen.splitlines()), screen


def test_piped_sample_stays_plain_text(pane: Pane, tiny_run: Path) -> None:
    out = Path(pane.socket).parent / "out.txt"
    pane.run(charrnn("sample", tiny_run, "--prime", "the", "--length", "40", "--seed", "2")
             + f" | cat > {out}; echo piped-$((1+1))")
    pane.wait(lambda s: "piped-2" in s.split("piped-$((1+1))")[-1], "the pipe to finish")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("the") and "\x1b" not in text and "tok/s" not in text
    assert pane.flag("alternate_on") == "0"


def test_train_view_shows_progress_curves_and_a_sample(pane: Pane, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SMALL_LINES * 60) + "\n", encoding="utf-8")
    pane.run(charrnn("train", corpus, "--hidden", "32", "--layers", "1", "--batch-size", "4",
                     "--seq-len", "16", "--log-every", "5", "--eval-every", "10", "--warmup", "5",
                     "--max-steps", "20", "--run-name", "tv"))
    screen = pane.wait(lambda s: "done at step 20" in s, "training to finish", timeout=60)
    for expected in ("20/20", "eta", "loss (nats/token)", "tok/s", "lr ", "val ",
                     "sample at step 20", "eval step 10"):
        assert expected in screen, f"{expected!r} missing from:\n{screen}"
    assert re.search(r"[\u2801-\u28ff]", screen)  # the braille curve
