"""The library without the command line, as the README's "From Python" section shows it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_python_example_runs_as_written(small_text: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    section = README.read_text(encoding="utf-8").split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    text = small_text.read_text(encoding="utf-8") + "ROMEO: speak.\n" * 20  # the prime's letters
    (tmp_path / "input.txt").write_text(text, encoding="utf-8")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2].startswith("ROMEO:") and float(printed[-1]) > 0
    assert (tmp_path / "checkpoints" / "demo" / "best" / "checkpoint.json").is_file()


def test_a_library_mistake_names_the_field_not_the_flag() -> None:
    from charrnn.errors import UserError
    from charrnn.lm.config import SampleOptions

    with pytest.raises(UserError, match="^greedy ignores temperature"):
        SampleOptions(greedy=True, temperature=0.5).validate()
