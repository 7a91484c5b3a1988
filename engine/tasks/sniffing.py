"""Content sniffing: an upload's type is read from its bytes (the client's declared type only ever
picks between readings the bytes themselves allow), and its filename is cleaned."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import puremagic

SNIFF_BYTES = 64 * 1024
MAX_FILENAME_LENGTH = 255
OCTET_STREAM = "application/octet-stream"


def _media_type(value: str | None) -> str | None:
    """``type/subtype`` in lower case without parameters; None when it is not one."""
    if not value:
        return None
    media = value.split(";", 1)[0].strip().lower()
    return media if re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", media) else None


def accepts(patterns: Sequence[str], content_type: str) -> bool:
    """Whether ``content_type`` matches one of ``patterns`` (``*/*``, ``image/*``, ``application/pdf``)."""
    major = content_type.split("/", 1)[0]
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern in ("*", "*/*") or pattern == content_type or pattern == f"{major}/*":
            return True
    return False


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of the head is still text
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


def sniff(head: bytes, declared: str | None, accept: Sequence[str] = ()) -> str:
    """The content type the bytes show.

    Among the readings the magic numbers allow at the best confidence, prefer the declared one,
    then one the requirement accepts, then the first. Bytes with no magic number are ``text/plain``
    (or the declared ``text/*`` type) when they are UTF-8 without NULs, else ``application/octet-stream``.
    """
    claimed = _media_type(declared)
    try:
        matches = [m for m in puremagic.magic_string(head) if m.mime_type]
    except (puremagic.PureError, ValueError):
        matches = []
    if matches:
        best = max(m.confidence for m in matches)
        readings = list(dict.fromkeys(str(m.mime_type).lower() for m in matches if m.confidence == best))
        if claimed is not None and claimed in readings:
            return claimed
        return next((r for r in readings if accepts(accept, r)), readings[0])
    if head and _looks_like_text(head):
        return claimed if claimed is not None and claimed.startswith("text/") else "text/plain"
    return OCTET_STREAM


def clean_filename(name: str | None) -> str:
    """The last path component, without control characters, at most 255 characters; ``upload`` if empty."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = "".join(c for c in unicodedata.normalize("NFC", base) if unicodedata.category(c)[0] != "C").strip()
    if base in ("", ".", ".."):
        return "upload"
    if len(base) > MAX_FILENAME_LENGTH:
        stem, dot, suffix = base.rpartition(".")
        keep = suffix if dot and 0 < len(suffix) <= 16 else ""
        base = base[: MAX_FILENAME_LENGTH - len(keep) - 1] + "." + keep if keep else base[:MAX_FILENAME_LENGTH]
    return base
