"""The live views without a terminal: layout, wide characters, the sampling loop, training view.

The loop runs through `live_sample` with a Rich console writing to a string and scripted keys, so
these are fast and exact; test_tui.py drives the real thing in tmux.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len, get_character_cell_size
from rich.console import Console

from charrnn import checkpoint
from charrnn.errors import UserError
from charrnn.lm.model import RNNLM, ModelConfig, load_lm
from charrnn.lm.sample import SampleOptions
from charrnn.tokenizers import CharTokenizer, SubwordTokenizer, WordTokenizer
from charrnn.tui.keys import NoKeys
from charrnn.tui.sample_app import live_sample, stream_maker
from charrnn.tui.sample_view import SampleView, ViewInfo
from charrnn.tui.textflow import TextFlow
from charrnn.tui.train_view import LiveTrainReporter
from charrnn.tui.widgets import BUCKET_STYLES, LineChart, bucket, sparkline
from helpers import SMALL_LINES, modules_loaded_by, run_cli

CJK = "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。"


def console(width: int = 100, height: int = 30) -> Console:
    return Console(file=io.StringIO(), width=width, height=height, force_terminal=True,
                   color_system="truecolor")


def screen_lines(renderable, width: int, height: int) -> list[str]:
    con = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    con.print(renderable, height=height)
    return con.file.getvalue().splitlines()


class ScriptedKeys(NoKeys):
    """One scripted string per read (one per frame), then nothing."""

    def __init__(self, *presses: str) -> None:
        self.presses = list(presses)

    def read(self, timeout: float = 0.0) -> str:
        return self.presses.pop(0) if self.presses else ""


def make_ckpt(folder: Path, tokenizer, hidden: int = 16, **model) -> checkpoint.Checkpoint:
    torch.manual_seed(0)
    config = ModelConfig(tokenizer.vocab_size, "lstm", 1, hidden, dropout=0.0, **model)
    meta = {"model": config.to_json(), "tokenizer": tokenizer.to_json(), "progress": {"step": 7},
            "metrics": {"val_loss": 1.5}}
    checkpoint.save(folder / "run" / "best", RNNLM(config), meta, None)
    return checkpoint.resolve(str(folder / "run" / "best"), folder)


def tokenizers() -> dict:
    text = "\n".join(SMALL_LINES * 20 + [CJK] * 20) + "\n"
    return {"char": lambda: CharTokenizer.build([text]),
            "word": lambda: WordTokenizer.build([text]),
            "subword": lambda: SubwordTokenizer.train([text], vocab_size=400)}


# ---- text flow and widgets ---------------------------------------------------------------------
def test_text_flow_folds_wide_characters_by_cell_width() -> None:
    flow = TextFlow(list(BUCKET_STYLES))
    for char in CJK + "ab\tc\r":
        flow.add(char, 0)
    lines = screen_lines(flow, 9, 12)
    assert len(lines) == 12
    assert all(cell_len(line) <= 9 for line in lines)
    # 9 cells hold 4 wide characters; the tab became spaces and the CR its control picture.
    assert lines[0].rstrip() == CJK[:4]
    assert "␍" in "".join(lines) and "\t" not in "".join(lines)


def test_text_flow_wraps_words_across_tokens_and_styles() -> None:
    flow = TextFlow(list(BUCKET_STYLES))
    words = "the quick brown fox jumps over the lazy dog supercalifragilisticexpialidocious x"
    for index, char in enumerate(words):  # one char per token, colours changing inside words
        flow.add(char, index % 5)
    lines = ["".join(text for text, _ in line) for line, _used in flow.tail(16, 10)]
    assert lines == ["the quick brown ", "fox jumps over ", "the lazy dog ", "supercalifragili",
                     "sticexpialidocio", "us x"]


def test_text_flow_refolds_on_resize_and_keeps_the_tail() -> None:
    flow = TextFlow(list(BUCKET_STYLES))
    for index in range(500):
        flow.add(f"line {index}\n", index % 5)
    narrow = screen_lines(flow, 4, 6)
    assert all(cell_len(line) <= 4 for line in narrow)
    wide = [line.rstrip() for line in screen_lines(flow, 30, 4)]
    assert wide[:3] == ["line 497", "line 498", "line 499"]


def _folded(flow: TextFlow) -> tuple:
    return list(flow.lines), list(flow.widths), flow.used, flow.brk


PIECES = st.lists(st.tuples(st.text(st.sampled_from("ab  xyz\n你\u0301\t"), max_size=40)
                            | st.sampled_from(["supercalifragilistic", " " * 12, "a b c d "]),
                            st.integers(0, 4)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(PIECES, st.integers(1, 24), st.integers(1, 24))
def test_narrow_text_placed_whole_folds_as_a_character_at_a_time(pieces, width, resized) -> None:
    from charrnn.tui.textflow import visible

    placed = TextFlow(list(BUCKET_STYLES))
    placed.tail(width, 1)  # folding at this width from here on
    for text, style in pieces:
        placed.add(text, style)
    for shown_width, flow in ((width, placed), (resized, None)):
        if flow is None:  # a resize: the kept pieces re-folded at the new width
            placed.tail(shown_width, 1)
        by_char = TextFlow(list(BUCKET_STYLES))
        by_char.width = shown_width
        for text, style in pieces:
            if text:
                by_char._fold_chars(visible(text), style)
        assert _folded(placed) == _folded(by_char)


def test_a_frames_runs_of_one_colour_fold_as_its_tokens_one_by_one() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    names = ["the", " ", "king", "\n", "你", "a", "  ", "b"]
    view = SampleView(ViewInfo("lstm", "run/best", names), SampleOptions())
    view.restart("prime ", 1, 10_000)
    view.flow.tail(37, 1)
    expected = TextFlow(view.flow.styles)
    expected.tail(37, 1)
    expected.add("prime ", len(BUCKET_STYLES))
    for size in (1, 7, 128, 300):
        p = rng.choice([0.05, 0.2, 0.3, 0.6, 0.9], size).astype(np.float32)
        p[::5] = rng.random(size)[::5].astype(np.float32)
        ids = rng.integers(0, len(names), size)
        stats = np.zeros((size, 12), np.float32)
        stats[:, 0] = p
        view.record(ids.tolist(), [names[i] for i in ids], stats)
        for token, chosen in zip(ids.tolist(), p.tolist(), strict=True):
            expected.add(names[token], bucket(chosen))
    view.flush()
    assert _folded(view.flow) == _folded(expected) and len(view.flow.lines) > 20
    assert len(view.flow.pieces) < len(expected.pieces)  # runs, not tokens


def test_the_history_a_resize_refolds_is_bounded_by_characters() -> None:
    from charrnn.tui.textflow import REFOLD_CHARS

    flow = TextFlow(list(BUCKET_STYLES))
    for index in range(5_000):
        flow.add(f"{index:09d} " * 10, index % 5)  # 100 characters a piece
    assert REFOLD_CHARS <= flow.piece_chars < REFOLD_CHARS + 100
    assert flow.piece_chars == sum(len(text) for text, _ in flow.pieces)
    assert screen_lines(flow, 20, 3)[-1].rstrip() == "000004999 000004999"


def test_buckets_sparkline_and_chart() -> None:
    assert [bucket(p) for p in (0.95, 0.6, 0.3, 0.15, 0.01)] == [0, 1, 2, 3, 4]
    assert sparkline([0, 1, 2, 4], 6, top=4) == "▁▃▅█  "
    chart = LineChart([("train", [(0, 3.0), (10, 2.0), (20, 1.5)], "cyan"),
                       ("val", [(10, 2.2), (20, 1.7)], "magenta")], height=5)
    lines = screen_lines(chart, 50, 10)
    assert "3.000" in lines[0] and "1.500" in lines[4] and "train" in lines[-1]
    assert all(cell_len(line) <= 50 for line in lines)


@pytest.mark.parametrize("in_order", [True, False])
def test_a_long_runs_chart_draws_a_few_points_a_column_spanning_all_of_them(in_order) -> None:
    """20,000 logged losses: the path keeps at most 4 of each run of points in one dot column,
    in their order, reaching that run's least and greatest row (so the same dots are drawn)."""
    from itertools import takewhile

    import numpy as np

    from charrnn.tui.widgets import _dot_path

    rng = np.random.default_rng(0)
    steps = np.arange(20_000.0) if in_order else rng.permutation(20_000).astype(float)
    xy = np.stack([steps, 3 / np.sqrt(steps + 1) + 1 + rng.normal(0, 0.05, 20_000)], axis=1)
    bounds = (*[float(v) for v in (xy[:, 0].min(), xy[:, 0].max())],
              *[float(v) for v in (xy[:, 1].min(), xy[:, 1].max())])
    path = _dot_path(xy, bounds, 233, 39)
    px = np.rint((xy[:, 0] - bounds[0]) / (bounds[1] - bounds[0]) * 233).astype(int)
    py = np.rint((bounds[3] - xy[:, 1]) / (bounds[3] - bounds[2]) * 39).astype(int)
    runs = np.split(np.arange(len(px)), np.flatnonzero(px[1:] != px[:-1]) + 1)
    assert len(path) <= 4 * len(runs) and (in_order or len(runs) > 10_000)
    at = 0
    for run in runs:  # the path visits the runs in order, each run's points within it
        kept = list(takewhile(lambda p, column=px[run[0]]: p[0] == column, path[at:at + 4]))
        at += len(kept)
        assert 2 <= len(kept) + (len(run) == 1) <= 4
        assert kept[0] == (px[run[0]], py[run[0]]) and kept[-1] == (px[run[-1]], py[run[-1]])
        assert {min(r for _, r in kept), max(r for _, r in kept)} == {py[run].min(), py[run].max()}
    assert at == len(path)


def _stats_rows(probs_rows: torch.Tensor, ids: torch.Tensor) -> list[list[float]]:
    """What a chunk carries per token for the view (decode.token_stats, as the engine packs it)."""
    from charrnn.lm.decode import token_stats

    return token_stats(probs_rows.log(), ids).tolist()


@pytest.mark.parametrize("width", [120, 80, 64, 40])
def test_sample_view_fills_the_screen_exactly_at_any_width(width: int) -> None:
    names = ["你", "好", "\n", " ", "[bold]x", "<unk>", "▁the", "<0xE4>"]
    view = SampleView(ViewInfo("lstm 2×512 char 3.3M", "run/best @7 val 1.500", names),
                      SampleOptions(temperature=0.7, top_k=5))
    view.restart("[red]prime ", 3, 100)
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(60, len(names), generator=generator), -1)
    ids = torch.multinomial(probs, 1, generator=generator)[:, 0]
    view.record(ids.tolist(), [names[i] for i in ids.tolist()], _stats_rows(probs, ids))
    view.flush()
    lines = screen_lines(view.render(), width, 30)
    assert len(lines) == 30 and all(cell_len(line) == width for line in lines), lines
    written = view.render().lines(console(width, 30), width, 30)  # what the loop writes in place
    assert [sum(s.cell_length for s in row) for row in written] == [width] * 30
    text = "\n".join(lines)
    assert "[red]prime" in text and "space pause" in text  # text is text, never markup
    if width >= 70:
        assert "top-5 candidates" in text and "tok/s" in text and "0.70" in text


def test_the_view_keeps_numbers_not_distributions_and_shows_them_exactly() -> None:
    """A 30k-word vocabulary: the chunk brings a dozen numbers a token, the view keeps those."""
    vocab = 30_000
    view = SampleView(ViewInfo("lstm", "run/best", [f"w{i}" for i in range(vocab)]),
                      SampleOptions())
    view.restart("", 0, 10**6)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        probs = torch.softmax(3 * torch.randn(64, vocab, generator=generator), -1)
        ids = torch.multinomial(probs, 1, generator=generator)[:, 0]
        view.record(ids.tolist(), ["x"] * 64, _stats_rows(probs, ids))
    view.flush()
    assert not any(isinstance(v, torch.Tensor) for v in vars(view).values())
    entropy = float(-(probs[-1] * probs[-1].log()).sum()) / math.log(2)
    assert view.entropies[-1] == pytest.approx(entropy, rel=1e-4)
    assert view.candidates[0] == (int(probs[-1].argmax()), pytest.approx(float(probs[-1].max())))
    assert view.chosen_p == pytest.approx(float(probs[-1, ids[-1]]))
    assert view.generated == 192 and not view.pending_text


def test_the_footer_is_laid_out_again_only_when_what_it_says_changes(monkeypatch) -> None:
    view = SampleView(ViewInfo("lstm", "run/best", ["a", "b"]), SampleOptions())
    view.restart("", 0, 100)
    con, layouts = console(), []
    render_lines = Console.render_lines
    monkeypatch.setattr(Console, "render_lines",
                        lambda self, *a, **k: layouts.append(1) or render_lines(self, *a, **k))
    first = view.render().lines(con, 100, 30)
    view.record([0], ["a"], _stats_rows(torch.tensor([[0.9, 0.1]]), torch.tensor([0])))
    view.flush()
    assert view.render().lines(con, 100, 30)[-3:] == first[-3:] and len(layouts) == 1
    view.status = "temperature 0.90"
    assert "temperature 0.90" in "".join(s.text for s in view.render().lines(con, 100, 30)[-1])
    view.render().lines(con, 90, 30)
    assert len(layouts) == 3


def test_a_narrow_terminal_still_shows_temperature_speed_and_status() -> None:
    view = SampleView(ViewInfo("lstm", "run/best", ["a", "b"]), SampleOptions(temperature=0.7))
    view.restart("", 0, 100)
    view.record([0], ["a"], _stats_rows(torch.tensor([[0.9, 0.1]]), torch.tensor([0])))
    view.flush()
    view.status = "saved 12 characters"
    lines = screen_lines(view.render(), 50, 20)
    footer = "\n".join(lines[-3:])
    assert "temp 0.70" in footer and "tok/s" in footer and "saved 12" in footer
    assert "q quit" in footer and all(cell_len(line) == 50 for line in lines)


def test_train_view_fits_a_small_terminal() -> None:
    for width, height in ((50, 20), (80, 14)):
        con = console(width, height)
        reporter = LiveTrainReporter(100, preview=lambda: "to be\nor not\nto be\nthat is\nit",
                                     console=con, refresh_per_second=20)
        try:
            for step in (10, 20, 30):
                reporter.train({"step": step, "epoch": 0.1, "loss": 3.0, "lr": 1e-3,
                                "tokens_per_s": 1000.0, "elapsed": 1.0, "eta": 9.0,
                                "max_steps": 100})
            reporter.eval({"step": 30, "val_loss": 2.9, "val_bpc": 4.0, "best": True,
                           "elapsed": 1.0})
            lines = screen_lines(reporter.render(), width, height * 3)
        finally:
            reporter.close()
        drawn = [line for line in lines if line.strip()]
        assert len(drawn) < height and "eta" in drawn[0], drawn


def test_the_train_views_sample_fills_its_panel_and_keeps_its_borders_with_emoji() -> None:
    """A sample without line breaks showed one line cut with "…" over three empty ones, and
    emoji Rich measured unlike the terminal wrapped the panel's rows: the view smeared."""
    preview = (EMOJI + " the king ") * 12
    reporter = LiveTrainReporter(60, preview=lambda: preview, console=console(60, 40),
                                 refresh_per_second=20)
    try:
        reporter.eval({"step": 10, "val_loss": 2.9, "val_bpc": 4.0, "best": True, "elapsed": 1.0})
        lines = screen_lines(reporter.render(), 60, 40)
    finally:
        reporter.close()
    top = next(i for i, line in enumerate(lines) if "sample at step" in line)
    body = lines[top + 1: top + 5]
    assert all(line.startswith("│") and cell_len(line) == 60 for line in body), body
    assert all("king" in line or "👨" in line for line in body), body


def test_the_train_view_turns_the_terminals_echo_off_while_it_is_drawn(monkeypatch) -> None:
    """Keys typed during a live training (Enter, the ^C of Ctrl-C) were echoed, and each left a
    copy of the block above it."""
    import pty
    import termios

    main, tty_end = pty.openpty()
    with os.fdopen(tty_end, "r") as terminal:
        monkeypatch.setattr("sys.stdin", terminal)
        reporter = LiveTrainReporter(100, console=console(100, 30), refresh_per_second=20)
        reporter.start(None)
        try:
            assert not termios.tcgetattr(tty_end)[3] & termios.ECHO
        finally:
            reporter.close()
        assert termios.tcgetattr(tty_end)[3] & termios.ECHO
        # Sent to the background while drawn (Ctrl-Z, bg): the shell restored the terminal, and
        # setting it again would stop the job (SIGTTOU) before its last line.
        moved = LiveTrainReporter(100, console=console(100, 30), refresh_per_second=20)
        moved.start(None)
        with monkeypatch.context() as bg:
            bg.setattr(os, "tcgetpgrp", lambda fd: os.getpgrp() + 1)
            moved.close()
        assert not termios.tcgetattr(tty_end)[3] & termios.ECHO  # (left to the shell)
        attrs = termios.tcgetattr(tty_end)
        attrs[3] |= termios.ECHO
        termios.tcsetattr(tty_end, termios.TCSANOW, attrs)
        # A background job (`charrnn train … &`) leaves the terminal alone: setting it would
        # stop the job (SIGTTOU).
        monkeypatch.setattr(os, "tcgetpgrp", lambda fd: os.getpgrp() + 1)
        background = LiveTrainReporter(100, console=console(100, 30), refresh_per_second=20)
        background.start(None)
        try:
            assert termios.tcgetattr(tty_end)[3] & termios.ECHO
        finally:
            background.close()
    os.close(main)


def test_the_train_views_clock_runs_before_the_first_log_line() -> None:
    """A word model logs every 50 steps: 30 s showed `elapsed 0m00s` until the run ended."""
    reporter = LiveTrainReporter(100, console=console(100, 30), refresh_per_second=20)
    try:
        reporter.start(None)
        reporter.last_time -= 65  # started 65 s ago, no record yet
        lines = screen_lines(reporter.render(), 100, 30)
    finally:
        reporter.close()
    assert "elapsed 1m05s" in lines[0], lines[0]


def test_the_train_views_sample_shows_escape_codes_and_never_sends_them() -> None:
    """A model of coloured logs previewed raw: the codes coloured the terminal, pulled the
    panel's border in and (OSC 0) set the window title."""
    con = console(100, 30)
    preview = "\x1b[32mINFO\x1b[0m request 262 served\n\x1b]0;EVIL\x07 title\nplain line"
    reporter = LiveTrainReporter(100, preview=lambda: preview, console=con, refresh_per_second=20)
    try:
        reporter.train({"step": 10, "epoch": 0.1, "loss": 3.0, "lr": 1e-3, "tokens_per_s": 1e3,
                        "elapsed": 1.0, "eta": 9.0, "max_steps": 100})
        reporter.eval({"step": 10, "val_loss": 2.9, "val_bpc": 4.0, "best": True, "elapsed": 1.0})
        rendered = io.StringIO()
        Console(file=rendered, width=100, height=30, force_terminal=True,
                color_system=None).print(reporter.render())
    finally:
        reporter.close()
    out = rendered.getvalue()
    assert "\x1b]0;" not in out and "\x07" not in out and "␛[32mINFO␛[0m request" in out
    borders = [line for line in out.splitlines() if "INFO" in line or "plain line" in line]
    assert borders and all(cell_len(line) == 100 for line in borders)


def test_what_a_terminal_would_obey_is_shown_and_every_scripts_space_kept() -> None:
    from charrnn.tui.textflow import visible
    from charrnn.tui.widgets import token_label

    assert visible("很好\u3000非常好\u00a0ok") == "很好\u3000非常好\u00a0ok"  # ideographic, NBSP
    assert visible("👨\u200d👩\u200d👧") == "👨\u200d👩\u200d👧"  # joined emoji
    assert visible("a\x1bb\x9bc\u202ed\u2028e\x7f") == "a␛b\ufffdc\ufffdd\ufffde\u2421"
    assert token_label("\x9b", 4) == "\ufffd   "


EMOJI = "👨\u200d👩\u200d👧 ❤\ufe0f a\U0001F3FD 👍\U0001F3FD 🏳\ufe0f\u200d🌈 f\u0301 \U0001F3FD 한국어"


def test_laid_out_text_has_one_width_in_rich_and_by_character() -> None:
    """Rich measured a🏽 as 1 cell, a terminal drew 3; 👨‍👩‍👧 2 cells by Rich, 6 by the
    sample view's count: the box's border moved and the training view smeared."""
    from charrnn.tui.textflow import UNSURE_WIDTH, sized

    shown = sized(EMOJI)
    assert not set(map(ord, shown)) & set(UNSURE_WIDTH) and "👨👩👧" in shown
    assert cell_len(shown) == sum(get_character_cell_size(c) for c in shown)
    flow = TextFlow(list(BUCKET_STYLES))
    for char in EMOJI * 5:
        flow.add(char, 0)
    for line, used in flow.tail(17, 10):
        assert cell_len("".join(text for text, _ in line)) == used <= 17


def test_tokens_with_nothing_to_see_are_labelled_by_code_point() -> None:
    from charrnn.tui.widgets import token_label

    assert token_label("\u3000", 8) == "U+3000  " and token_label("\u200d", 8) == "U+200D  "
    assert token_label("\U0001F3FD", 8) == "U+1F3FD " and token_label("\u0301", 4) == "◌\u0301   "


# ---- the sampling loop -------------------------------------------------------------------------
def test_live_view_samples_the_same_text_as_plain(tiny_run: Path) -> None:
    plain = run_cli("sample", tiny_run, "--prime", "the", "--seed", "5", "--length", "300",
                    "--temp", "0.8", "--plain").output
    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    result = live_sample(ckpt, SampleOptions(length=300, temperature=0.8, seed=5), "the", "cpu",
                         console=console(), keys=NoKeys(), hold=False)
    assert result.tokens == 300
    assert result.text == plain.rstrip("\n")
    assert result.tokens_per_s > 0


def test_each_frame_runs_the_next_chunk_ahead_for_as_long_as_the_last_frame_took(
        tiny_run: Path, monkeypatch) -> None:
    """The chunk drawn on one lane during a frame is sized by the frame's time (cpustream's
    ahead_tokens): the first frame's is not known yet, every later one is."""
    from charrnn.lm.tokenstream import TokenStream
    from charrnn.tui import sample_app

    asked: list[float | None] = []
    monkeypatch.setattr(TokenStream, "run_ahead", lambda self, seconds=None: asked.append(seconds))
    monkeypatch.setattr(sample_app, "FPS", 100_000)  # a frame after every chunk
    monkeypatch.setattr(sample_app, "MAX_VIEW_SHARE", 1.0)
    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    live_sample(ckpt, SampleOptions(length=2000, seed=5), "the", "cpu", console=console(),
                keys=NoKeys(), hold=False)
    assert len(asked) > 3 and asked[0] is None
    assert all(isinstance(s, float) and 0 < s < 5 for s in asked[1:]), asked


def test_the_live_view_of_a_model_plain_samples_without_torch_never_imports_it(
        tiny_run: Path) -> None:
    """A forward full-softmax model on a CPU: the view reads the weights with NumPy, as plain
    output does (the same engine, so the same text), and skips torch's seconds of import."""
    code = ("import io\nfrom pathlib import Path\nfrom rich.console import Console\n"
            "from charrnn import checkpoint\nfrom charrnn.lm.config import SampleOptions\n"
            "from charrnn.tui.keys import NoKeys\nfrom charrnn.tui.sample_app import live_sample\n"
            f"ckpt = checkpoint.resolve({str(tiny_run)!r}, Path({str(tiny_run.parent)!r}))\n"
            "con = Console(file=io.StringIO(), force_terminal=True, width=100, height=30)\n"
            "r = live_sample(ckpt, SampleOptions(length=300, temperature=0.8, seed=5), 'the',"
            " 'cpu', console=con, keys=NoKeys(), hold=False)\n"
            "print(r.text, end='')\n")
    stdout, (torch_loaded,) = modules_loaded_by(code, "torch")
    assert not torch_loaded
    plain = run_cli("sample", tiny_run, "--prime", "the", "--seed", "5", "--length", "300",
                    "--temp", "0.8", "--plain").output
    assert stdout == plain.rstrip("\n") and len(stdout) > 300


def test_the_live_view_shows_the_models_size_and_refuses_a_weight_without_mix(
        tiny_run: Path) -> None:
    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    with pytest.raises(UserError, match="^mix_weight applies with mix"):
        stream_maker(ckpt, SampleOptions(length=10), "cpu", None, 0.5, tiny_run.parent)
    _, info = stream_maker(ckpt, SampleOptions(length=10), "cpu", None, None, None)
    model = load_lm(ckpt, torch.device("cpu"))
    assert f"{sum(p.numel() for p in model.parameters()) / 1e3:.0f}k" in info.model


def test_the_live_view_of_an_adaptive_softmax_model_samples_with_pytorch_as_plain_does(
        tmp_path: Path) -> None:
    tokenizer = tokenizers()["word"]()
    ckpt = make_ckpt(tmp_path, tokenizer, softmax="adaptive", cutoffs=[tokenizer.vocab_size // 2])
    plain = run_cli("sample", ckpt.folder, "--seed", "4", "--length", "60", "--plain",
                    "--prime", "the", "--device", "cpu").output
    result = live_sample(ckpt, SampleOptions(length=60, seed=4), "the", "cpu", console=console(),
                         keys=NoKeys(), hold=False)
    assert result.tokens == 60 and result.text == plain.rstrip("\n")


def test_the_live_view_on_a_console_that_is_no_terminal_is_one_error(tiny_run: Path) -> None:
    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    with pytest.raises(UserError, match="use plain$"):
        live_sample(ckpt, SampleOptions(length=10), None, "cpu",
                    console=Console(file=io.StringIO()), keys=NoKeys(), hold=False)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_rich_would_not_draw_on_gets_plain_output(monkeypatch) -> None:
    from charrnn.tui import live_capable

    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("sys.stdout", _Terminal())
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR", "NO_COLOR", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    assert live_capable()
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # Rich: not a terminal, so no alternate screen
    assert not live_capable()


def test_more_continues_with_the_surplus_of_the_last_chunk(tiny_run: Path) -> None:
    """--length 40 with 128-token chunks: 40 shown, 88 drawn ahead; 'more' shows them first,
    so the text is the one a single --length 80 run gives."""
    plain = run_cli("sample", tiny_run, "--seed", "2", "--length", "80", "--plain").output
    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    keys = ScriptedKeys(*[""] * 5, " ", *[""] * 5, "q")
    result = live_sample(ckpt, SampleOptions(length=40, seed=2), None, "cpu", console=console(),
                         keys=keys)
    assert result.tokens == 80 and result.text == plain.rstrip("\n")


def test_keys_change_temperature_restart_save_and_quit(tiny_run: Path, tmp_path: Path) -> None:
    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    opts = SampleOptions(length=10**6, seed=1)
    keys = ScriptedKeys("++", "-", "+", " ", "", " ", "r", "s", "\x1b[A", "\x1bq")  # Esc, q
    result = live_sample(ckpt, opts, "the", "cpu", console=console(), keys=keys)
    assert opts.temperature == pytest.approx(1.2)
    assert opts.seed == 2  # r: restarted with the next seed
    (saved,) = result.saved
    assert saved.parent == tmp_path and saved.read_text(encoding="utf-8").startswith("the")
    assert 0 < result.tokens < 10**6


@pytest.mark.parametrize(("typed", "keys", "then"), [(8.0, "+", 8.0), (8.0, "-", 7.9),
                                                    (0.05, "-", 0.05), (0.05, "+", 0.15)])
def test_temperature_keys_never_move_a_typed_temperature_the_wrong_way(
        tiny_run: Path, typed: float, keys: str, then: float) -> None:
    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    opts = SampleOptions(length=10**6, seed=1, temperature=typed)
    live_sample(ckpt, opts, "the", "cpu", console=console(), keys=ScriptedKeys(keys, "q"))
    assert opts.temperature == pytest.approx(then)


def test_greedy_keys_say_there_is_nothing_to_change(tiny_run: Path) -> None:
    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    opts = SampleOptions(length=10**6, greedy=True)
    con = console()
    live_sample(ckpt, opts, "the", "cpu", console=con, keys=ScriptedKeys("+", "r", "", "q"))
    shown = con.file.getvalue()
    assert opts.temperature == 1.0 and "restarted" not in shown and "no temperature" in shown


@pytest.mark.parametrize("level", ["char", "word", "subword"])
def test_live_view_works_for_every_level_with_cjk(level: str, tmp_path: Path) -> None:
    tokenizer = tokenizers()[level]()
    ckpt = make_ckpt(tmp_path, tokenizer)
    con = console(72, 20)
    prime = "花落" if level != "word" else "the"
    result = live_sample(ckpt, SampleOptions(length=150, seed=0), prime, "cpu", console=con,
                         keys=NoKeys(), hold=False)
    assert result.tokens == 150 and result.text.startswith(prime)
    assert "tok/s" in con.file.getvalue()


def test_a_sample_done_within_a_frame_shows_its_speed_not_zero(tiny_run: Path) -> None:
    import re

    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    con = console(100, 30)
    live_sample(ckpt, SampleOptions(length=5, seed=1), "the", "cpu", console=con,
                keys=ScriptedKeys("", "", "q"))
    rates = re.findall(r"([\d,]+) tok/s", con.file.getvalue())
    assert rates and int(rates[-1].replace(",", "")) > 0, rates


# ---- training view -----------------------------------------------------------------------------
def test_train_view_draws_progress_curves_and_the_sample() -> None:
    con = console(100, 40)
    calls = []
    reporter = LiveTrainReporter(100, preview=lambda: calls.append(1) or "to be or not\nto be",
                                 console=con, refresh_per_second=20)
    try:
        for step in range(10, 101, 10):
            reporter.train({"step": step, "epoch": step / 50, "loss": 4 - step / 50, "lr": 1e-3,
                            "tokens_per_s": 12345.0, "elapsed": step / 10, "eta": 10 - step / 10,
                            "max_steps": 100})
            if step % 50 == 0:
                reporter.eval({"step": step, "val_loss": 3.5 - step / 100, "val_bpc": 2.0,
                               "best": True, "elapsed": 1.0})
        reporter.message("a message")
        lines = screen_lines(reporter.render(), 100, 40)
    finally:
        reporter.close()
    text = "\n".join(lines)
    assert calls == [1, 1]
    for expected in ("100/100", "eta", "loss 2.0000", "val 2.5000", "lr 1.00e-03", "12.3k",
                     "loss (nats/token)", "sample at step 100", "to be or not", "train", "val"):
        assert expected in text, expected
    assert "a message" in con.file.getvalue()


def test_a_nan_or_infinite_loss_leaves_the_chart_of_the_finite_ones() -> None:
    finite = [(0, 3.0), (10, 2.0), (20, 1.5)]
    want = screen_lines(LineChart([("train", finite, "cyan"), ("val", [(10, 2.2)], "magenta")],
                                  height=5), 50, 10)
    for bad in (math.nan, math.inf, -math.inf):
        chart = LineChart([("train", finite, "cyan"), ("val", [(10, 2.2), (20, bad)], "magenta")],
                          height=5)
        assert screen_lines(chart, 50, 10) == want, bad
    assert "no data yet" in screen_lines(LineChart([]), 50, 3)[0]


def test_a_diverged_evaluation_does_not_stop_the_training_view() -> None:
    """A NaN val loss is logged (the run goes on from its last good state): the view draws."""
    reporter = LiveTrainReporter(100, console=console(100, 40), refresh_per_second=20)
    try:
        for step in (10, 20):
            reporter.train({"step": step, "epoch": 0.1, "loss": 3.0, "lr": 1e-3,
                            "tokens_per_s": 1e4, "elapsed": 1.0, "eta": 1.0, "max_steps": 100})
            reporter.eval({"step": step, "val_loss": 2.5 if step == 10 else math.nan,
                           "val_bpc": 2.0, "best": step == 10, "elapsed": 1.0})
        text = "\n".join(screen_lines(reporter.render(), 100, 40))
    finally:
        reporter.close()
    assert "loss (nats/token)" in text and "2.500" in text


def test_preview_leaves_training_rng_and_mode_alone(tiny_run: Path) -> None:
    from charrnn.lm.preview import preview_text

    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    model = load_lm(ckpt, "cpu").train()
    before = torch.get_rng_state()
    text = preview_text(model, torch.device("cpu"), ckpt.tokenizer, tokens=50)
    assert torch.equal(before, torch.get_rng_state()) and model.training
    assert len(text) == 50 and text == preview_text(model, torch.device("cpu"), ckpt.tokenizer, 50)


def test_eta_of_a_run_past_its_max_time_shows_zero_not_negative() -> None:
    from charrnn.training.reporters import fmt_duration, fmt_train

    assert fmt_duration(-4.19) == "0m00s"
    rec = {"step": 10, "epoch": 0.5, "loss": 1.0, "lr": 1e-3, "tokens_per_s": 1e3, "eta": -4.19}
    assert fmt_train(rec).endswith("eta 0m00s")


@pytest.mark.parametrize(("width", "said"), [(30, "terminal too small"), (12, "too small"),
                                             (5, "")])
def test_a_terminal_too_small_says_so_in_words_that_fit(width: int, said: str) -> None:
    """At 15 columns it said 'terminal too sm'."""
    view = SampleView(ViewInfo("lstm", "run/best", ["a", "b"]), SampleOptions())
    first = "".join(s.text for s in view.render().lines(console(width, 4), width, 4)[0])
    assert first.rstrip() == said and len(first) == width


def test_a_paused_view_shows_no_sampling_speed() -> None:
    """Paused, the side panel kept the last speed ('43,269 tok/s … paused')."""
    view = SampleView(ViewInfo("lstm", "run/best", ["a", "b"]), SampleOptions())
    view.rate, view.paused = 43_269.0, True
    text = "\n".join(screen_lines(view.render(), 100, 30))
    assert "43,269" not in text and "— tok/s (paused)" in text
    view.paused = False
    assert "43,269 tok/s" in "\n".join(screen_lines(view.render(), 100, 30))
