"""The shape of the package: one source for every default, no import circles, a library that never
reaches up into the command line or the terminal views."""

from __future__ import annotations

import ast
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import typer

from charrnn.cli import app
from charrnn.cli.options import plain
from charrnn.data import PreprocessOptions
from charrnn.fill.config import FillOptions, FillTrainConfig, SearchOptions
from charrnn.lm.config import SampleOptions, TrainConfig
from charrnn.tag.config import TagTrainConfig

PACKAGE = Path(__file__).resolve().parents[1] / "charrnn"
# Where an option's name differs from its field's, and options named like a field they are not
# (fill eval's --context counts characters of the held-out text, the search's tokens).
RENAMED = {"temp": "temperature", "unk": "unknown"}
NOT_FIELDS = {("fill", "eval"): {"context"}}


def _command(*path: str):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def _defaults(cls: type) -> dict:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


@pytest.mark.parametrize(("path", "configs"), [
    (("train",), (TrainConfig, PreprocessOptions)),
    (("preprocess",), (PreprocessOptions,)),
    (("ngram", "train"), (PreprocessOptions,)),
    (("tag", "train"), (TagTrainConfig,)),
    (("sample",), (SampleOptions,)),
    (("fill", "text"), (FillOptions, SearchOptions)),
    (("fill", "eval"), (SearchOptions,)),
])
def test_option_defaults_are_the_config_defaults(path, configs) -> None:
    compared = 0
    for param in _command(*path).params:
        name = RENAMED.get(param.name, param.name)
        if name in NOT_FIELDS.get(path, ()):
            continue
        for cls in configs:
            fields_ = _defaults(cls)
            if name in fields_:
                assert plain(param.default) == fields_[name], (path, param.name, cls.__name__)
                compared += 1
    assert compared >= 3, path


def test_train_and_fill_share_their_defaults() -> None:
    """One `train` command line serves both tasks: what they share defaults the same."""
    lm, fill = _defaults(TrainConfig), _defaults(FillTrainConfig)
    assert all(lm[name] == value for name, value in fill.items()), \
        {n: (lm[n], v) for n, v in fill.items() if lm[n] != v}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, at module level?) for every import of a file; `from pkg import mod`
    counts as an import of pkg.mod alone."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    typing_only = {id(n) for node in tree.body if isinstance(node, ast.If)
                   and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: never runs
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            subs = [s for s in subs if _is_module(s)]
            out += [(n, id(node) in top) for n in subs or [node.module]]
        elif isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
    return out


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_files() -> list[Path]:
    """Everything but the command line, the views and `python -m charrnn` (the entry point)."""
    return [p for p in PACKAGE.rglob("*.py")
            if p.relative_to(PACKAGE).parts[0] not in ("cli", "tui", "__main__.py")]


def test_the_library_never_imports_typer_or_the_views() -> None:
    offenders = [(_module(p), name) for p in _library_files() for name, _ in _imports(p)
                 if name.split(".")[0] == "typer" or name.startswith(("charrnn.tui", "charrnn.cli"))]
    assert offenders == []


# The command line's layers, which name flags (charrnn.errors.flag); all else is the library's.
FLAG_LAYERS = ("cli", "plan")
# Text of the library that names a flag on purpose, with why.
FLAGS_NAMED = {
    ("distributed.py", "--nproc_per_node"): "torchrun's own option: a library caller's processes "
                                           "are started by torchrun too, with that flag",
}
FLAG = re.compile(r"(?<![\w-])--(?:[a-z][\w-]*|\0)")  # \0: a value of an f-string (`--{name}`)
# A command line quoted for the user to run (`charrnn train --resume RUN`) is the same text to
# whoever reads it: its flags stay flags.
# Only inside backticks or parentheses, or as the whole string (a command kept to be quoted
# later): a command named in running text does not exempt what follows it.
_COMMANDS = "|".join(typer.main.get_command(app).commands)
COMMAND_LINE = re.compile(rf"`charrnn (?:{_COMMANDS})\b[^`]*`|\(charrnn (?:{_COMMANDS})\b[^()]*\)"
                          rf"|^charrnn (?:{_COMMANDS})\b[^`]*$")


def _flags_spelled(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, flag) for each flag in a string of the code outside a quoted command line;
    docstrings aside, which tell the code's readers what a command line does."""
    skipped = {id(node.body[0].value) for node in ast.walk(tree)
               if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
               and node.body and isinstance(node.body[0], ast.Expr)}
    skipped |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
                for part in node.values}  # read with their f-string
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values)
        else:
            continue
        text = COMMAND_LINE.sub("", text)
        found += [(node.lineno, flag.replace("\0", "{…}")) for flag in FLAG.findall(text)]
    return found


def test_the_library_never_names_a_flag() -> None:
    """A library caller passes fields and parameters; only the command line knows that its user
    typed flags. So the library names an option with charrnn.errors.option (a flag while the CLI
    runs a command), never with a `--` of its own."""
    sample = ast.parse('''def f(name):
    """--docstring is left alone"""
    a = f"drop --max-steps or --optim sgd, {name or 'use --hidden'}"
    return f"--{name}", "`charrnn train --resume x` continues it; or --out", "--", "a-b--c"''')
    assert sorted(flag for _, flag in _flags_spelled(sample)) == [  # it sees what it looks for
        "--hidden", "--max-steps", "--optim", "--out", "--{…}"]
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE)
        if where.parts[0] in FLAG_LAYERS:
            continue
        spelled += [(str(where), line, flag)
                    for line, flag in _flags_spelled(ast.parse(path.read_text(encoding="utf-8")))
                    if (where.as_posix(), flag) not in FLAGS_NAMED]
    assert spelled == []


def test_no_import_circles() -> None:
    """Not even through the imports a function makes when it runs (lazy ones)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: {n for n, _ in _imports(p) if n in modules and n != m} for m, p in modules.items()}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*trail, nxt]
                if nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
        return None

    for module in sorted(graph):
        assert cycle_from(module) is None, cycle_from(module)


def test_import_floors_stay_few() -> None:
    """The longest chain of module-level imports inside charrnn (a module's floor)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: {n for n, top in _imports(p) if top and n in modules and n != m}
             for m, p in modules.items()}
    floor: dict[str, int] = {}

    def depth(module: str) -> int:
        if module not in floor:
            floor[module] = 0
            floor[module] = 1 + max((depth(n) for n in graph[module]), default=0)
        return floor[module]

    assert max(map(depth, graph)) <= 10


def test_every_function_fits_on_a_screen() -> None:
    """No function or method of the package over 60 lines (signature and docstring included)."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append((_module(path), node.name, lines))
    assert long == []


def _unit(module: str) -> str:
    """A module's part of the package: charrnn.lm.train → charrnn.lm; charrnn.data → itself."""
    return ".".join(module.split(".")[:2])


def test_no_import_circles_between_parts_of_the_package() -> None:
    """Packages too, not only modules: a part that reaches another part that reaches back is one
    tangle, whatever the modules inside. Lazy imports count."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph.setdefault(_unit(module), set()).update(
            _unit(n) for n, _ in _imports(path) if n in modules and _unit(n) != _unit(module))

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    circles = sorted((a, b) for a in graph for b in graph[a] if a < b and reaches(b, a))
    assert circles == []


def test_the_readme_layout_names_every_part_of_the_tree() -> None:
    """Each package and each module of the README's Layout section is there, and the section
    names every package, every module of charrnn/ itself, and every module of a package."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    words = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", layout))
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] in ("__init__", "__main__"):
            continue
        if len(parts) == 2 and f"charrnn/{parts[0]}/" not in layout:
            missing.append(f"charrnn/{parts[0]}/")
        if parts[-1] not in words:
            missing.append("/".join(parts))
    assert sorted(set(missing)) == []
