"""What every page of a list takes: ``first`` from 0 to :data:`MAX_PAGE`, refused the same way everywhere."""

from __future__ import annotations

from engine.errors import FieldError, ValidationError

MAX_PAGE = 200
"""The most items one page may ask for (``first``), on every connection: the inbox, a task's or an
instance's history, a webhook's delivery log. The schema's cost estimate counts a larger ``first`` as this."""


def check_first(first: int) -> None:
    """Refuse a page size out of range (``OUT_OF_RANGE`` naming ``first``)."""
    if not 0 <= first <= MAX_PAGE:
        raise ValidationError(
            f"first must be between 0 and {MAX_PAGE}, not {first}",
            [FieldError("first", f"must be between 0 and {MAX_PAGE}", "OUT_OF_RANGE")],
        )
