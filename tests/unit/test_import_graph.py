"""The project's import graph, read with ``ast``: no cycles, and the layers point one way.

Every import counts: at module level, inside functions (a deferred import is still a dependency,
only a later one) and under ``if TYPE_CHECKING:`` (a type-only import is still a module that
must know another; a circle of them is the same knot for a reader, and one refactor away from a
circle Python itself trips on). A relative import is resolved against its package.

``from pkg import x`` is an edge to ``pkg.x`` where that is a module, else to ``pkg`` (its
``__init__``). The parent package Python loads before any submodule is not an edge: a package's
``__init__`` that hands on its submodules' names would otherwise be in a circle with each of them.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "contracts", "domain", "consumers", "producers", "adapters", "service", "runtime",
    "tenantctl", "migrations", "api",
)  # fmt: skip

Graph = dict[str, set[str]]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(
    tree: ast.Module, module: str, is_package: bool, modules: set[str]
) -> Iterator[str]:
    """Every module an import statement anywhere in ``tree`` names (absolute form)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from pkg import sub`` names a submodule where one exists, else an attribute.
                sub = f"{base}.{alias.name}"
                yield sub if sub in modules else base


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> Graph:
    """Module -> the project modules it imports (external libraries left out)."""
    files = {
        _module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    graph: Graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = _imported(tree, module, path.name == "__init__.py", set(files))
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _edges_within(graph: Graph, component: list[str]) -> list[str]:
    members = set(component)
    return [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]


def _crossings(graph: Graph, source: str, forbidden: tuple[str, ...]) -> list[str]:
    """Imports from modules of package ``source`` into any of the ``forbidden`` packages."""
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        if module.split(".")[0] == source
        for target in sorted(targets)
        if target.split(".")[0] in forbidden
    ]


def test_the_project_has_no_import_cycle() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(
        f"  {' / '.join(c)}: " + ", ".join(_edges_within(graph, c)) for c in found
    )


def test_adapters_import_nothing_from_runtime() -> None:
    # Adapters take plain values; the composition root (runtime/) builds them from settings.
    # They may import the ports they implement (Protocols and their value types), which live
    # beside their users in service/ and consumers/.
    outer = ("runtime", "producers", "api", "tenantctl")
    assert _crossings(import_graph(), "adapters", outer) == []


def test_domain_and_contracts_import_no_outer_layer() -> None:
    outer = ("adapters", "runtime", "service", "consumers", "producers", "api", "tenantctl")
    graph = import_graph()
    assert _crossings(graph, "domain", (*outer, "contracts")) == []
    assert _crossings(graph, "contracts", outer) == []


def test_the_checker_finds_a_cycle_and_a_crossing(tmp_path: Path) -> None:
    """The checks above can fail: a planted cycle (one edge type-only, one deferred) and a
    planted adapters -> runtime import are found."""
    (tmp_path / "runtime").mkdir()
    (tmp_path / "adapters").mkdir()
    (tmp_path / "runtime" / "__init__.py").write_text("")
    (tmp_path / "adapters" / "__init__.py").write_text("")
    (tmp_path / "runtime" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from runtime.b import B\n"
    )
    (tmp_path / "runtime" / "b.py").write_text("def f():\n    from . import a\n")
    (tmp_path / "adapters" / "c.py").write_text("from runtime import a\n")
    graph = import_graph(tmp_path, ("runtime", "adapters"))
    assert cycles(graph) == [["runtime.a", "runtime.b"]]
    assert _crossings(graph, "adapters", ("runtime",)) == ["adapters.c -> runtime.a"]
