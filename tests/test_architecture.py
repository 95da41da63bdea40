"""The architecture's rules, checked: the library never imports streamlit; ruff is clean."""

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


# clipviz/tools speak to a running Streamlit server (the load test sends Streamlit's
# own protobuf messages), so they may import streamlit.proto, inside their functions:
# importing any clipviz module still loads no streamlit (the test below).
SPEAKS_TO_STREAMLIT = ROOT / "clipviz" / "tools"


def test_library_source_never_imports_streamlit():
    for path in sorted((ROOT / "clipviz").rglob("*.py")):
        if SPEAKS_TO_STREAMLIT in path.parents:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "streamlit" for n in names), (
                f"{path} imports streamlit"
            )


def test_importing_every_library_module_loads_no_streamlit():
    modules = [
        "clipviz." + ".".join(p.relative_to(ROOT / "clipviz").with_suffix("").parts)
        for p in (ROOT / "clipviz").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    ]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print('streamlit' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(args):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -r requirements-dev.txt)")
    out = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


# ---- layers -------------------------------------------------------------------------
# Each subpackage is a layer; a module may import its own layer and the layers
# below it, never one above (README, "Architecture"). The top-level modules
# (cli, __main__, gradlog and the package's own __init__) sit where LAYER_OF_MODULE says.
LAYERS = ("engine", "lessons", "figures", "app", "cli")
LAYER_OF_MODULE = {
    "clipviz": "engine",  # __init__: the version and the public names
    "clipviz.cli": "cli",
    "clipviz.__main__": "cli",
}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in LAYER_OF_MODULE:
        return LAYER_OF_MODULE[module]
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return parts[1]
    if len(parts) >= 2 and parts[1] == "tools":
        return "cli"
    raise AssertionError(f"{module} is in no layer: put it in a subpackage or LAYER_OF_MODULE")


def clipviz_imports(path: pathlib.Path, *, type_checking: bool = True) -> set[str]:
    """Every clipviz module ``path`` imports, anywhere in the file (lazy imports included).

    ``type_checking=False`` leaves out imports under ``if TYPE_CHECKING:``,
    which run only for a type checker and so cannot make a cycle.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    if not type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "clipviz"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "clipviz":
                continue
            for alias in node.names:  # `from clipviz.engine import trainer` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


MODULES = {
    module_name(p): p for p in (ROOT / "clipviz").rglob("*.py") if "__pycache__" not in p.parts
}
IMPORTS = {name: clipviz_imports(path) for name, path in MODULES.items()}


def upward_imports(imports: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in imports.items():
        rank = LAYERS.index(layer_of(module))
        for target in targets:
            if target == "clipviz":
                continue
            if LAYERS.index(layer_of(target)) > rank:
                bad.append(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    return sorted(bad)


def import_cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Cycles in the module import graph (type-checking-only imports excluded by callers)."""
    graph = {m: {t for t in ts if t in imports and t != m} for m, ts in imports.items()}
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_every_library_module_sits_in_a_layer():
    for module in MODULES:
        assert layer_of(module) in LAYERS


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports(IMPORTS) == []


def test_the_library_has_no_import_cycle():
    imports = {name: clipviz_imports(path, type_checking=False) for name, path in MODULES.items()}
    assert import_cycles(imports) == []


def test_the_checks_catch_a_planted_upward_import_and_cycle():
    """The layer map really bites: an engine module importing the CLI is refused."""
    planted = {
        **IMPORTS,
        "clipviz.engine.trainer": IMPORTS["clipviz.engine.trainer"] | {"clipviz.cli"},
    }
    assert upward_imports(planted) == ["clipviz.engine.trainer (engine) imports clipviz.cli (cli)"]
    cyclic = {"clipviz.engine.a": {"clipviz.engine.b"}, "clipviz.engine.b": {"clipviz.engine.a"}}
    assert import_cycles(cyclic) == [["clipviz.engine.a", "clipviz.engine.b", "clipviz.engine.a"]]


def test_lessons_never_import_figures_and_figures_no_app_glue():
    """The two rules the layer order states most often broken, named for the reader."""
    for module, targets in IMPORTS.items():
        if layer_of(module) == "lessons":
            assert not any(t.startswith("clipviz.figures") for t in targets), module
        if layer_of(module) == "figures":
            assert not any(t.startswith(("clipviz.app", "clipviz.cli")) for t in targets), module
