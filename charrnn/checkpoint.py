"""Self-describing checkpoints: safetensors for tensors, JSON for everything else. Never pickle.

    <run>/best/ or <run>/last/
        checkpoint.json       format, version, model config, tokenizer, train config, progress,
                              metrics, optimizer hyper-parameters
        model.safetensors     weights (tied weights stored once)
        state.safetensors     resume state: optimizer moments, RNG states, carried hidden state

Folders are written with `fsutil.atomic_dir`, so a crash at any moment leaves the previous
checkpoint whole. File names inside a folder are fixed: nothing in the metadata names a path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from safetensors import SafetensorError

from charrnn import fsutil, runs, weights
from charrnn.configs import typed_config
from charrnn.errors import UserError, option
from charrnn.tokenizers import Tokenizer, tokenizer_from_json

if TYPE_CHECKING:  # torch is imported where a model is built or saved: reading a checkpoint's
    import torch  # JSON and header (`charrnn sample` on a CPU, cpusample.py) goes without it

C, T = TypeVar("C"), TypeVar("T")
M = TypeVar("M", bound="torch.nn.Module")

FORMAT, VERSION = "charrnn-checkpoint", 1
OPTIONAL_SECTIONS = ("dataset", "train", "progress", "metrics", "optimizer", "data")
TASKS = {"lm": "a language model", "tag": "a tagger", "fill": "a fill model"}
META, WEIGHTS, STATE = "checkpoint.json", "model.safetensors", "state.safetensors"


@dataclass
class Checkpoint:
    folder: Path
    meta: dict

    def config(self, config_type: type[C], section: str = "model") -> C:
        """A section of checkpoint.json as its config, every field's type and range checked."""
        return typed_config(config_type, self.meta.get(section), f"{self.folder / META} [{section}]")

    def build(self, config_type: type[C], model_type: Callable[[C], M],
              device: torch.device | str = "cpu") -> M:
        """The model this checkpoint describes, with its weights, on `device`. Before anything is
        allocated, the config is checked, the model's size against the memory it will occupy
        (device and host), and the weights file's names and shapes against the config: a damaged
        or hostile checkpoint.json claiming a huge model is one clear error, at once."""
        import torch

        from charrnn.devices import require_loadable

        config = self.config(config_type)
        device = torch.device(device)
        skeleton = require_loadable(lambda: model_type(config), device,
                                    f"{self.folder / META} claims a model this size: the checkpoint "
                                    "is damaged, or was made on a machine with more memory")
        self.check_weights(skeleton)
        with torch.device(device):  # built where it runs: no host copy of a GPU model
            model = model_type(config)
        return self.load_into(model, device)

    def check_weights(self, model: torch.nn.Module) -> None:
        """Refuse a weights file whose tensors are not `model`'s (which may be on the meta device):
        read from the header alone."""
        self._weights(weights.check, model)

    def require_task(self, task: str, use: str) -> None:
        """Refuse a checkpoint of another task, naming what to use it with."""
        if self.task != task:
            raise UserError(f"{self.folder} holds {TASKS.get(self.task, repr(self.task))}, not "
                            f"{TASKS[task]}: {use}")

    @property
    def tokenizer(self) -> Tokenizer:
        """The stored tokenizer; one whose size is not the model's is refused (every id the model
        gives must be one it can spell)."""
        try:
            tokenizer = tokenizer_from_json(self.meta["tokenizer"], str(self.folder / META),
                                            "the checkpoint is corrupt")
        except UserError as exc:  # (the other checkpoint read only then: its weights whole)
            raise UserError(f"{exc}{_other_checkpoint(self.folder)}") from exc
        size = self.meta["model"].get("vocab_size")  # (under 1: the config's check says so)
        if isinstance(size, int) and size >= 1 and tokenizer.vocab_size != size:
            raise UserError(f"{self.folder / META}: its tokenizer has {tokenizer.vocab_size:,} "
                            f"tokens and its model {size:,}: the checkpoint is "
                            f"corrupt{_other_checkpoint(self.folder)}")
        return tokenizer

    @property
    def run_folder(self) -> Path:
        return self.folder.parent

    @property
    def started_at(self) -> float:
        """When the run began, as this checkpoint tells: its save time less its training time."""
        elapsed = float((self.meta.get("progress") or {}).get("elapsed", 0.0))
        return float(self.meta.get("saved_at") or time.time()) - elapsed

    def resumed_from(self) -> str:
        """What a resume line adds about where it starts: nothing from last/; from best/ (last/
        is missing), that the steps after it are trained again."""
        if self.folder.name != "best":
            return ""
        return " from best/ (last/ is missing or damaged: the steps after it are trained again)"

    @property
    def task(self) -> str:
        """"lm" for language models; "tag" and "fill" for the models of charrnn.tagger/fillmodel."""
        return str(self.meta.get("task", "lm"))

    def load_into(self, model: M, device: torch.device | str | None = None) -> M:
        """Copy the weights into an already built module (of whatever task), in place: its memory
        layout stays (on CUDA, cuDNN's flat RNN buffer); then move it to `device` if given."""
        self._weights(weights.load, model)
        return model if device is None else model.to(device)

    def _weights(self, action: Callable[[Path, torch.nn.Module], None], model: torch.nn.Module) -> None:
        """Run a weights action on this checkpoint's module (`read_weights`)."""
        self.read_weights(lambda path: action(path, model))

    def read_weights(self, action: Callable[[Path], T]) -> T:
        """action(the weights file), its failures said for what they are: a damaged file, a file
        that does not fit the config, or one that cannot be read."""
        path = self.folder / WEIGHTS
        try:
            return action(path)
        except weights.Mismatch as exc:
            raise UserError(f"{path} does not match its config ({exc})"
                            f"{_other_checkpoint(self.folder)}") from exc
        except weights.NotFinite as exc:
            raise UserError(f"{path} holds NaN or inf (in {exc}): the file is damaged, or the run "
                            f"had diverged when it was saved{_other_checkpoint(self.folder)}") from exc
        except SafetensorError as exc:
            raise UserError(f"{path} is truncated or corrupt ({_one_line(exc)})"
                            f"{_other_checkpoint(self.folder)}") from exc
        except OSError as exc:
            raise UserError(f"{path} cannot be read ({exc.strerror or exc}): check the file's "
                            "permissions and the disk") from exc

    def load_state(self) -> dict[str, torch.Tensor]:
        """The resume state (optimizer moments, RNG, carried hidden state) of `--resume`."""
        path = self.folder / STATE
        if not path.is_file():
            raise UserError(f"{self.folder} has no resume state ({STATE} is missing): "
                            f"{self.without_state()}")
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as exc:
            raise UserError(f"{path} is truncated or corrupt ({_one_line(exc)}): "
                            f"{self.without_state()}") from exc
        except OSError as exc:
            raise UserError(f"{path} cannot be read ({exc.strerror or exc}): check the file's "
                            "permissions and the disk") from exc

    def without_state(self) -> str:
        """What to do when this checkpoint cannot be resumed: the sibling checkpoint when it has
        a resume state (it goes back to its own step), else a new run."""
        other = _sibling(self.folder)
        if other is not None and _looks_whole(other, with_state=True):
            return (f"continue from the run's other checkpoint instead ({option('resume')} {other}; it "
                    "restarts from its own step)")
        return (f"training cannot continue from it, but its weights can still be sampled and "
                f"evaluated (charrnn sample {self.folder}, charrnn eval {self.folder}); to train "
                "further, train a new run")


@dataclass
class Captured:
    """A checkpoint's contents copied off the live model (host memory), ready to be written."""

    weights: dict[str, torch.Tensor]
    meta: dict
    state: dict[str, torch.Tensor] | None


def capture(model: torch.nn.Module, meta: dict, state: dict[str, torch.Tensor] | None) -> Captured:
    tensors = None if state is None else {
        k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
    return Captured(weights.cpu_copies(model), meta, tensors)


def write(folder: Path, captured: Captured) -> None:
    """Write a checkpoint folder atomically (the previous one stays whole until the swap)."""
    from safetensors.torch import save_file

    with fsutil.atomic_dir(folder) as tmp:
        try:
            save_file(captured.weights, str(tmp / WEIGHTS))
            if captured.state is not None:
                save_file(captured.state, str(tmp / STATE))
        except SafetensorError as exc:  # e.g. "No space left on device": an I/O failure
            raise OSError(str(exc).split(": ", 1)[-1]) from exc
        fsutil.write_json_atomic(tmp / META, {"format": FORMAT, "version": VERSION, **captured.meta})


def save(folder: Path, model: torch.nn.Module, meta: dict,
         state: dict[str, torch.Tensor] | None) -> None:
    write(folder, capture(model, meta, state))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]  # the library's message may span lines


def _named(folder: Path, asked: str | None) -> Checkpoint:
    """The checkpoint folder RUN names; refused where --checkpoint asks for the run's other one."""
    if asked is not None and folder.name in ("best", "last") and folder.name != asked:
        raise UserError(f"{folder} is the run's {folder.name} checkpoint and {option('checkpoint')} asks "
                        f"for {asked}: drop {option('checkpoint')}, or give the run (or its {asked}/)")
    return open_checkpoint(folder)


def _refuse_non_checkpoint(path: Path) -> None:
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04":
        raise UserError(f"{path} is a pickle / torch.save file: charrnn never unpickles checkpoints "
                        "(they can run code); give a charrnn checkpoint folder")
    raise UserError(f"{path} is not a charrnn checkpoint: give a run name, a run folder or a "
                    "checkpoint folder (with checkpoint.json)")


def _sibling(folder: Path) -> Path | None:
    """<run>/last for <run>/best and the other way round; None for other folders."""
    if folder.name not in ("best", "last"):
        return None
    return folder.with_name("last" if folder.name == "best" else "best")


def _other_checkpoint(folder: Path) -> str:
    """'; use the run's other checkpoint (…)' when a damaged best/ or last/ has a sibling that
    looks whole; '' otherwise (pointing at a missing folder would send the user in a circle)."""
    other = _sibling(folder)  # (an error's path: reading the sibling's weights whole is fine)
    if other is None or not (_looks_whole(other) and weights.all_finite(other / WEIGHTS)):
        return ""
    return f"; use the run's other checkpoint ({other})"


def _looks_whole(folder: Path, with_state: bool = False) -> bool:
    """Whether a checkpoint folder is worth pointing to: its metadata there, its tensor files
    (the resume state too, when asked) as long as their headers say."""
    files = (WEIGHTS, STATE) if with_state else (WEIGHTS,)
    return _json_whole(folder / META) and all(_weights_whole(folder / name) for name in files)


def _json_whole(path: Path) -> bool:
    """Whether a checkpoint's metadata reads as a JSON object (a cut-short one was pointed to as
    the way out of a damaged sibling)."""
    try:
        fsutil.read_json(path, "checkpoint")
    except UserError:
        return False
    return True


def _weights_whole(path: Path) -> bool:
    """A safetensors file as long as its header says (a crash or a full disk cuts it short):
    read the header only, not the weights."""
    try:
        total = path.stat().st_size
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if size > total - 8:  # not a header length (a git-LFS pointer, garbage): no read
                return False
            header = json.loads(handle.read(size))
        if not isinstance(header, dict):
            return False
        ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
        return total == 8 + size + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False


def resolve_for_resume(spec: str, root: Path, kind: str = "lm") -> Checkpoint:
    """The checkpoint a --resume continues: the run's last/ (its best/ where last/ is missing or
    damaged). A best/ named outright while a whole last/ is further on is refused: resuming it
    would train the steps after it again, over last/ and the run's metrics."""
    error, ckpt = None, None
    try:
        ckpt = resolve(spec, root, prefer="last", kind=kind)
    except UserError as exc:
        error = exc  # a damaged last/ (its checkpoint.json cut short): best/, where whole
    if ckpt is None or (ckpt.folder.name == "last" and not _resumable(ckpt.folder)):
        best = _whole_best(spec, root, kind)
        if best is not None:
            return best
        if ckpt is None:
            raise error
    last = ckpt.folder.with_name("last")
    if ckpt.folder.name != "best" or not _resumable(last):
        return ckpt
    try:
        last_step = int(fsutil.read_json(last / META, "")["progress"]["step"])
        best_step = int(ckpt.meta["progress"]["step"])
    except (UserError, KeyError, TypeError, ValueError):  # last/ unreadable: best/ it is
        return ckpt
    if last_step <= best_step:
        return ckpt
    raise UserError(f"{ckpt.folder} is step {best_step}, and the run trained on to step "
                    f"{last_step} (its last/): resuming best/ would train the steps after it "
                    f"again over them; give the run ({ckpt.run_folder.name}) to go on from step "
                    f"{last_step}, or fine-tune best/ into a new run ({option('init_from')} "
                    f"{ckpt.run_folder.name}/best)")


def _resumable(folder: Path) -> bool:
    """A checkpoint a resume can go on from: whole with its resume state, its weights finite
    (damage in place keeps a file's size and header; this reads the weights, once a resume)."""
    return _looks_whole(folder, with_state=True) and weights.all_finite(folder / WEIGHTS)


def _whole_best(spec: str, root: Path, kind: str) -> Checkpoint | None:
    """A run's best/, for a resume whose last/ is damaged: where the RUN named is the run (not
    its last/ named outright) and its best/ is whole with its resume state; else None."""
    if spec is not None and Path(spec).name == "last":
        return None
    try:
        best = runs.resolve_run(spec, root, kind=kind) / "best"
    except UserError:
        return None
    return open_checkpoint(best) if _looks_whole(best, with_state=True) else None


def open_checkpoint(folder: Path) -> Checkpoint:
    fsutil.recover_dir(folder)
    try:
        meta = fsutil.read_json(folder / META, f"checkpoint {folder}")
    except UserError as exc:
        raise UserError(f"{exc}{_other_checkpoint(folder)}") from exc
    if meta.get("format") != FORMAT:
        raise UserError(f"{folder / META} is not a charrnn checkpoint (format "
                        f"{meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise UserError(f"{folder} is checkpoint version {meta.get('version')}; this charrnn "
                        f"reads version {VERSION}: upgrade charrnn or retrain")
    for key in ("model", "tokenizer"):
        if not isinstance(meta.get(key), dict):
            raise UserError(f"{folder / META} lacks its {key!r} section: the checkpoint is "
                            f"corrupt{_other_checkpoint(folder)}")
    for key in OPTIONAL_SECTIONS:  # where present, every reader takes them for objects
        if key in meta and not isinstance(meta[key], dict):
            raise UserError(f"{folder / META}'s {key!r} section is not an object: the checkpoint "
                            f"is corrupt{_other_checkpoint(folder)}")
    if not (folder / WEIGHTS).is_file():
        raise UserError(f"{folder} is missing {WEIGHTS}: the checkpoint is "
                        f"incomplete{_other_checkpoint(folder)}")
    return Checkpoint(folder, meta)


def named_folder(spec: str, root: Path) -> Path | None:
    """The checkpoint folder RUN names, as given or under the root (my-run/last, a copied
    checkpoint folder, its checkpoint.json), or None: RUN names a run, or nothing."""
    for path in (Path(spec), Path(root) / spec):
        found = _checkpoint_at(path)
        if found is not None:
            return found
    return None


def _checkpoint_at(path: Path) -> Path | None:
    """The checkpoint folder `path` is (or whose file it is), or None."""
    if path.is_file():
        return path.parent if path.name in (WEIGHTS, META) else None
    in_run = path.name in ("best", "last") and (path.parent / runs.RUN_FILE).is_file()
    return path if (path / META).is_file() or in_run else None  # in_run: mid-swap, recovered


def resolve(spec: str | None, root: Path, prefer: str = "best", kind: str = "lm",
            asked: str | None = None) -> Checkpoint:
    """RUN (name / run folder / checkpoint folder / file) → an open checkpoint.

    `prefer`: which of a run's two is taken first; `asked`: the one the user asked for (that
    one, and a RUN naming the other is refused). `kind` is the run kind picked when no RUN is
    given (the newest run of that kind).
    """
    prefer, root = asked or prefer, Path(root)  # (a library caller's "runs" too)
    if prefer not in ("best", "last"):
        raise UserError(f"{option('checkpoint')} must be best or last, not {prefer!r} (or give the "
                        "checkpoint folder as RUN, e.g. my-run/last)")
    # A path as given, then the same path under the runs root ("myrun/last" names that folder).
    for path in (Path(spec), root / spec) if spec is not None else ():
        found = _checkpoint_at(path)
        if found is not None:  # (open_checkpoint recovers a run's best/ or last/ mid-swap)
            return _named(found, asked)
        if path.is_file():
            _refuse_non_checkpoint(path)
    folder = runs.resolve_run(spec, root, kind=kind)
    order = ("best", "last") if prefer == "best" else ("last", "best")
    for name in order:  # both, before either is read: a crash may have hit either write
        fsutil.recover_dir(folder / name)
    for name in order:
        if (folder / name / META).is_file():
            if asked is not None and name != asked:  # asked for, and not there
                raise UserError(f"{folder} has no {asked}/ checkpoint (it has {name}/): drop "
                                f"{option('checkpoint')}, or give {option('checkpoint')} {name}")
            return open_checkpoint(folder / name)
    info = runs.run_info(folder)
    if info.get("kind") == "ngram":
        raise UserError(f"{folder} is {runs.a_kind('ngram')} run: use `charrnn ngram ...` for it")
    raise UserError(runs.no_checkpoint_message(folder))

