"""Paths into business data (an instance's data, a task's input): ``customer.id`` is the key ``id``
of the object at key ``customer``. What data search filters and sorts by (:mod:`engine.storage.data_search`)
and what a definition's ``searchable`` names.

Segments are identifiers (a letter or ``_``, then letters, digits and ``_``), at most
:data:`MAX_DEPTH` of them: a path is written into SQL as a literal (so that PostgreSQL can match it to
an expression index), and only these characters may reach it. Array elements are not addressed;
``contains`` looks inside an array.
"""

from __future__ import annotations

import re

MAX_DEPTH = 8
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a data path, or None when it is one."""
    segments = path.split(".")
    if len(segments) > MAX_DEPTH:
        return f"at most {MAX_DEPTH} segments"
    bad = next((s for s in segments if not _SEGMENT.fullmatch(s)), None)
    if bad is not None:
        return f"segment {bad!r} is not a name (a letter or _, then letters, digits, _; dotted: customer.id)"
    return None


def segments_of(path: str) -> tuple[str, ...]:
    """The segments of a path :func:`path_problem` accepted."""
    assert path_problem(path) is None, f"unchecked data path {path!r}"
    return tuple(path.split("."))
