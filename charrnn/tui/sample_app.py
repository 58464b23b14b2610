"""`charrnn sample` in a terminal: the generation loop with the live view and the keys.

The loop reads the same engine as plain streaming (`stream_maker`: one forward stream on a CPU
without PyTorch, as `sample --plain`; else the `Sampler`), a chunk of tokens at a time, each with
its probability, entropy and top alternatives computed inside the chunk; per chunk it only decodes
and records, and looks at the keyboard. The screen is redrawn at most FPS times a second, and
never more often than keeps the drawing under MAX_VIEW_SHARE of the time (a slow terminal lowers
the frame rate, not the sampling rate). While a frame is drawn, the next chunk runs on the other
core, as many tokens as one lane makes in the last frame's time (cpustream.ahead_tokens).
Leaving the loop in any way (q, Ctrl-C, SIGTERM, an error) restores the terminal: the key reader
and the console's alternate screen (cursor hidden) are context managers.
"""

from __future__ import annotations

import random
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from charrnn import checkpoint
from charrnn.errors import UserError, option
from charrnn.lm.config import SampleOptions, lm_config
from charrnn.lm.plain import Prime, encode_prime, primed_decoder
from charrnn.lm.tokenstream import TokenStream
from charrnn.tui.keys import RawKeys
from charrnn.tui.sample_view import SampleView, ViewInfo
from charrnn.tui.textflow import visible
from charrnn.tui.widgets import bucket

FPS = 15
MAX_VIEW_SHARE = 0.05
MAX_FRAME_GAP = 0.5  # seconds: a slow frame lowers the frame rate, but never below 2 a second
IDLE_POLL = 0.1  # seconds between looks at the keyboard while paused or done
TEMP_STEP, TEMP_MIN, TEMP_MAX = 0.1, 0.1, 5.0
# Arrows, F-keys: ignored. An Esc with a key after it in one read is that key (Esc then q quits;
# no Alt chord has a meaning here).
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|O.)?")


@dataclass
class LiveResult:
    text: str = ""
    tokens: int = 0  # generated over the whole session (all restarts)
    seconds: float = 0.0  # time spent generating (pauses excluded), frames included
    view_seconds: float = 0.0  # of which: the view's frames (text folding, layout, drawing)
    saved: list[Path] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def describe(ckpt: checkpoint.Checkpoint, params: int) -> ViewInfo:
    cfg, tokenizer = lm_config(ckpt), ckpt.tokenizer
    size = f"{params / 1e6:.1f}M" if params >= 1e5 else f"{params / 1e3:.0f}k"
    model = f"{cfg.cell} {cfg.layers}×{cfg.hidden} {tokenizer.level} {size}"
    where = f"{ckpt.run_folder.name}/{ckpt.folder.name}"
    step = ckpt.meta.get("progress", {}).get("step")
    val = ckpt.meta.get("metrics", {}).get("val_loss")
    detail = (f" @{step}" if step is not None else "") + (f" val {val:.3f}" if val else "")
    return ViewInfo(model, where + detail, tokenizer.token_strings())


StreamMaker = Callable[[list[int]], TokenStream]  # prime ids → a new stream (reads opts.seed)


def stream_maker(ckpt: checkpoint.Checkpoint, opts: SampleOptions, device: str,
                 mix: str | None, mix_weight: float | None, root: Path | None,
                 say: Callable[[str], None] | None = None) -> tuple[StreamMaker, ViewInfo]:
    """What makes the view's streams, and the facts it shows: where plain output would sample
    without PyTorch (one forward stream on a CPU), so does the view — the same engine, and no
    torch import (seconds of start-up); else the Sampler over the loaded model."""
    from charrnn.lm import plain

    config = lm_config(ckpt)
    if plain.without_torch(config, opts, 1, device, mix is not None or mix_weight is not None):
        from charrnn.lm import cpustream

        weights = plain.read_cpu_weights(ckpt)
        return (lambda prime_ids: plain.cpu_tokens(weights, opts, prime_ids, stats=True,
                                                   more=True, chunk=cpustream.LIVE_CHUNK),
                describe(ckpt, cpustream.parameter_count(config)))
    return _torch_streams(ckpt, opts, device, mix, mix_weight, root, say)


def _torch_streams(ckpt: checkpoint.Checkpoint, opts: SampleOptions, device: str,
                   mix: str | None, mix_weight: float | None, root: Path | None,
                   say: Callable[[str], None] | None) -> tuple[StreamMaker, ViewInfo]:
    from charrnn.devices import resolve_device
    from charrnn.evaluation.mix import mixture_of
    from charrnn.lm import plain
    from charrnn.lm.model import load_lm
    from charrnn.lm.sample import Sampler, live_chunk_size

    dev = resolve_device(device)
    model = load_lm(ckpt, dev)
    mixture = mixture_of(ckpt, model, dev, mix, mix_weight, root, say)  # (on the model as is)
    model.never_write(plain.unwritten(ckpt), plain.NEVER)
    info = describe(ckpt, sum(p.numel() for p in model.parameters()))
    if mixture is not None:
        info.mixture = f"{mixture.name}, λ {mixture.weight:.3g}"

    def streams(prime_ids: list[int]) -> TokenStream:
        sampler = Sampler(model, dev, opts, mixture=mixture, chunk=live_chunk_size(dev))
        return sampler.tokens(prime_ids, stats=True)
    return streams, info


def live_sample(ckpt: checkpoint.Checkpoint, opts: SampleOptions, prime: str | None,
                device: str = "auto", unknown: str | None = None, *,
                console: Console | None = None,
                keys=None, hold: bool = True, mix: str | None = None,
                mix_weight: float | None = None, root: Path | None = None,
                say: Callable[[str], None] | None = None) -> LiveResult:
    """Run the live view until q (or, with hold=False, until `opts.length` tokens are out);
    `say` hears what takes seconds before it starts (tuning a --mix weight)."""
    opts.validate()
    start = encode_prime(ckpt.tokenizer, prime, unknown)
    streams, info = stream_maker(ckpt, opts, device, mix, mix_weight, root, say)
    session = _Session(streams, ckpt.tokenizer, opts, start, info,
                       console or Console(), keys if keys is not None else RawKeys(), hold,
                       ckpt.run_folder.name)
    try:
        return session.run()
    finally:
        if console is None:  # back on the normal screen (also after Ctrl-C): leave the text there
            # a terminal: shown, never obeyed (`s` saves the text as it is)
            sys.stdout.write(visible(session.result.text) + "\n")
            for path in session.result.saved:
                sys.stdout.write(f"saved to {path}\n")
            sys.stdout.flush()


class _Session:
    def __init__(self, streams: StreamMaker, tokenizer, opts: SampleOptions, start: Prime,
                 info: ViewInfo, console: Console, keys, hold: bool, run_name: str) -> None:
        self.streams, self.tokenizer, self.opts = streams, tokenizer, opts
        self.start, self.hold, self.run_name = start, hold, run_name
        self.prime_text = primed_decoder(tokenizer, start)[1]
        self.console, self.keys = console, keys
        self.view = SampleView(info, opts)
        self.seed = opts.seed if opts.seed is not None else random.randrange(1 << 31)
        self.result = LiveResult()
        self.next_frame = 0.0
        self.frame_seconds: float | None = None  # the last frame's, wall time (run_ahead)
        self.dirty = True  # something to show that is not on screen yet
        self.rate_window: deque[tuple[float, int]] = deque()
        self.parts: list[str] = []
        self.tokens_before = 0  # generated by earlier samples of this session (restarts)

    def start_sample(self) -> None:
        self.opts.seed = self.seed  # the one options object: the temperature survives restarts
        self.tokens = self.streams(self.start.ids)
        self.decoder = primed_decoder(self.tokenizer, self.start)[0]
        self.parts = [self.prime_text]
        self.view.restart(self.prime_text, self.seed, self.opts.length)
        self.rate_window.clear()

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> LiveResult:
        if not self.console.is_terminal:  # no alternate screen to draw the frames on
            raise UserError(f"the live view needs a terminal that Rich can draw on: use {option('plain')}")
        handlers = self._install_signals()
        try:
            # The alternate screen, cursor hidden; each frame rewrites its lines in place
            # (Console.update_screen_lines: Live would crop every segment twice more).
            with self.keys, self.console.screen(hide_cursor=True):
                self.start_sample()
                self._loop()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self.result.text = "".join(self.parts)
        return self.result

    def _loop(self) -> None:
        view, clock, interval = self.view, time.perf_counter, 1.0 / FPS
        last = clock()
        while True:
            running = not view.paused and view.generated < view.target
            if running:
                self._next_chunk()
                done = view.generated >= view.target
                pressed = self.keys.read(0.0)
                if not done and not pressed and clock() < self.next_frame:
                    continue  # the common case: no frame due, next chunk; a key gets one at once
                if done:  # the last token always gets a frame
                    self._finish_sample()
            else:  # paused or done: redraw only for a key or a resize
                pressed = self.keys.read(IDLE_POLL)
                if not pressed and not self.dirty:
                    continue
            self.dirty = False
            now = clock()
            if running:
                self.result.seconds += now - last
            last = now
            self._measure(now, running)
            if not self._handle(pressed):
                break
            if not view.paused and view.generated < view.target:  # (a key may have paused)
                self.tokens.run_ahead(self.frame_seconds)  # drawn while this frame is
            cpu = time.thread_time()
            view.flush()
            folding = time.thread_time() - cpu  # CPU time: a descheduled moment is not its cost
            drawn = clock()
            width, height = self.console.size
            self.console.update_screen_lines(view.render().lines(self.console, width, height))
            drawing = clock() - drawn  # wall time: a slow terminal's blocked writes count
            self.frame_seconds = clock() - now
            if running:
                self.result.view_seconds += self.frame_seconds
            # The frame's cost sets the next gap, capped so keys and the screen stay responsive.
            spent = folding + drawing
            self.next_frame = now + min(MAX_FRAME_GAP, max(interval, spent / MAX_VIEW_SHARE))
            if not self.hold and view.generated >= view.target:
                break
        self.result.tokens = self.tokens_before + view.generated

    def _next_chunk(self) -> None:
        """The next tokens up to the target (a chunk's surplus waits for 'more')."""
        view = self.view
        chunk = self.tokens.take(view.target - view.generated)
        ids = chunk.ids[0].tolist()
        texts = [self.decoder.feed(token) for token in ids]
        view.record(ids, texts, chunk.stats[0])
        self.parts.extend(texts)

    def _finish_sample(self) -> None:
        tail = self.decoder.flush() if hasattr(self.decoder, "flush") else ""
        if tail:  # bytes of an unfinished UTF-8 character (subword byte fallback)
            self.view.flush()
            self.view.flow.add(tail, bucket(self.view.chosen_p))
            self.parts.append(tail)

    def _measure(self, now: float, running: bool) -> None:
        """The tokens/s shown: over about the last second of generation."""
        window = self.rate_window
        if not running:
            window.clear()
            return
        window.append((now, self.view.generated))
        while len(window) > 2 and now - window[0][0] > 1.0:
            window.popleft()
        if len(window) >= 2:
            self.view.rate = (window[-1][1] - window[0][1]) / (now - window[0][0])
        elif self.result.seconds > 0:  # the first frame (a short sample's only one): so far
            self.view.rate = (self.tokens_before + self.view.generated) / self.result.seconds

    # ---- keys ---------------------------------------------------------------------------------
    def _handle(self, pressed: str) -> bool:
        view, opts = self.view, self.opts
        for key in _ESCAPES.sub("", pressed):
            if key in "qQ":
                return False
            if key == " ":
                if view.generated >= view.target:  # done: space asks for more
                    view.target += opts.length
                    view.paused, view.status = False, f"{opts.length} more tokens"
                else:
                    view.paused = not view.paused
                    view.status = "paused: space resumes" if view.paused else "resumed"
                self.rate_window.clear()
            elif key in "+=-_rR" and opts.greedy:  # nothing to change: say so, not that it did
                view.status = "greedy: the most likely token each time (no temperature, no seed)"
            elif key in "+=":  # never down, where a typed --temp is above the keys' range
                t = opts.temperature
                opts.temperature = round(max(t, min(TEMP_MAX, t + TEMP_STEP)), 2)
                view.status = f"temperature {opts.temperature:.2f}"
            elif key in "-_":  # never up, where a typed --temp is below it
                t = opts.temperature
                opts.temperature = round(min(t, max(TEMP_MIN, t - TEMP_STEP)), 2)
                view.status = f"temperature {opts.temperature:.2f}"
            elif key in "rR":
                self.seed += 1
                self.tokens_before += view.generated
                self.start_sample()
                view.paused, view.status = False, f"restarted with seed {self.seed}"
            elif key in "sS":
                view.status = self._save()
        return True

    def _save(self) -> str:
        text = "".join(self.parts)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, n = Path.cwd() / f"sample-{self.run_name}-{stamp}.txt", 1
        while path.exists():
            n += 1
            path = path.with_name(f"sample-{self.run_name}-{stamp}-{n}.txt")
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            return f"cannot save to {path}: {exc.strerror}"
        self.result.saved.append(path)
        return f"saved {len(text):,} characters to {path}"

    # ---- signals ------------------------------------------------------------------------------
    def _install_signals(self) -> dict:
        """SIGWINCH: redraw now. (SIGTERM unwinds as in every command, exit 143, through the
        CLI's own handler, so the terminal is restored; a handler here said 'interrupted' and
        exited 130, as for a Ctrl-C.)"""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_resize(signum, frame):  # noqa: ARG001
            self.next_frame, self.dirty = 0.0, True

        sig = getattr(signal, "SIGWINCH", None)
        return {} if sig is None else {sig: signal.signal(sig, on_resize)}
