"""`import offlinerlkit` (and its modules) loads no optional dependency; no `args` in the library."""
from __future__ import annotations

import ast
import re
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


def test_no_library_module_is_over_500_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"split these modules (docs/ARCHITECTURE.md): {long}"


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


# --- the layer map of docs/ARCHITECTURE.md, imports going one way ---------------------------

#: Left to right: a module may import from its own layer and the layers before it. Groups are
#: the top-level modules and packages of `offlinerlkit` (docs/ARCHITECTURE.md, "Layers").
LAYERS: tuple[tuple[str, ...], ...] = (
    ("types", "utils"),
    ("config", "presets", "reference"),
    ("datasets", "envs"),
    ("nets",),
    ("modules",),
    ("dynamics",),
    ("anchor",),
    ("policy",),
    ("buffer", "policy_trainer"),
    ("replica",),
    ("algorithms",),
    ("pipeline",),
    ("run",),
)
RANK = {group: rank for rank, groups in enumerate(LAYERS) for group in groups}
SCRIPTS = frozenset(p.stem for p in (PACKAGE.parent / "run_example").glob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE, *, at_import: bool = False) -> dict[str, set[str]]:
    """Module -> the modules it imports: anywhere in its file (functions and `TYPE_CHECKING`
    blocks included: an import deferred into a function still runs the same way), or with
    `at_import` only those its top level runs when it is imported."""
    graph: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        name = _module_name(path)
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        nodes = (tree.body if at_import else ast.walk(tree))
        deps: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here.split(".")[: len(here.split(".")) - node.level + 1])
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                deps.add(module)
        graph[name] = deps
    return graph


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that go right to left in `LAYERS`, or into `run_example`."""
    bad = []
    for module, deps in sorted(graph.items()):
        if module == "offlinerlkit":
            continue
        for dep in sorted(deps):
            if dep.split(".")[0] in SCRIPTS:
                bad.append(f"{module} imports the script module {dep}")
            elif dep.startswith("offlinerlkit.") and RANK[_group(dep)] > RANK[_group(module)]:
                bad.append(f"{module} ({_group(module)}) imports {dep} ({_group(dep)}), "
                           "a later layer")
    return bad


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles among the package's modules (each found once, from its first module).

    Checked on the imports that run at import time: within a layer a deferred import may
    dispatch back (`utils.tasks.parse_task` -> `utils.minari_task`, which builds a `TaskInfo`).
    """
    internal = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(internal[module]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(internal):
        if module not in state:
            visit(module, [module])
    return cycles


def test_every_group_is_in_the_layer_map() -> None:
    groups = {_group(m) for m in import_graph() if m != "offlinerlkit"}
    assert groups - set(RANK) == set(), "add the new package to LAYERS and docs/ARCHITECTURE.md"


def test_imports_go_one_way() -> None:
    assert layer_violations(import_graph()) == []


def test_only_scripts_use_the_command_line_module() -> None:
    users = sorted(m for m, deps in import_graph().items()
                   if "offlinerlkit.utils.cli" in deps and m != "offlinerlkit.utils.cli")
    assert users == [], "library code takes typed arguments; only scripts parse a command line"


def test_no_import_cycles() -> None:
    assert import_cycles(import_graph(at_import=True)) == []


def test_the_layer_checks_catch_what_they_forbid() -> None:
    graph = {"offlinerlkit.utils.a": {"offlinerlkit.run.setup", "numpy"},
             "offlinerlkit.run.setup": {"offlinerlkit.utils.a"},
             "offlinerlkit.policy.x": {"run_cql"}}
    assert layer_violations(graph) == [
        "offlinerlkit.policy.x imports the script module run_cql",
        "offlinerlkit.utils.a (utils) imports offlinerlkit.run.setup (run), a later layer"]
    assert import_cycles(graph) == [["offlinerlkit.run.setup", "offlinerlkit.utils.a",
                                     "offlinerlkit.run.setup"]]


def test_the_layer_map_is_the_documented_one() -> None:
    text = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    block = text.split("## Layers", 1)[1].split("```")[1]
    for groups in LAYERS:
        for group in groups:
            assert re.search(rf"\b{group}\b", block), f"{group} is missing from the layer map"
