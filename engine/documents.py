"""Uploaded documents: the blob store, content sniffing, and who may upload and download.

Bytes live in a content-addressed directory (``<root>/<sha256[:2]>/<sha256>``); one row per
document lives in the database. An upload streams each file into a temporary file while hashing,
counting and keeping its head; the type is sniffed from those bytes (the client's declared type
only ever picks between readings the bytes themselves allow). Only when every file passes are the
blobs renamed into place and the rows written — in the task's transition, with an ``UPDATED``
event. A blob may outlive a transaction that failed after it was kept (harmless: it is addressed by
its content and reused by the next identical upload); a row never points at a missing blob.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

import puremagic

from engine import permissions
from engine.definitions import DOCUMENT_UPLOAD_SCHEMA_TYPE, DocumentRequirement, Node
from engine.errors import (
    ConcurrentUpdateError,
    FieldError,
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from engine.runner import Engine
from engine.services import visible_task
from engine.state import Document, Task, TaskEventKind, TaskKind, TaskStatus, User, new_id
from engine.storage.database import Executor
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.instances import InstanceRepository
from engine.storage.tasks import TaskRepository
from engine.transition import Transition

CHUNK_BYTES = 1 << 20
SNIFF_BYTES = 64 * 1024
MAX_FILENAME_LENGTH = 255
OCTET_STREAM = "application/octet-stream"
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


# -- content types ---------------------------------------------------------------------------


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


# -- the service -----------------------------------------------------------------------------


class DocumentService:
    """Uploading to and downloading from document-upload tasks, with docs/design.md §5's rules."""

    def __init__(self, engine: Engine, blobs: BlobStore) -> None:
        self.engine = engine
        self.blobs = blobs

    async def upload(
        self, user: User, task_id: str, requirement_key: str, files: Sequence[object]
    ) -> tuple[list[Document], Task]:
        """Check, store and record ``files`` for one requirement; returns the new documents and the task.

        Checks in order: visibility (``NotFound``), state (``InvalidState``), permission
        (``Forbidden``), the requirement key, then every file at once (``ValidationFailed`` naming
        ``files.N``). A candidate on an unassigned task claims it in the same transition.
        """
        task, requirement, existing = await self._preflight(user, task_id, requirement_key)
        problems = _count_problem(requirement, existing, len(files))
        accepted: list[_Accepted] = []
        staged: list[StagedBlob] = []
        kept = False
        try:
            for index, item in enumerate(files):
                result = await self._stage_one(index, item, requirement, staged)
                if isinstance(result, FieldError):
                    problems.append(result)
                else:
                    accepted.append(result)
            if problems:
                raise ValidationError(f"the files for {requirement.label!r} were not accepted", problems)
            for blob in staged:
                await self.blobs.keep(blob)
            kept = True
        finally:
            if not kept:
                for blob in staged:
                    await self.blobs.discard(blob)

        async def record(transition: Transition) -> tuple[list[Document], Task]:
            current = await transition.tasks.get_by_id(task_id)
            if current is None or not permissions.can_see_task(user, current, transition.instance.started_by):
                raise NotFoundError(f"no task {task_id}")
            node = transition.definition.node(current.node_id)
            _check_task(user, current, node, requirement_key)
            count = await _uploaded_count(transition.connection, current.id, requirement_key)
            late = _count_problem(requirement, count, len(accepted))
            if late:
                raise ValidationError(f"the files for {requirement.label!r} were not accepted", late)
            if current.assigned_user_id is None:
                current = await transition.update_task(current, TaskEventKind.CLAIMED, assigned_user_id=user.id,
                                                       status=TaskStatus.CLAIMED)  # fmt: skip
            ids = sorted(new_id() for _ in accepted)  # ordered like the files: they share uploaded_at
            added = [
                Document(id=document_id, task_id=current.id, requirement_key=requirement_key, filename=a.filename,
                         content_type=a.content_type, size=a.blob.size, sha256=a.blob.sha256, uploaded_by=user.id,
                         uploaded_at=transition.now)
                for document_id, a in zip(ids, accepted, strict=True)
            ]  # fmt: skip
            details = TaskDetailsRepository(transition.connection)
            for document in added:
                await details.add_document(document)
            if not await transition.tasks.update(current.id, current.revision, {"updated_at": transition.now}):
                raise ConcurrentUpdateError(f"task {current.id} changed during the upload")
            after = replace(current, revision=current.revision + 1, updated_at=transition.now)
            data = {"documentsAdded": [d.id for d in added], "requirementKey": requirement_key}
            await transition.record(TaskEventKind.UPDATED, after, data)
            return added, after

        (added, after), _ = await self.engine.transition(task.workflow_instance_id, user.id, record)
        return added, after

    async def visible_document(self, user: User, document_id: str) -> Document:
        """The document if ``user`` may see its task; otherwise ``NotFoundError`` (existence does not leak)."""
        async with self.engine.db.read() as session:
            document = await TaskDetailsRepository(session).get_document(document_id)
        if document is None:
            raise NotFoundError(f"no document {document_id}")
        try:
            await visible_task(self.engine, user, document.task_id)
        except NotFoundError:
            raise NotFoundError(f"no document {document_id}") from None
        return document

    # -- steps -----------------------------------------------------------------------------

    async def _preflight(self, user: User, task_id: str, requirement_key: str) -> tuple[Task, DocumentRequirement, int]:
        """Every rule but the files', checked before any byte is read (the transition checks again)."""
        async with self.engine.db.read() as session:
            task = await TaskRepository(session).get_by_id(task_id)
            instance = await InstanceRepository(session).get(task.workflow_instance_id) if task else None
            existing = await _uploaded_count(session, task_id, requirement_key) if task else 0
        if task is None or instance is None or not permissions.can_see_task(user, task, instance.started_by):
            raise NotFoundError(f"no task {task_id}")
        definition = await self.engine.definition(instance.definition_key, instance.definition_version)
        requirement = _check_task(user, task, definition.node(task.node_id), requirement_key)
        return task, requirement, existing

    async def _stage_one(
        self, index: int, item: object, requirement: DocumentRequirement, staged: list[StagedBlob]
    ) -> _Accepted | FieldError:
        field = f"files.{index}"
        if not isinstance(item, IncomingFile):
            return FieldError(field, f"expected an uploaded file (a part of a multipart request), got "
                                     f"{type(item).__name__}", "NOT_A_FILE")  # fmt: skip
        blob = await self.blobs.stage(item, requirement.max_bytes)
        staged.append(blob)
        name = clean_filename(item.filename)
        if blob.too_large:
            return FieldError(field, f"{name} is larger than {requirement.max_bytes} bytes", "TOO_LARGE")
        if blob.size == 0:
            return FieldError(field, f"{name} is empty", "EMPTY_FILE")
        content_type = sniff(blob.head, item.content_type, requirement.accept)
        if not accepts(requirement.accept, content_type):
            return FieldError(field, f"{name} is {content_type}; {requirement.label} accepts "
                                     f"{', '.join(requirement.accept)}", "UNSUPPORTED_TYPE")  # fmt: skip
        return _Accepted(blob, name, content_type)


@dataclass(frozen=True)
class _Accepted:
    blob: StagedBlob
    filename: str
    content_type: str


def _check_task(user: User, task: Task, node: Node, requirement_key: str) -> DocumentRequirement:
    if task.kind is not TaskKind.USER or task.schema_type != DOCUMENT_UPLOAD_SCHEMA_TYPE:
        raise InvalidStateError("documents are uploaded to document-upload tasks only")
    if not task.status.is_open:
        raise InvalidStateError(f"the task is {task.status.value}; documents can no longer be added")
    if not permissions.can_complete(user, task):
        raise ForbiddenError("only the assignee (or a candidate, on an unassigned task) may upload documents")
    requirement = next((r for r in node.documents if r.key == requirement_key), None)
    if requirement is None:
        known = ", ".join(r.key for r in node.documents)
        problem = FieldError("requirementKey", f"must be one of: {known}", "UNKNOWN_REQUIREMENT")
        raise ValidationError(f"no document requirement {requirement_key!r}", [problem])
    return requirement


def _count_problem(requirement: DocumentRequirement, existing: int, new: int) -> list[FieldError]:
    if new == 0:
        return [FieldError("files", "send at least one file", "NO_FILES")]
    if requirement.max_files is not None and existing + new > requirement.max_files:
        return [FieldError("files", f"{requirement.label} takes at most {requirement.max_files} file(s); "
                                    f"{existing} uploaded, {new} sent", "TOO_MANY_FILES")]  # fmt: skip
    return []


async def _uploaded_count(session: Executor, task_id: str, requirement_key: str) -> int:
    uploaded = (await TaskDetailsRepository(session).documents_of([task_id]))[task_id]
    return sum(1 for d in uploaded if d.requirement_key == requirement_key)
