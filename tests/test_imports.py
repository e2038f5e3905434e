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


def test_no_args_parameter_in_the_library() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs]
                if "args" in names:
                    offenders.append(f"{path.name}:{node.name}")
    assert not offenders, offenders
