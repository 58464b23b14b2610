"""bench/gpu_suite.sh's helper: the machine's versions, one results.jsonl line per part, and the
closing summary against the issue's bars. Standard library only, except `env` (torch).

    python bench/gpu_results.py env                                  # JSON: versions, GPU
    python bench/gpu_results.py bench NAME RC WALL LIMIT STDOUT_FILE  # a bench's JSON → one line
    python bench/gpu_results.py pytest NAME RC WALL LIMIT JUNIT_XML OUTPUT_FILE
    python bench/gpu_results.py summary RESULTS_JSONL                # the bars, as text
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

# The bars (issue 15, "Done when").
TRAIN_RATIO = 0.95  # charrnn tokens/s ÷ plain cuDNN + bf16 + fused AdamW loop
ONE_STREAM = 25_000  # tok/s, one stream, 2×512 LSTM (issue 21; the plain CUDA-graph loop: 25,190)
MANY_STREAMS = 1_200_000  # tok/s, 64 streams (--num-samples 64)
SHAKESPEARE = 1.38  # best val nats/char within 120 s of training (a recipe typed in)
SHAKESPEARE_TYPED = 1.38  # the same with nothing but --device cuda --max-time 120 (issue 20)
TUI_RATIO = 0.9  # the live view's tokens/s ÷ plain output's on CUDA (issue 21)
PTB_ALONE, PTB_MIXED = 75.0, 68.0  # `charrnn train ptb --device cuda --max-time 300`: test ppl


def env() -> dict:
    import importlib.metadata as md
    import platform

    info: dict = {"python": platform.python_version()}
    try:
        info["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                            timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        info["nvidia_smi"] = f"unavailable: {exc}"
    for name in ("torch", "typer", "click", "rich", "numpy", "numba", "sentencepiece",
                 "safetensors", "pytest", "pytest-timeout"):
        try:
            info[name] = md.version(name)
        except md.PackageNotFoundError:
            info[name] = None
    import torch

    info.update(cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
                cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        free, total = torch.cuda.mem_get_info(0)
        info["gpu_memory_gib"] = {"free": round(free / 2**30, 1), "total": round(total / 2**30, 1)}
    try:  # the whole CLI imports with this machine's packages (nothing installed there)
        import charrnn.cli.app  # noqa: F401

        info["charrnn_imports"] = True
    except Exception as exc:  # reported, not raised: the other parts still run
        info["charrnn_imports"] = f"{type(exc).__name__}: {exc}"
    return info


def _head(name: str, rc: str, wall: str, limit: str) -> dict:
    return {"name": name, "rc": int(rc), "timed_out": int(rc) in (124, 137), "part_s": int(wall),
            "limit_s": int(limit)}


def bench(name: str, rc: str, wall: str, limit: str, path: str, err: str | None = None) -> dict:
    text = open(path, encoding="utf-8", errors="replace").read()
    errors = open(err, encoding="utf-8", errors="replace").read() if err else ""
    try:
        result = json.loads(text)
    except ValueError:  # something printed before the JSON: take the JSON from its first line
        start = next((i for i, line in enumerate(text.splitlines()) if line.startswith("{")), None)
        try:
            result = json.loads("\n".join(text.splitlines()[start:])) if start is not None else None
        except ValueError:
            result = None
        if not isinstance(result, dict):
            result = {"output_tail": text[-1000:]}
    if int(rc) != 0 or "output_tail" in result:  # why it failed, without opening log.txt
        result["stderr_tail"] = errors[-1500:]
    return {**_head(name, rc, wall, limit), **result}


def pytest(name: str, rc: str, wall: str, limit: str, xml: str, output: str) -> dict:
    record = _head(name, rc, wall, limit)
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError) as exc:  # killed before pytest wrote it
        tail = open(output, encoding="utf-8", errors="replace").read()[-3000:]
        return {**record, "junit": f"unreadable: {exc}", "output_tail": tail}
    every = list(root.iter("testcase"))
    cases = [c for c in every if c.get("name")]  # a nameless one: the test that SIGINT stopped
    outcome: dict[str, list] = {"passed": [], "failed": [], "skipped": []}
    for case in cases:
        test = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure")
        bad = case.find("error") if bad is None else bad
        if bad is not None:
            message = (bad.get("message") or bad.text or "").strip().splitlines()
            outcome["failed"].append({"test": test, "message": message[0][:400] if message else ""})
        elif case.find("skipped") is not None:
            outcome["skipped"].append(test)
        else:
            outcome["passed"].append(test)
    slowest = sorted(cases, key=lambda c: -float(c.get("time") or 0))[:8]
    cuda_tests = [c for c in cases if "test_cuda" in (c.get("classname") or "")]
    return {**record, "passed": len(outcome["passed"]), "failed": outcome["failed"],
            "skipped": len(outcome["skipped"]), "interrupted": len(every) - len(cases),
            "cuda_tests_run": sum(c.find("skipped") is None for c in cuda_tests),
            "cuda_tests": len(cuda_tests),
            "slowest_s": [(c.get("name"), round(float(c.get("time") or 0), 1)) for c in slowest]}


def summary(path: str) -> str:
    """One line per figure the issue asks for: the figure, its bar, ok / BELOW / missing."""
    records = {}
    for line in open(path, encoding="utf-8"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        records[record.get("name")] = record
    lines = []

    def check(label: str, value, ok: bool | None, bar: str = "") -> None:
        verdict = "missing" if ok is None else ("ok" if ok else "BELOW BAR")
        lines.append(f"{verdict:>9}  {label}: {value}{'  (bar ' + bar + ')' if bar else ''}")

    for name, record in records.items():
        if name == "summary":
            continue
        if "not_run" in record:  # the call's deadline left it no time
            check(name, f"not run: {record['not_run']}", None)
            continue
        failed = record.get("rc") != 0
        status = ("timed out" if record.get("timed_out") else f"rc {record.get('rc')}") if failed else ""
        if name == "env":
            check("machine", f"{record.get('gpu')} torch {record.get('torch')} cuda "
                  f"{record.get('cuda')} cudnn {record.get('cudnn')} python {record.get('python')}"
                  f"; charrnn imports: {record.get('charrnn_imports')}",
                  record.get("charrnn_imports") is True and record.get("rc") == 0)
        elif name in ("tests", "suite"):
            ok = record.get("rc") == 0 and not record.get("failed") and "passed" in record
            gpu = records.get("env", {}).get("cuda_available")
            if gpu and record.get("cuda_tests_run") != record.get("cuda_tests"):
                ok = False  # a GPU was there and tests/test_cuda.py skipped some: not a pass
            check("tests", f"{record.get('passed')} passed, {len(record.get('failed') or [])} failed, "
                  f"{record.get('skipped')} skipped, test_cuda run {record.get('cuda_tests_run')}/"
                  f"{record.get('cuda_tests')} {status}", ok,
                  "rc 0, every test_cuda test run" if gpu else "rc 0; no GPU: test_cuda skips")
            for bad in record.get("failed") or []:
                lines.append(f"           {bad['test']}: {bad['message'][:200]}")
        elif name == "train_speed":
            ratio = record.get("ratio")
            check("training tokens/s vs plain loop", f"{record.get('charrnn_tokens_per_s')} vs "
                  f"{record.get('plain_tokens_per_s')} = {ratio} {status}",
                  None if ratio is None else ratio >= TRAIN_RATIO, f">= {TRAIN_RATIO}")
        elif name == "sample_speed":
            rows = record.get("rows") or []
            if not rows:
                check("sampling", status or "no rows", None)
            for row in rows:
                bar = ONE_STREAM if row["streams"] == 1 else MANY_STREAMS
                ref = (f", plain CUDA graph {row['graph_ref_tokens_per_s']}"
                       if "graph_ref_tokens_per_s" in row else "")
                check(f"sampling {row['model']} x {row['streams']}",
                      f"{row['charrnn_tokens_per_s']} tok/s (eager {row['eager_tokens_per_s']}{ref})",
                      row["charrnn_tokens_per_s"] >= bar if row["streams"] in (1, 64)
                      and "2x512" in row["model"] else None, f">= {bar}")
        elif name == "sample_cli":  # issue 21: the whole command, streamed to a pipe
            rate, bar = record.get("marginal_tokens_per_s"), record.get("bar_tokens_per_s")
            check(f"charrnn sample {record.get('model')} streamed", f"{rate} tok/s marginal, "
                  f"start-up {record.get('startup_s_median')} s {status}",
                  None if rate is None or bar is None else rate >= bar, f">= {bar}")
        elif name == "tui_speed":
            ratio = record.get("ratio_median_paired")
            check("live view vs plain", f"{ratio} ({record.get('tui_tokens_per_s')} vs "
                  f"{record.get('plain_tokens_per_s')} tok/s)", None if ratio is None else
                  ratio >= TUI_RATIO, f">= {TUI_RATIO}")
        elif name.startswith("shakespeare"):
            best = record.get("best_val_nats_per_char")
            bar = SHAKESPEARE_TYPED if name == "shakespeare_typed" else SHAKESPEARE
            check(f"{name} best val in {record.get('budget_s')} s",
                  f"{best} nats/char, {record.get('steps')} steps, {record.get('tokens_per_s')} tok/s "
                  f"{status}", None if best is None else best <= bar, f"<= {bar}")
        elif name == "weight_drop":
            check("--weight-drop cost", f"{record.get('weight_drop_tokens_per_s')} vs "
                  f"{record.get('plain_tokens_per_s')} tok/s = {record.get('ratio')}, "
                  f"{record.get('ms_per_step')} ms/step {status}",
                  None if record.get("ratio") is None else True, "measured, no bar")
        elif name == "ptb":
            check("ptb test perplexity", f"{record.get('test_ppl')} (best val {record.get('best_val_ppl')}, "
                  f"{record.get('steps')} steps) {status}", None if failed else True, "no bar")
        elif name == "ptb_typed":  # issue 20: `charrnn train ptb --device cuda --max-time 300`
            alone, mixed = record.get("test_ppl"), record.get("mix_test_ppl")
            check("ptb as typed, test ppl", f"{alone} (best val {record.get('best_val_ppl')}, "
                  f"{record.get('steps')} steps) {status}", None if alone is None else
                  alone <= PTB_ALONE, f"<= {PTB_ALONE}")
            check("ptb as typed, with KN5", f"{mixed} (λ {record.get('mix_weight')})",
                  None if mixed is None else mixed <= PTB_MIXED, f"<= {PTB_MIXED}")
        else:
            check(name, {k: v for k, v in record.items() if k not in ("name",)}, not failed)
    return "\n".join(lines)


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "env":
        print(json.dumps(env(), indent=1))
    elif command == "bench":
        print(json.dumps(bench(*args)))
    elif command == "pytest":
        print(json.dumps(pytest(*args)))
    elif command == "summary":
        print(summary(*args))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
