"""metrics.jsonl: every train and eval record of a run, one JSON object a line, for plots later."""

from __future__ import annotations

import json
from pathlib import Path

from charrnn.errors import UserError, option
from charrnn.fsutil import atomic_file


class MetricsLog:
    """Append-only metrics.jsonl; on resume, records after the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled
        self.kept: list[dict] = []  # a resumed run's records so far (its live view's history)
        if enabled and resume_step is not None and path.exists():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and _step_of(line) <= resume_step]
            self.kept = [json.loads(line) for line in kept]
            try:
                with atomic_file(path) as tmp:  # a crash leaves the old log or the new one
                    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            except UserError as exc:
                raise UserError(f"{exc}; the run folder must be writable to resume") from exc

    def write(self, rec: dict) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(rec) + "\n")
        except OSError as exc:
            raise UserError(f"could not append to {self.path}: {exc.strerror or exc}; the "
                            "checkpoints are intact (free some disk space, then "
                            f"{option('resume')})") from exc


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError, TypeError):  # ({"step": null}: a hand-edited line)
        return 1 << 62  # a torn last line from a crash: drop it
