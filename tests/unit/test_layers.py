"""The architecture as the imports see it: pipeline ← monitoring ← dashboards ← localaws (the local AWS) ←
loadtest ← sizing ← drills ← imgops (the CLI) ← benchmarks (the docs' measured figures: it runs the CLI). sizing
and drills both stand on loadtest and import nothing of each other; their order is only a convention.

Every import counts, including those inside functions and under TYPE_CHECKING: a lazy import is still a
dependency, only a later one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("pipeline", "monitoring", "dashboards", "localaws", "loadtest", "sizing", "drills", "imgops", "benchmarks")


def modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Project modules `name` imports (for `from a import b`, a.b when that is a module, else a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] in LAYERS)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            if base.split(".")[0] not in LAYERS:
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in known else base


GRAPH = {
    name: sorted(set(imports(name, path, set(modules())))) for name, path in modules().items()
}  # fmt: skip


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_go_down(module: str) -> None:
    upward = [target for target in GRAPH[module] if layer(target) > layer(module)]
    assert upward == [], f"{module} imports from a higher layer: {upward}"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over module → module imports (a package's __init__ aside)."""
    graph = {m: [t for t in targets if t in GRAPH and t != m] for m, targets in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_graph_is_read() -> None:
    """Guards the two tests above against passing on an empty graph."""
    assert "pipeline.keys" in GRAPH["pipeline.worker"]
    assert "monitoring.target" in GRAPH["dashboards.template"]
    assert "dashboards.widgets" in GRAPH["dashboards.drawing"]
    assert "localaws.provision" in GRAPH["localaws.stack"]
    assert "loadtest.corpus" in GRAPH["sizing.memory"]
    assert "localaws.stack" in GRAPH["drills.framework"]
    assert len(GRAPH) > 60
