"""Server-side validation of form values against the node's field definitions.

A draft (``partial``) checks types but not required fields; a submission checks everything. Every
offending field is reported at once, each with a stable code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from engine.definitions.model import Form, FormField
from engine.errors import FieldError, ValidationError

MAX_TEXT_LENGTH = 10_000
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MASK_DECIMALS = {"currency": 2, "integer": 0}


def mask_decimals(mask: str | None) -> int | None:
    """How many decimals a number mask allows: ``currency:EUR`` → 2, ``integer`` → 0, ``decimal:3`` → 3."""
    if not mask:
        return None
    kind, _, argument = mask.partition(":")
    if kind == "decimal" and argument.isdigit():
        return int(argument)
    return _MASK_DECIMALS.get(kind)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _check(field: FormField, value: Any) -> tuple[str, str] | None:
    """``(code, message)`` for a present value of the wrong shape, else None."""
    kind = field.type
    if kind == "text":
        if not isinstance(value, str):
            return "WRONG_TYPE", "must be text"
        limit = field.max_length or MAX_TEXT_LENGTH
        if len(value) > limit:
            return "TOO_LONG", f"must be at most {limit} characters"
        if not field.multiline and ("\n" in value or "\r" in value):
            return "INVALID", "must be a single line"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return "WRONG_TYPE", "must be a number"
        if field.min is not None and value < field.min:
            return "TOO_SMALL", f"must be at least {field.min:g}"
        if field.max is not None and value > field.max:
            return "TOO_LARGE", f"must be at most {field.max:g}"
        decimals = mask_decimals(field.mask)
        if decimals is not None and round(value, decimals) != value:
            return "INVALID_FORMAT", f"must have at most {decimals} decimals ({field.mask})"
    elif kind == "date":
        if not isinstance(value, str) or not _ISO_DATE.match(value):
            return "INVALID_FORMAT", "must be an ISO date (YYYY-MM-DD)"
        try:
            date.fromisoformat(value)
        except ValueError:
            return "INVALID_FORMAT", "is not a real date"
    elif kind == "checkbox":
        if not isinstance(value, bool):
            return "WRONG_TYPE", "must be true or false"
    elif kind == "dropdown":
        if not isinstance(value, str) or value not in (field.options or ()):
            return "NOT_AN_OPTION", f"must be one of {list(field.options or ())}"
    elif kind == "multiselect":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return "WRONG_TYPE", "must be a list of options"
        unknown = [item for item in value if item not in (field.options or ())]
        if unknown:
            return "NOT_AN_OPTION", f"{unknown} not among {list(field.options or ())}"
        if len(set(value)) != len(value):
            return "INVALID", "lists an option twice"
    return None


def validate_values(form: Form | None, values: Any, *, partial: bool, path: str = "values") -> dict[str, Any]:
    """The values, checked; raises :class:`ValidationError` naming every bad field (``values.amount``)."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ValidationError(
            f"{path} must be a JSON object", [FieldError(path, "must be a JSON object", "WRONG_TYPE")]
        )
    fields = {field.key: field for field in (form.fields if form else ())}
    errors = [
        FieldError(f"{path}.{key}", f"{key!r} is not a field of this form", "UNKNOWN_FIELD")
        for key in values
        if key not in fields
    ]
    for key, field in fields.items():
        value = values.get(key)
        if _is_empty(value):
            if field.required and not partial:
                errors.append(FieldError(f"{path}.{key}", f"{field.label} is required", "REQUIRED"))
            continue
        problem = _check(field, value)
        if problem is None and field.type == "checkbox" and field.required and not partial and value is not True:
            problem = ("REQUIRED", "must be checked")
        if problem is not None:
            code, message = problem
            errors.append(FieldError(f"{path}.{key}", f"{field.label} {message}", code))
    if errors:
        noun = "field is" if len(errors) == 1 else "fields are"
        raise ValidationError(f"{len(errors)} {noun} invalid", errors)
    return {key: value for key, value in values.items() if not _is_empty(value)}
