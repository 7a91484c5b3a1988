"""Reading what a client sends as JSON: strictly, so that an unreadable body is a 400, never a 500.

What is not JSON here, although Python's parser takes it or fails otherwise than with a
``JSONDecodeError`` (which the GraphQL view answers with 400):

- ``NaN``, ``Infinity`` and numbers beyond a double (``1e400``): JSON has none (RFC 8259), no client
  can read them back and PostgreSQL refuses to store them;
- integers longer than Python converts (4,300 digits), bytes that are not UTF-8, and nesting deeper
  than ``MAX_DEPTH`` (64) — at 950 levels values reached code that recursed past Python's limit;
- a body that is a JSON string, number or null: a GraphQL request is an object.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

MAX_DEPTH = 64


def _refuse(name: str) -> NoReturn:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _refuse(text[:20])
    return value


_STRICT = json.JSONDecoder(parse_constant=_refuse, parse_float=_finite)  # built once, as json.loads's own


def read_json(data: str | bytes) -> Any:
    """``data`` decoded; :class:`json.JSONDecodeError` for anything that is not JSON as above."""
    try:
        text = data if isinstance(data, str) else data.decode(json.detect_encoding(data))
        value = _STRICT.decode(text)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # invalid UTF-8, an integer too long to convert, deep nesting
        raise json.JSONDecodeError(f"not JSON: {type(exc).__name__}", "", 0) from None
    if too_deep(value):
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0)
    return value


def too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            pending.extend((inner, depth + 1) for inner in (item.values() if isinstance(item, dict) else item))
    return False


def files_map_problem(operations: object, files_map: object) -> str | None:
    """What is wrong with a multipart request's ``operations`` and ``map`` (the GraphQL multipart
    request spec), or None; Strawberry assumes their shapes and failed with a 500 otherwise."""
    if not isinstance(operations, dict | list):
        return "`operations` must be a JSON object (or an array of them)"
    if not isinstance(files_map, dict):
        return "`map` must be a JSON object of file names to lists of paths"
    for paths in files_map.values():
        if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
            return "each entry of `map` must be a list of paths such as `variables.files.0`"
    return None
