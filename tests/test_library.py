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


@pytest.mark.parametrize("build", [
    lambda: __import__("charrnn.lm.config").lm.config.TrainConfig(hidden="32"),
    lambda: __import__("charrnn.lm.config").lm.config.TrainConfig(lr="x"),
    lambda: __import__("charrnn.lm.config").lm.config.TrainConfig(cutoffs=5),
    lambda: __import__("charrnn.lm.config").lm.config.SampleOptions(temperature="1").validate(),
    lambda: __import__("charrnn.data").data.PreprocessOptions(val_frac="0.1").validate(),
    lambda: __import__("charrnn.tag.config").tag.config.TagTrainConfig(hidden=8.5),
])
def test_a_config_of_the_wrong_type_is_one_clear_error(build) -> None:
    """TrainConfig(hidden="32") and val_frac="0.1" raised TypeError from a comparison."""
    from charrnn.errors import UserError

    with pytest.raises(UserError, match=r"must be (int|float|list\[int\]|list\[str\])"):
        build()


def test_one_path_alone_or_a_path_object_is_one_input(small_text: Path, tmp_path: Path) -> None:
    """'c.txt' was read as the paths c, ., t, x, t; a Path raised TypeError or AttributeError."""
    from charrnn import data
    from charrnn.inputs import expand_inputs

    assert expand_inputs(small_text) == expand_inputs(str(small_text)) == [small_text]
    assert expand_inputs([small_text]) == [small_text]
    for inputs in (small_text, str(small_text), [small_text]):
        assert data.prepare(inputs, data.PreprocessOptions()).id == \
            data.prepare([str(small_text)], data.PreprocessOptions()).id
    opts = data.PreprocessOptions(valid=small_text.with_name("v.txt"))
    small_text.with_name("v.txt").write_text("some other text\n")
    opts.validate()
    assert opts.valid == [str(small_text.with_name("v.txt"))]


def test_numpy_numbers_and_tuples_in_a_config_become_the_python_ones_it_saves() -> None:
    """np.int64(2) passed the type check, then failed in json.dumps after the run folder was
    made; a tuple of cutoffs was refused."""
    import numpy as np

    from charrnn.lm.config import TrainConfig

    cfg = TrainConfig(hidden=np.int64(16), lr=np.float32(0.004), max_steps=np.int32(2),
                      softmax="adaptive", cutoffs=(20, 60))
    assert (type(cfg.hidden), type(cfg.lr), type(cfg.max_steps)) == (int, float, int)
    assert cfg.cutoffs == [20, 60]


def test_a_resume_refuses_a_config_or_overrides_it_would_ignore(small_text: Path,
                                                               tmp_path: Path) -> None:
    """The config and an lr (or a misspelt max_stepz) were dropped silently; nothing trained."""
    from charrnn.data import PreprocessOptions
    from charrnn.errors import UserError
    from charrnn.lm.config import TrainConfig
    from charrnn.lm.job import train_job
    from charrnn.training.reporters import SilentReporter

    root, quiet = tmp_path / "runs", SilentReporter()
    train_job([str(small_text)], PreprocessOptions(), TrainConfig(hidden=16, layers=1,
              max_steps=2, batch_size=4, seq_len=16), root, run_name="m", reporter=quiet)
    for cfg, overrides, said in ((TrainConfig(hidden=64), None, "pass cfg=None"),
                                 (None, {"max_steps": 4, "lr": 1.0}, "not lr"),
                                 (None, {"max_stepz": 4}, "not max_stepz")):
        with pytest.raises(UserError, match=said):
            train_job([], PreprocessOptions(), cfg, root, resume="m", overrides=overrides,
                      reporter=quiet)
    result = train_job([], PreprocessOptions(), None, root, resume="m",
                       overrides={"max_steps": 4}, reporter=quiet)
    assert result["step"] == 4


def test_library_calls_leave_the_callers_torch_random_state_as_it_was(small_text: Path,
                                                                     tmp_path: Path) -> None:
    import torch

    from charrnn import checkpoint
    from charrnn.data import PreprocessOptions
    from charrnn.evaluation.lm import evaluate_run
    from charrnn.lm.config import SampleOptions, TrainConfig
    from charrnn.lm.job import train_job
    from charrnn.lm.sample import generate
    from charrnn.training.reporters import SilentReporter

    root = tmp_path / "runs"
    calls = (lambda: train_job([str(small_text)], PreprocessOptions(), TrainConfig(
                 hidden=16, layers=1, max_steps=2, batch_size=4, seq_len=16, seed=7), root,
                 run_name="m", reporter=SilentReporter()),
             lambda: generate(checkpoint.resolve("m", root), SampleOptions(length=5, seed=3),
                              None, 1, lambda piece: None),
             lambda: evaluate_run("m", root))
    for call in calls:
        torch.manual_seed(12345)
        expected = torch.rand(3)
        torch.manual_seed(12345)
        call()
        assert torch.equal(torch.rand(3), expected)


def test_a_runs_folder_given_as_the_corpus_is_refused(small_text: Path, tmp_path: Path) -> None:
    """Its run.json, checkpoint.json and metrics.jsonl were trained on as text."""
    from helpers import TINY, run_cli

    run_cli("train", small_text, *TINY, "--max-steps", "2", "--run-name", "m")
    result = run_cli("train", tmp_path / "runs", *TINY, "--max-steps", "2", ok=False)
    assert result.exit_code == 2 and "is a run folder inside the input" in result.output


def test_an_unknown_precision_given_to_a_library_call_is_refused(tiny_run: Path) -> None:
    """evaluate_run(..., precision="fp8") raised KeyError: 'fp8'."""
    from charrnn.errors import UserError
    from charrnn.evaluation.lm import evaluate_run

    with pytest.raises(UserError, match="precision must be one of auto, fp32, bf16, not 'fp8'"):
        evaluate_run(str(tiny_run), tiny_run.parent, precision="fp8")


def test_a_run_name_or_a_string_of_sentences_given_to_the_library_is_one_clear_error(
        tiny_run: Path) -> None:
    """generate('ck/m', ...) raised AttributeError; TaggerBundle.predict("some text") and
    batch_size=0 raised AttributeError and ValueError."""
    from charrnn.errors import UserError
    from charrnn.lm.config import SampleOptions
    from charrnn.lm.sample import generate
    from charrnn.tag.predict import TaggerBundle

    with pytest.raises(UserError, match="generate takes a checkpoint"):
        generate(str(tiny_run), SampleOptions(length=3), None, 1, print)
    bundle = TaggerBundle.__new__(TaggerBundle)  # (the checks come before the model is read)
    with pytest.raises(UserError, match="predict takes a list of Sentence"):
        bundle.predict("some text")
    with pytest.raises(UserError, match="batch_size must be a whole number ≥ 1, got 0"):
        bundle.predict([], batch_size=0)
