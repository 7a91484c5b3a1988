"""What a query selects below a field, looking through fragments: the names a page's relations are
prefetched by, and whether tasks are read whole or as summaries (without their values)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from strawberry.types.nodes import SelectedField, Selection


def selected_names(selections: Iterable[Selection], path: Sequence[str]) -> set[str]:
    """The field names a query selects at ``path`` below ``selections``, looking through fragments."""
    current = list(selections)
    for name in path:
        current = [child for field in _fields(current) if field.name == name for child in field.selections]
    return {field.name for field in _fields(current)}


def shows_task_values(selections: Iterable[Selection], path: Sequence[str]) -> bool:
    """Whether the tasks at ``path`` below ``selections`` select a value (``input``, ``output``, ``draft``),
    else they are read as summaries. Directives are not evaluated: a value under ``@skip`` still counts,
    so the answer can only err towards reading more."""
    return not selected_names(selections, path).isdisjoint(TASK_VALUE_FIELDS)


TASK_VALUE_FIELDS = frozenset({"input", "output", "draft"})


def _fields(selections: Iterable[Selection]) -> Iterator[SelectedField]:
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        else:
            yield from _fields(selection.selections)
