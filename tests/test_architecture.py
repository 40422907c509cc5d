"""The tree is the architecture: imports only point down the layers, no module imports itself round a cycle,
the library never imports Streamlit, and every page script goes through app.py's entrypoint guard.

Function-level imports count too: hiding a cycle inside a function is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A package may import itself and anything listed before it, never after.
LAYERS = ["core", "storage", "files", "engine", "models", "runs", "quality", "people", "decide", "watch", "cli"]


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every module this file imports, anywhere in it, as absolute dotted names."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def _library_files() -> list[Path]:
    return sorted((ROOT / "workbench").rglob("*.py"))


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "workbench" and parts[1] in LAYERS else None


KNOWN = {_module_name(p) for p in _library_files()} | {_module_name(p) for p in (ROOT / "ui").glob("*.py")}


def _graph() -> dict[str, set[str]]:
    files = _library_files() + sorted((ROOT / "ui").glob("*.py"))
    return {_module_name(p): {m for m in _imports(p) if m in KNOWN and m != _module_name(p)} for p in files}


def test_every_library_module_lives_in_a_layer() -> None:
    top_level_allowed = {"workbench", "workbench.__main__"} | {f"workbench.{layer}" for layer in LAYERS}
    loose = sorted(m for m in KNOWN if m.startswith("workbench") and _layer(m) is None and m not in top_level_allowed)
    assert loose == [], f"modules outside the layer packages: {loose}"


def test_imports_point_down() -> None:
    upward = []
    for module, deps in _graph().items():
        mine = _layer(module)
        if mine is None:
            continue
        for dep in deps:
            theirs = _layer(dep)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                upward.append(f"{module} -> {dep}")
    assert upward == [], "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep in ("workbench", "ui") or dep in {f"workbench.{layer}" for layer in LAYERS}:
                continue  # a package's docstring-only __init__ cannot close a cycle
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_library_never_imports_streamlit() -> None:
    offenders = [_module_name(p) for p in _library_files() if any(m.split(".")[0] == "streamlit" for m in _imports(p))]
    assert offenders == []


def test_ui_never_imports_pages() -> None:
    offenders = [p.name for p in (ROOT / "ui").glob("*.py") if any(m.split(".")[0] == "pages" for m in _imports(p))]
    assert offenders == []


PAGE_SCRIPTS = sorted(p for p in (ROOT / "pages").glob("*.py") if p.name != "__init__.py")


def test_pages_holds_only_the_registered_page_scripts() -> None:
    registered = set(ast.literal_eval(n.args[0]) for n in ast.walk(ast.parse((ROOT / "app.py").read_text()))
                     if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "Page")
    assert {f"pages/{p.name}" for p in PAGE_SCRIPTS} == registered


@pytest.mark.parametrize("page", PAGE_SCRIPTS, ids=lambda p: p.name)
def test_every_page_goes_through_the_entrypoint_guard(page: Path) -> None:
    """A deep link on a fresh server runs a page alone (Streamlit's legacy pages/ mode); the guard sends it
    through app.py. The call must come before the page draws anything: the first statement after imports."""
    body = [n for n in ast.parse(page.read_text()).body
            if not isinstance(n, (ast.Import, ast.ImportFrom)) and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    first = body[0] if body else None
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Call) \
        and getattr(first.value.func, "id", None) == "through_entrypoint", f"{page.name} must call through_entrypoint() first"
