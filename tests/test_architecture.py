"""Layout rules of the package, checked on its source (parsed, so docstrings and comments do not
count): checkpoint.py is the only module that calls torch.load."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_gans"


def torch_load_calls(source: str) -> list[int]:
    """Line numbers of torch.load(...) calls in `source`: `torch.load(`, a `load` imported from
    torch (`from torch import load [as x]`), or `torch.serialization.load(`."""
    tree = ast.parse(source)
    aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               and n.module in ("torch", "torch.serialization") for a in n.names if a.name == "load"}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "load" and ast.unparse(f.value) in (
                "torch", "torch.serialization"):
            lines.append(node.lineno)
        elif isinstance(f, ast.Name) and f.id in aliases:
            lines.append(node.lineno)
    return sorted(lines)


def test_torch_load_calls_are_found_in_code_not_in_text():
    src = ('"""torch.load(x) in a docstring"""\n'
           "# torch.load(x) in a comment\n"
           "import torch\n"
           "from torch import load as tl\n"
           "a = torch.load('f', weights_only=True)\n"
           "b = tl('f')\n"
           "c = torch.serialization.load('f')\n"
           "d = torch.jit.load('f')\n"
           "s = 'torch.load(x)'\n")
    assert torch_load_calls(src) == [5, 6, 7]


def test_only_checkpoint_py_calls_torch_load():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20, f"the package source was not found under {PACKAGE}"
    found = {str(p.relative_to(PACKAGE)): torch_load_calls(p.read_text())
             for p in files if p != PACKAGE / "checkpoint.py"}
    found = {k: v for k, v in found.items() if v}
    assert not found, (f"torch.load outside lightning_gans/checkpoint.py: {found}; read files through "
                       "checkpoint.safe_load / load_weights / load_tensors / load_bytes")
    assert torch_load_calls((PACKAGE / "checkpoint.py").read_text()), "checkpoint.py lost its torch.load"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module `source` imports, at any depth (function-level imports
    too): relative imports resolved against `module`; `from X import name` also yields X.name,
    which is a module when `name` is a submodule."""
    out = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*up, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
    return out


def unit(name: str, units: set[str]) -> str | None:
    """The subpackage (or top-level module) of the package that `name` belongs to."""
    parts = name.split(".")
    if parts[0] != PACKAGE.name or len(parts) < 2:
        return None
    return parts[1] if parts[1] in units else None


def unit_graph(files: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """`files`: module name -> (source, is_package). Arrows between the package's units
    (lightning_gans.X: a subpackage or a top-level module), self-arrows left out."""
    units = {m.split(".")[1] for m in files if m.count(".") >= 1}
    graph: dict[str, set[str]] = {u: set() for u in units}
    for mod, (src, is_pkg) in files.items():
        me = unit(mod, units)
        if me is None:
            continue
        for name in imported_modules(src, mod, is_pkg):
            other = unit(name, units)
            if other is not None and other != me:
                graph[me].add(other)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def package_files() -> dict[str, tuple[str, bool]]:
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in sorted(PACKAGE.rglob("*.py"))}


def test_circle_finder_resolves_relative_and_function_level_imports():
    files = {
        "lightning_gans.__init__": ("", True),
        "lightning_gans.a": ("", True),
        "lightning_gans.a.x": ("from ..b import y\n", False),           # a -> b
        "lightning_gans.b": ("", True),
        "lightning_gans.b.y": ("from . import z\n", False),                 # inside b: no arrow
        "lightning_gans.b.z": ("def f():\n    from .. import c\n", False),  # b -> c (function level)
        "lightning_gans.c": ("from .a import x\n", False),                 # c -> a: a circle a-b-c
        "lightning_gans.d": ("import lightning_gans.a.x\nfrom . import d\n", False),  # d -> a only
    }
    files = {k.removesuffix(".__init__"): v for k, v in files.items()}
    graph = unit_graph(files)
    assert graph["a"] == {"b"} and graph["b"] == {"c"} and graph["c"] == {"a"} and graph["d"] == {"a"}
    assert circles(graph) == [["a", "b", "c"]]
    graph["c"].clear()
    assert circles(graph) == []


def test_no_import_circle_between_subpackages():
    graph = unit_graph(package_files())
    assert {"metrics", "synthesis", "pretrained", "models", "interop", "checkpoint"} <= set(graph)
    assert "synthesis" not in graph["pretrained"] and "metrics" not in graph["pretrained"]
    # metrics and synthesis share models/, pretrained/ and model_file.py, never each other
    assert "synthesis" not in graph["metrics"] and "metrics" not in graph["synthesis"]
    # model_file sits above interop/ and models/, below everything that reads a checkpoint
    assert not {"synthesis", "metrics", "modules", "commands", "cli"} & (graph["model_file"] | graph["model_nets"])
    found = circles(graph)
    assert not found, (f"import circles between lightning_gans subpackages: {found}; arrows: "
                       f"{ {u: sorted(graph[u] & set(c)) for c in found for u in c} }")


def module_graph(files: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Arrows between the package's modules: `from X import name` points at X.name where that is
    a module, else at X (a package's __init__); self-arrows left out."""
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, (src, is_pkg) in files.items():
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                up = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                pkg = ".".join([*up, *([node.module] if node.module else [])]) if node.level else node.module or ""
                targets = [f"{pkg}.{a.name}" if f"{pkg}.{a.name}" in files else pkg for a in node.names]
            else:
                continue
            graph[mod].update(t for t in targets if t in files and t != mod)
    return graph


def test_module_circle_finder():
    files = {"lightning_gans": ("", True), "lightning_gans.s": ("from .a import x\n", True),
             "lightning_gans.s.a": ("from . import b\nfrom .. import s\n", False),
             "lightning_gans.s.b": ("def f():\n    from .a import g\n", False)}
    graph = module_graph(files)
    assert graph["lightning_gans.s.a"] == {"lightning_gans.s.b", "lightning_gans.s"}
    assert circles(graph) == [["lightning_gans.s", "lightning_gans.s.a", "lightning_gans.s.b"]]


def test_no_import_circle_between_modules():
    """Not even inside a subpackage, function-level imports included (interpolate.py used to
    dispatch to style_interp.py, which took its helpers from interpolate.py)."""
    found = circles(module_graph(package_files()))
    assert not found, f"import circles between lightning_gans modules: {found}"


def test_no_module_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines (split them): {long}"
