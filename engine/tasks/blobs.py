"""The blob store: uploaded bytes in a content-addressed directory (``<root>/<sha256[:2]>/<sha256>``).

An upload streams each file into a temporary file while hashing, counting and keeping its head (for
:mod:`engine.tasks.sniffing`); only when every file of an upload passes are the blobs renamed into
place (:class:`~engine.tasks.documents.DocumentService`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from engine.tasks.sniffing import SNIFF_BYTES

CHUNK_BYTES = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


@runtime_checkable
class IncomingFile(Protocol):
    """What an upload must offer (Starlette's ``UploadFile`` does)."""

    @property
    def filename(self) -> str | None: ...

    @property
    def content_type(self) -> str | None: ...

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class StagedBlob:
    """An upload written to a temporary file; ``too_large`` means reading stopped past the limit."""

    temp: Path
    sha256: str
    size: int
    head: bytes
    too_large: bool


class BlobStore:
    """Content-addressed files under ``root``, each written to a temporary file and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    async def stage(self, source: IncomingFile, max_bytes: int | None) -> StagedBlob:
        """Stream ``source`` into a temporary file, hashing it; stop reading once it exceeds ``max_bytes``."""
        incoming = self.root / ".incoming"
        await asyncio.to_thread(incoming.mkdir, parents=True, exist_ok=True)
        fd, name = await asyncio.to_thread(tempfile.mkstemp, dir=incoming, suffix=".part")
        temp = Path(name)
        digest, size, head, too_large = hashlib.sha256(), 0, bytearray(), False
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := await source.read(CHUNK_BYTES):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        too_large = True
                        break
                    digest.update(chunk)
                    if len(head) < SNIFF_BYTES:
                        head += chunk[: SNIFF_BYTES - len(head)]
                    await asyncio.to_thread(out.write, chunk)
                await asyncio.to_thread(_flush, out)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return StagedBlob(temp, digest.hexdigest(), size, bytes(head), too_large)

    async def keep(self, staged: StagedBlob) -> Path:
        """Move a staged blob to its content address (an identical blob already there is kept)."""
        final = self.path_of(staged.sha256)

        def move() -> None:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                staged.temp.unlink(missing_ok=True)
            else:
                os.replace(staged.temp, final)

        await asyncio.to_thread(move)
        return final

    async def discard(self, staged: StagedBlob) -> None:
        await asyncio.to_thread(staged.temp.unlink, missing_ok=True)


def _flush(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())
