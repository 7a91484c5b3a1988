"""Event cursors: a position in the event log as the opaque string clients and receivers are handed.

The GraphQL API resumes ``taskEvents(after:)`` from one; a webhook delivery carries its event's as its id.
"""

from __future__ import annotations

import base64
import binascii

_CURSOR_PREFIX = "taskEvent:"


def encode_event_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{position}".encode()).decode().rstrip("=")


def decode_event_cursor(cursor: str) -> int | None:
    """The event log position behind a cursor, or None if it is not one. (Cursors given before positions
    existed name event ids, which became those events' positions.)"""
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if decoded.startswith(_CURSOR_PREFIX):
            position = int(decoded.removeprefix(_CURSOR_PREFIX))
            if position >= 0:
                return position
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    return None
