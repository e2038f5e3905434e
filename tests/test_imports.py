"""`import offlinerlkit` (and its modules) loads no optional dependency; no `args` in the library."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "offlinerlkit"
OPTIONAL = ("d4rl", "gym", "minari", "wandb", "ray", "faiss", "matplotlib", "pandas", "mujoco_py")


def test_importing_the_library_loads_no_optional_package() -> None:
    modules = sorted(
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
    )
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            f"bad = [m for m in {OPTIONAL!r} if m in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_bare_import_is_light() -> None:
    code = "import sys, offlinerlkit; print(sorted(m for m in ('torch', 'gymnasium', 'h5py') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


#: Parameter names that carry a run's options into a function.
CONFIG_NAMES = {"args", "cfg", "config", "opts", "options", "namespace", "hparams", "params"}
#: Annotations that say nothing about what such a parameter holds (a `dict` is a recorded JSON
#: configuration, data rather than options, and stays allowed).
UNTYPED = {None, "Any", "object", "Namespace", "argparse.Namespace", "Optional[Any]"}


def untyped_config_parameters(source: str) -> list[str]:
    """Functions with an `args` parameter, or a config-carrying parameter (`cfg`, `config`,
    `options`, ...) whose annotation is missing or says nothing (`Any`, `object`, a Namespace):
    the original's `args` bag under another name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
                note = None if arg.annotation is None else ast.unparse(arg.annotation)
                if arg.arg == "args" or (arg.arg in CONFIG_NAMES and note in UNTYPED):
                    found.append(f"{node.name}({arg.arg}: {note})")
    return found


def test_the_guard_catches_args_under_any_name() -> None:
    assert untyped_config_parameters("def f(args): pass") == ["f(args: None)"]
    assert untyped_config_parameters("def f(cfg: Any, *, x: int): pass") == ["f(cfg: Any)"]
    assert untyped_config_parameters("def f(config): pass") == ["f(config: None)"]
    assert untyped_config_parameters("def f(options: argparse.Namespace): pass") != []
    assert untyped_config_parameters("def f(cfg: RunConfig, options: CocoaOptions): pass") == []


def test_no_args_parameter_in_the_library() -> None:
    offenders = [f"{path.relative_to(PACKAGE)}:{name}" for path in sorted(PACKAGE.rglob("*.py"))
                 for name in untyped_config_parameters(path.read_text())]
    assert not offenders, offenders


def test_no_test_module_imports_another() -> None:
    """Shared fixtures live in `policy_helpers.py` / `script_helpers.py`, not in test modules."""
    offenders = []
    for path in sorted(PACKAGE.parent.joinpath("tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[-1].startswith("test_")]
    assert not offenders, offenders
