"""The helpers every kind of test or benchmark needs are written once: each is defined in its support
module only (read with ``ast``: nothing is imported), so a fix to one reaches every caller."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.common import HUGE, scaling_arguments

ROOT = Path(__file__).resolve().parent.parent
SHARED = {
    "free_port": "tests/support.py",
    "eventually": "tests/support.py",
    "kill": "tests/support.py",
    "tail": "tests/support.py",
    "scaling_arguments": "bench/common.py",
}


def definitions(name: str, under: str) -> list[str]:
    """Where a module-level function ``name`` is defined in the ``under`` tree, as paths from the root."""
    found = []
    for path in sorted((ROOT / under).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        if any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name for n in tree.body):
            found.append(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("name", sorted(SHARED))
def test_a_shared_helper_is_defined_once_in_its_support_module(name: str) -> None:
    home = SHARED[name]
    assert definitions(name, home.split("/")[0]) == [home]


def test_the_scaling_benchmarks_arguments() -> None:
    assert scaling_arguments("bench", None, "requests", []) == ([10_000, 100_000], 400)
    assert scaling_arguments("bench", None, "requests", ["--sizes", "300,20", "--huge", "--samples", "5"]) == (
        [20, 300, HUGE],
        5,
    )
    with pytest.raises(SystemExit):  # one size: nothing to compare the largest with
        scaling_arguments("bench", None, "requests", ["--sizes", "300"])
