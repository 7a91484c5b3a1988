"""The layers' import rules, read from the source with ``ast`` (nothing is imported):

- ``schema/`` and ``server/`` import the engine only through its public surface: ``from engine import
  name`` with ``name`` in ``engine.__all__``, never a module inside it;
- ``engine/`` imports neither ``schema`` nor ``server``, and its own modules never import the
  package's public surface (``engine/__init__.py`` imports them: that would be a cycle);
- no cycle among the modules of ``engine/``, ``schema/`` and ``server/``. Imports inside functions
  count (a deferred import hides a cycle, it does not remove it); ``if TYPE_CHECKING:`` imports do
  not, since they never run. A module's implicit import of its parent packages is not an edge.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("engine", "schema", "server")


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str
    """The module imported from (``from module import names``) or imported (``import module``)."""
    names: tuple[str, ...]
    """What ``from module import`` names; empty for ``import module``."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for layer in LAYERS for path in sorted((ROOT / layer).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node``, except under ``if TYPE_CHECKING:`` (its ``else`` runs)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _nodes(other)
            continue
        yield child
        yield from _nodes(child)


def imports(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                name = module_name(path)
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            found.append(Import(path, node.lineno, module, tuple(alias.name for alias in node.names)))
    return found


def public_surface() -> set[str]:
    tree = ast.parse((ROOT / "engine" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list) and all(isinstance(name, str) for name in value)
            return set(value)
    raise AssertionError("engine/__init__.py defines no __all__")


def layer_of(module: str) -> str:
    return module.split(".")[0]


def where(found: Import) -> str:
    return f"{found.path.relative_to(ROOT)}:{found.line}"


def test_the_public_surface_names_only_what_the_engine_package_defines() -> None:
    surface = public_surface()
    tree = ast.parse((ROOT / "engine" / "__init__.py").read_text())
    bound = {
        alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    assert surface - bound == set(), "names in engine.__all__ that engine/__init__.py does not import"


def test_schema_and_server_import_only_the_engines_public_surface() -> None:
    surface = public_surface()
    wrong = []
    for path in modules().values():
        if layer_of(module_name(path)) == "engine":
            continue
        for found in imports(path):
            if layer_of(found.module) != "engine":
                continue
            if found.module != "engine" or not found.names:
                wrong.append(f"{where(found)}: imports {found.module} (only `from engine import …` is public)")
            else:
                wrong += [f"{where(found)}: engine.{name} is not in engine.__all__" for name in found.names
                          if name not in surface]  # fmt: skip
    assert wrong == []


def test_the_engine_imports_neither_schema_nor_server_nor_its_own_surface() -> None:
    known = modules()
    wrong = []
    for module, path in known.items():
        if layer_of(module) != "engine" or module == "engine":
            continue
        for found in imports(path):
            if layer_of(found.module) in ("schema", "server"):
                wrong.append(f"{where(found)}: the engine imports {found.module}")
            elif found.module == "engine":
                wrong += [f"{where(found)}: imports engine.{name} from the public surface, not its module"
                          for name in found.names if f"engine.{name}" not in known]  # fmt: skip
    assert wrong == []


def dependency_graph() -> dict[str, set[str]]:
    """Each module's edges to the project's modules it imports (``from a import b``: to ``a.b`` when
    that is a module, else to ``a``)."""
    known = modules()
    graph: dict[str, set[str]] = {module: set() for module in known}
    for module, path in known.items():
        for found in imports(path):
            targets = [f"{found.module}.{name}" for name in found.names if f"{found.module}.{name}" in known]
            if len(targets) < len(found.names) or not found.names:
                targets.append(found.module)
            graph[module] |= {target for target in targets if target in known and target != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the modules along it (the first repeated at the end), or None."""
    visiting: list[str] = []
    state: dict[str, str] = {}  # "open" while on the path, "done" once every edge from it was followed

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        visiting.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return [*visiting[visiting.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        visiting.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)) is not None:
            return cycle
    return None


def test_the_cycle_search_finds_a_cycle_and_passes_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_type_checking_imports_are_not_edges_and_function_imports_are(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from schema.context import Context\n"
        "def later() -> None:\n    from schema.queries import Query\n"
    )
    assert [found.module for found in imports(source)] == ["typing", "schema.queries"]


def test_no_module_imports_itself_through_a_cycle() -> None:
    cycle = find_cycle(dependency_graph())
    assert cycle is None, " -> ".join(cycle or ())
