"""One stream sampled on the CPU without PyTorch: NumPy steps, then a Numba kernel.

    model.safetensors ─ safetensors.numpy ─┐        (or a loaded RNNLM's tensors: Weights.of)
                                           ▼
    Weights: the layer-0 table (embedding · W_ih0ᵀ + b_ih0), W_ih / W_hh / biases per layer,
             projection, head ── as cpukernel.run_chunk takes them
                                           ▼
    CPUStream.run() → ids (n,) [+ stats (n, S)], K tokens a call, each chunk by one of:
        cpustep     NumPy, one vectorised step a token (no compiler loaded)
        cpukernel   run_chunk, K steps a compiled call (3–5× NumPy's tokens/s), on one core
                    or two (cpulanes.py measures which is faster)

Loading the kernel costs ~0.15 s per process: its machine code, kept in the cache folder, read by
llvmlite (machinecode.py; numba is not imported); making that code, once per machine and
version, is numba's compile (4.5 s, 22 s without numba's own cache). Where the kernel takes
over (`take_over`):
    length above KERNEL_PAYS (600)        token 0: the load is paid anyway, and every token
                                          the kernel makes instead of NumPy saves time
    --plain --length up to it             never: NumPy is quicker for all of them
    up to it, perhaps read further        token 512: NumPy until then, so short and stopped
      (the live view, the Sampler)        streams never pay the load, long ones pay it once
Chunks start at multiples of K (unless the live view stops one), so the switch is at a chunk's
start; a chunk drawn ahead of a frame, sized by the frame, comes only after it.

Seeds: the Gumbel noise is NumPy's PCG64 seeded with the seed, one (n, V) block a chunk of n
tokens — the same numbers as n draws of V — and a stop mid-chunk puts the generator back after
the kept tokens' rows: the i-th token draws with the i-th row, so the text does not depend on
the chunk sizes (nor on the frames that size the live view's chunks drawn ahead). NumPy and the
kernel compute the same float32 maths in another order: they draw the same token unless two tie
to within rounding, so a seed's text is the same for any --length unless such a tie falls where
one length's stream is NumPy's and the other's the kernel's. If the kept machine code cannot be
had, one line on stderr says so and numba's dispatcher runs the kernel (1 s to load); if numba
cannot either, another says so and NumPy goes on.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.cores import usable_cores
from charrnn.lm import cpulanes, cpustep
from charrnn.lm.config import ModelConfig, SampleOptions
from charrnn.lm.tokenstream import Chunk

TAKE_OVER = 512  # tokens of a stream of unknown length stepped by NumPy before the kernel
NEVER = 2**62  # a take-over no stream reaches
KERNEL_PAYS = 600  # a known length above which loading the kernel first is quicker: the whole
#                    `sample --plain` took the same either way at 600 tokens, 0.95 vs 1.18 s at
#                    1,000 (2×256 LSTM, 2-core AMD EPYC, medians of 5; NumPy ~2,900 tok/s)
CPU_CHUNK = 32  # tokens per chunk on the CPU: the per-chunk work (noise, one write) is negligible
LONG_CHUNK = 128  # a stream the kernel will draw: 32-token chunks cost two lanes 10–15% (a thread
#                   woken a chunk; bench figures in the README); its first token 50 ms later
LIVE_CHUNK = LONG_CHUNK  # the live view's, whatever the length (a chunk drawn ahead of a
#                         frame is as long as the frame: ahead_tokens)
TINY = np.finfo(np.float32).tiny  # E = 0 would make the noise +inf (decode.TINY)
AHEAD_STEP = 8  # tokens: a chunk run ahead of a frame is a multiple of this
PREFETCH = True  # draw the kernel's next chunk while the caller uses this one (tests turn it off)
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


@dataclass
class ChunkStart:
    """What a rewind into a chunk needs: the state and the generator before it, its noise (None:
    greedy) and its size."""

    state: tuple[np.ndarray, np.ndarray, np.ndarray]  # h, c, scores: copies
    rng: dict  # the generator's state before the chunk's noise
    noise: np.ndarray | None
    n: int


def schedule(length: int, more: bool = False) -> tuple[int, int]:
    """(the token from which the kernel draws, tokens per chunk) for a stream read for `length`
    tokens (`more`: and perhaps further, as the live view's "more" and the library's Sampler
    may): longer chunks where the kernel draws; the text is the same for any."""
    take_over = 0 if length > KERNEL_PAYS else TAKE_OVER if more else NEVER
    return take_over, LONG_CHUNK if length > take_over else CPU_CHUNK


def eligible(config: ModelConfig) -> bool:
    """Full-softmax heads (the adaptive softmax's clusters stay with PyTorch)."""
    return config.softmax != "adaptive"


class Weights:
    """The arrays of one model as the step and the kernel read them (float32, contiguous)."""

    def __init__(self, config: ModelConfig, tensors: dict[str, np.ndarray]) -> None:
        def get(name: str) -> np.ndarray:
            return np.ascontiguousarray(tensors[name], dtype=np.float32)

        self.config, layers = config, range(config.layers)
        self.w_ih = [get(f"rnn.weight_ih_l{i}") for i in layers]
        self.w_hh = [get(f"rnn.weight_hh_l{i}") for i in layers]
        self.b_ih = [get(f"rnn.bias_ih_l{i}") for i in layers]
        self.b_hh = [get(f"rnn.bias_hh_l{i}") for i in layers]
        with np.errstate(over="ignore", invalid="ignore"):  # (said as the model's: prime)
            self.table = get("embed.weight") @ self.w_ih[0].T + self.b_ih[0]
        self.proj = (get("proj.weight"), get("proj.bias")) if "proj.weight" in tensors else None
        head = "embed.weight" if config.tie_weights else "head.weight"
        self.head_w, self.head_b = get(head), get("head.bias")

    @classmethod
    def of(cls, model) -> Weights:
        """A loaded RNNLM's weights (the live view and the Sampler, which have one)."""
        return cls(model.config, {name: tensor.detach().float().cpu().numpy()
                                  for name, tensor in model.state_dict().items()})

    @classmethod
    def from_file(cls, path: Path, config: ModelConfig) -> Weights:
        """model.safetensors read with NumPy, its names and shapes checked first (header only)."""
        from safetensors.numpy import load_file

        from charrnn import weights

        wanted, aliases = expected_shapes(config)
        weights.check_shapes(path, wanted, aliases)
        tensors = load_file(str(path))
        for name, values in tensors.items():
            weights.check_finite(name, values)
        return cls(config, tensors)

    def kernel_args(self) -> tuple:
        """cpukernel.run_chunk's weight arguments."""
        cfg = self.config
        w_ih = np.stack(self.w_ih[1:]) if cfg.layers > 1 else \
            np.zeros((0, *self.w_hh[0].shape), np.float32)
        proj = self.proj or (np.zeros((0, cfg.hidden), np.float32), np.zeros(0, np.float32))
        return (cpustep.CELL_CODES[cfg.cell], self.table, w_ih, np.stack(self.b_ih),
                np.stack(self.w_hh), np.stack(self.b_hh), *proj, self.head_w, self.head_b)


def expected_shapes(config: ModelConfig) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """(name → shape of each tensor saved, tied alias → its saved name): RNNLM's layout for a
    full-softmax config (tests/test_cpustream.py holds the two together)."""
    gates, hidden, emb = GATES[config.cell] * config.hidden, config.hidden, config.emb_size
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (config.vocab_size, emb)}
    for i in range(config.layers):
        shapes |= {f"rnn.weight_ih_l{i}": (gates, emb if i == 0 else hidden),
                   f"rnn.weight_hh_l{i}": (gates, hidden),
                   f"rnn.bias_ih_l{i}": (gates,), f"rnn.bias_hh_l{i}": (gates,)}
    projected = config.tie_weights and hidden != emb
    if projected:
        shapes |= {"proj.weight": (emb, hidden), "proj.bias": (emb,)}
    if not config.tie_weights:
        shapes["head.weight"] = (config.vocab_size, hidden)
    shapes["head.bias"] = (config.vocab_size,)
    return shapes, ({"head.weight": "embed.weight"} if config.tie_weights else {})


def parameter_count(config: ModelConfig) -> int:
    """The model's parameters, from its layout alone (a tied head counted once, as PyTorch's
    model.parameters() does)."""
    return sum(int(np.prod(shape)) for shape in expected_shapes(config)[0].values())


class CPUStream:
    """tokenstream.Engine for one stream, in NumPy arrays: run() → Chunk of ids (1, n) [+ stats
    (1, n, S)]; n < K only where a row had no distribution (the ids end with its -1)."""

    def __init__(self, weights: Weights, opts: SampleOptions, k: int, stats: bool,
                 seed: int, take_over: int | None = None) -> None:
        """`take_over`: the token from which the kernel draws (schedule; TAKE_OVER where the
        length is not known)."""
        self.weights, self.opts, self.k, self.stats = weights, opts, k, stats
        self.take_over = TAKE_OVER if take_over is None else take_over
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.inv_temp = 1.0
        self.kernel = self.kernel_args = None
        self.scratch: tuple[np.ndarray, ...] | None = None  # the lanes' shared arrays
        self.broken = False  # the kernel could not be loaded
        self.position = 0  # tokens drawn so far (after a rewind: those kept)
        self.start: ChunkStart | None = None  # the last chunk's (a rewind's way back)
        self.ahead = None  # the next chunk being drawn in a worker thread (a Future)
        self.behind: ChunkStart | None = None  # the handed chunk's, while one runs ahead
        self.choice = cpulanes.LaneChoice(usable_cores(whole=True))
        self.lanes_next: int | None = None  # the kind of the next chunk, where chosen already

    def set_temperature(self, temperature: float) -> None:
        self.inv_temp = 1.0 if self.opts.greedy else 1.0 / temperature

    def prime(self, ids: list[int]) -> None:
        self._discard_ahead()
        self.choice.reset()
        self.lanes_next = None
        cfg = self.weights.config
        self.h = np.zeros((cfg.layers, cfg.hidden), np.float32)
        self.c = np.zeros_like(self.h)
        with np.errstate(over="ignore", invalid="ignore"):  # (weights that overflow: NaN
            for token in ids:  # scores, said once as the model's, not as NumPy's warnings)
                self.scores = cpustep.step(self.weights, self.h, self.c, token)
        self.position, self.start = 0, None

    def run(self) -> Chunk:
        """The next chunk. Once the kernel has taken over, each chunk is made by one lane or
        two (cpulanes.py chooses, measuring); after one made by one lane, the next is started
        at once in a worker thread (its noise drawn here: the worker only runs the kernel,
        which releases the GIL), so decoding, writing and the live view's drawing overlap the
        sampling on a second core."""
        chunk, lanes = self._ahead_result() if self.ahead is not None else self._draw()
        self.choice.handed(lanes, time.perf_counter())
        if self.kernel is not None and len(chunk) == self.start.n \
                and self.position + self.k > self.take_over:
            self.lanes_next = self.choice.lanes()
            if PREFETCH and self.lanes_next == 1:
                self._start_ahead(measured=True)
        return chunk

    def run_ahead(self, seconds: float | None = None) -> None:
        """The caller is about to be busy for about `seconds` (the live view drawing a frame):
        start the next chunk now on one lane in the worker, where two lanes would have waited
        for the caller. Sized to end with the caller's pause (ahead_tokens): a full chunk on one
        lane outlasts a frame, and the caller would then wait with its core idle. Not measured
        for the choice of lanes: the caller's pause is not that chunk's cost."""
        if self.ahead is not None:  # one lane's, under way: as unmeasured, the same reason
            self.ahead = (*self.ahead[:3], 0)
        elif PREFETCH and self.lanes_next == 2:
            self._start_ahead(measured=False, n=self.ahead_tokens(seconds))

    def ahead_tokens(self, seconds: float | None) -> int:
        """Tokens one lane makes in `seconds` (its measured median), a multiple of AHEAD_STEP and
        at most a chunk, so that two lanes take over as the caller comes back:

            caller  ├─── frame ───┤├── two lanes ──
            lane 1  ├─ n tokens ──┤

        A whole chunk where the time or one lane's speed is not known yet."""
        one_lane = cpulanes.median(self.choice.seconds[1])
        if seconds is None or not np.isfinite(one_lane):
            return self.k
        steps = round(seconds * self.k / one_lane / AHEAD_STEP)
        return int(min(self.k, max(AHEAD_STEP, steps * AHEAD_STEP)))

    def _start_ahead(self, measured: bool, n: int | None = None) -> None:
        self.behind = self.start
        noise, ids, stats = self._prepare(n)
        future = cpulanes.worker("charrnn-sample").submit(self._kernel_call, noise, ids, stats)
        self.ahead = (future, ids, stats, 1 if measured else 0)

    def _ahead_result(self) -> tuple[Chunk, int]:
        """The chunk started ahead, and its lanes as measured (0: not measured)."""
        future, ids, stats, lanes = self.ahead
        future.result()
        self.ahead = None
        return self._chunk(ids, stats), lanes

    def _discard_ahead(self) -> None:
        """Forget the chunk drawn ahead: its start state back, its noise not drawn."""
        if self.ahead is None:
            return
        self._ahead_result()
        ahead = self.start
        self.h, self.c, self.scores = ahead.state
        self.rng.bit_generator.state = ahead.rng
        self.position -= ahead.n
        self.start = self.behind

    def _prepare(self, n: int | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """A chunk's noise and output arrays (n tokens, K unless run ahead); its start state
        kept for a rewind."""
        n, vocab = n or self.k, self.scores.shape[0]
        rng = self.rng.bit_generator.state
        noise = None if self.opts.greedy else -np.log(np.maximum(
            self.rng.standard_exponential((n, vocab), dtype=np.float32), TINY))
        self.start = ChunkStart((self.h.copy(), self.c.copy(), self.scores.copy()), rng, noise, n)
        self.position += n
        stats = np.zeros((n if self.stats else 0, cpustep.stats_width(vocab)), np.float32)
        return noise, np.empty(n, np.int64), stats

    def _draw(self) -> tuple[Chunk, int]:
        """The next chunk made here, and its lanes (0: NumPy's)."""
        noise, ids, stats = self._prepare()
        lanes = 0
        if self.position > self.take_over and self._kernel_ready():
            lanes, self.lanes_next = self.lanes_next or self.choice.lanes(), None
            self._kernel_call(noise, ids, stats, lanes)
        else:
            ids[:] = self._numpy_steps(noise, self.k, stats)
        return self._chunk(ids, stats), lanes

    def _chunk(self, ids: np.ndarray, stats: np.ndarray) -> Chunk:
        """The tokens up to the first row without a distribution (its -1 included)."""
        good = int(np.argmax(ids < 0)) + 1 if (ids < 0).any() else len(ids)
        return Chunk(ids[None, :good], stats[None, :good] if self.stats else None)

    def rewind(self, kept: int) -> None:
        """The state after the first `kept` tokens of the last chunk: its start state, then the
        same steps again (the same noise, so the same tokens)."""
        self._discard_ahead()
        self.choice.reset()
        self.lanes_next = None  # chosen again: the stream may be back before the take-over
        start, self.start = self.start, None
        if start is None or kept >= start.n:
            return
        (h, c, scores), noise = start.state, start.noise
        self.h, self.c, self.scores = h.copy(), c.copy(), scores.copy()
        self.position += kept - start.n
        part = None if noise is None else noise[:kept]
        if noise is not None:  # the generator as if only the kept tokens' noise was drawn
            self.rng.bit_generator.state = start.rng
            self.rng.standard_exponential(part.shape, dtype=np.float32)
        if self.kernel is not None and self.position + start.n - kept > self.take_over:
            self._kernel_call(part, np.empty(kept, np.int64), np.empty((0, 0), np.float32))
        else:
            self._numpy_steps(part, kept, np.empty((0, 0), np.float32))

    def _shaping(self) -> tuple[float, int, float]:
        opts = self.opts
        return (1.0, 0, 0.0) if opts.greedy else (self.inv_temp, opts.top_k or 0,
                                                  opts.top_p or 0.0)

    def _numpy_steps(self, noise: np.ndarray | None, n: int, stats: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # (as in prime)
            return self._numpy_steps_of(noise, n, stats)

    def _numpy_steps_of(self, noise: np.ndarray | None, n: int, stats: np.ndarray) -> np.ndarray:
        ids, good = np.full(n, -1, np.int64), 0
        shaping, rows = self._shaping(), []  # the shaped rows, kept for the stats only
        for i in range(n):
            shaped = cpustep.shape(self.scores, *shaping)
            ids[i] = cpustep.pick(shaped, None if noise is None else noise[i])
            if ids[i] < 0:
                break
            good = i + 1
            if stats.shape[0]:
                rows.append(shaped)
            self.scores = cpustep.step(self.weights, self.h, self.c, ids[i])
        if rows:
            stats[:good] = cpustep.stats(np.stack(rows), ids[:good], stats.shape[1])
        return ids

    def _kernel_ready(self) -> bool:
        """Whether the kernel is loaded, loading it once (not in a worker thread while NumPy
        steps: importing holds the GIL, measured 3× slower NumPy steps and no gain); False,
        said once on stderr, where it cannot be had."""
        if self.kernel is None and not self.broken:
            try:
                self.kernel, self.kernel_args, self.scratch = _load_kernel(self.weights,
                                                                           self.opts.greedy)
                self.choice.reset()  # the load is not the first kernel chunk's cost
            except Exception as exc:  # noqa: BLE001  (numba missing or refusing: slower only)
                self.broken = True
                _say_once("the compiled CPU sampling step is off", exc,
                          "NumPy steps the model, slower")
        return self.kernel is not None

    def _kernel_call(self, noise: np.ndarray | None, ids: np.ndarray, stats: np.ndarray,
                     lanes: int = 1) -> None:
        noise = np.empty((len(ids), 0), np.float32) if noise is None else noise
        inv_temp, top_k, top_p = self._shaping()
        args = (*self.kernel_args, self.h, self.c, self.scores, noise, np.float32(inv_temp),
                top_k, top_p, self.opts.greedy, ids, stats)
        cpulanes.run(self.kernel, args, lanes, self.scratch)


def _load_kernel(weights: Weights, greedy: bool) -> tuple:
    """(run_chunk, its weight arguments, the lanes' scratch), its code loaded by a call of zero
    steps (the types of every call the stream makes, so the code they run): the kernel's kept
    machine code (machinecode.py), or numba's dispatcher where that cannot be had."""
    try:
        from charrnn.lm import machinecode

        run_chunk = machinecode.kernel()
    except Exception as exc:  # noqa: BLE001  (a refusing LLVM, no cache folder: numba's own way)
        from charrnn.lm import cpukernel  # where numba cannot run either, NumPy steps

        _say_once("the sampling kernel's kept machine code is off", exc,
                  "numba loads the kernel, 1 s slower to start")
        run_chunk = cpukernel.run_chunk
    args = weights.kernel_args()
    cfg, vocab = weights.config, weights.head_b.shape[0]
    h = np.zeros((cfg.layers, cfg.hidden), np.float32)
    scratch = lane_scratch(weights)
    nothing = (np.empty((0, vocab), np.float32), np.float32(1.0), 0, 0.0, greedy,
               np.empty(0, np.int64), np.empty((0, cpustep.stats_width(vocab)), np.float32))
    cpulanes.run(run_chunk, (*args, h, np.zeros_like(h), np.zeros(vocab, np.float32), *nothing),
                 1, scratch)
    return run_chunk, args, scratch


def lane_scratch(weights: Weights) -> tuple[np.ndarray, ...]:
    """run_chunk's arrays after lane and lanes, but for sync: spare (the state's shape), the
    projection's output, and each lane's room (gi, gh, the shaped scores, the probabilities;
    the order of the scores)."""
    cfg, vocab = weights.config, weights.head_b.shape[0]
    gates = GATES[cfg.cell] * cfg.hidden
    projected = weights.proj[0].shape[0] if weights.proj else 0
    return (np.zeros((cfg.layers, cfg.hidden), np.float32), np.zeros(projected, np.float32),
            np.zeros((2, 2 * (gates + vocab)), np.float32), np.zeros((2, vocab), np.int64))


_said: set[str] = set()


def _say_once(what: str, exc: BaseException, instead: str) -> None:
    """One line on stderr, once a process: what is off, why, what runs instead."""
    if what in _said:
        return
    _said.add(what)
    with contextlib.suppress(OSError):
        print(f"charrnn: {what} ({type(exc).__name__}: {str(exc).strip()[:200]}); {instead}",
              file=sys.stderr, flush=True)
