"""No module of the harness imports a module that imports it back, directly or through others.

Every ``import`` statement counts, the lazy ones inside functions included: a cycle closed only by a lazy
import still means two modules that cannot be understood (or moved) one without the other. The graph is
read from the source with ``ast``, so nothing is imported here.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "reports", "strategies", "backbones")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the four packages."""
    out = {}
    for package in PACKAGES:
        for f in sorted((REPO / package).rglob("*.py")):
            parts = list(f.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def imported_modules(name: str, source: str, known: set[str], *, is_package: bool = False) -> set[str]:
    """The modules of ``known`` that ``source`` (module ``name``) imports, anywhere in it.

    ``from pkg import mod`` counts as importing ``pkg.mod`` when that is a module, else ``pkg``.

    >>> sorted(imported_modules("a.b", "from a import c\\nimport a.d.e\\ndef f():\\n    from .c import x",
    ...                         {"a", "a.b", "a.c", "a.d"}))
    ['a', 'a.c', 'a.d']
    """
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    out = set()
    for target in names:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted.

    >>> cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    [['a', 'b', 'c']]
    >>> cycles({"a": {"b"}, "b": set()})
    []
    """
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imported_modules(name, f.read_text(encoding="utf-8"), known, is_package=f.name == "__init__.py")
            for name, f in files.items()}


def test_the_graph_covers_every_package_and_its_lazy_imports():
    graph = import_graph()
    assert {name.split(".")[0] for name in graph} == set(PACKAGES)
    assert len(graph) > 60
    # bench.run imports the trial's module only inside functions: lazy imports are edges too.
    assert "bench.trial" in graph["bench.run"]
    assert "reports.runfolder" in graph["bench.runfolder"]


def test_no_module_imports_one_that_imports_it_back():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_a_cycle_through_a_lazy_import_is_found():
    graph = {"p.a": imported_modules("p.a", "import p.b", {"p.a", "p.b"}),
             "p.b": imported_modules("p.b", "def f():\n    from p import a\n", {"p.a", "p.b"})}
    assert cycles(graph) == [["p.a", "p.b"]]


def test_data_reading_does_not_depend_on_the_grid_schema():
    """``bench.data`` sits below the grid (dataset files -> bench/data -> trials; grids -> bench/config): no
    module of it imports ``bench.config``."""
    graph = import_graph()
    upward = {name: "bench.config" for name, deps in graph.items()
              if name.startswith("bench.data") and "bench.config" in deps}
    assert not upward, f"bench.data modules importing bench.config: {sorted(upward)}"


#: Library modules allowed past ~400 lines, and why (a new entry needs a reason as good).
LONG_MODULES = {
    "bench/data/synthetic.py": "one concept that reads best whole: the phantom generator (anatomy, textures, one "
                               "lesion model per finding, rendering)",
    "bench/data/splits.py": "the grouped stratification, its quality measures and the manifest; the manifest "
                            "(SplitManifest, make_split) is to move to a module of its own",
    "reports/localisation.py": "scoring one map against boxes, and aggregating the scores over trials; the "
                               "aggregation (summarise, paired_against) is to move to a module of its own",
    "reports/stats.py": "at the limit (~420 lines): the statistics the report's tests share",
}


def test_no_library_module_is_long_without_a_reason():
    long = {str(f.relative_to(REPO)): n for f in module_files().values()
            if (n := len(f.read_text(encoding="utf-8").splitlines())) > 400}
    unexplained = {name: n for name, n in long.items() if name not in LONG_MODULES}
    assert not unexplained, f"modules over 400 lines with no reason in LONG_MODULES: {unexplained}"
    stale = sorted(set(LONG_MODULES) - set(long))
    assert not stale, f"LONG_MODULES lists modules that are no longer long: {stale}"
