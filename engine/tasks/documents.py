"""Uploaded documents: who may upload and download, and what an upload must be (bytes: :mod:`engine.tasks.blobs`,
types: :mod:`engine.tasks.sniffing`).

Bytes live in a content-addressed directory (``<root>/<sha256[:2]>/<sha256>``); one row per
document lives in the database. An upload streams each file into a temporary file while hashing,
counting and keeping its head; the type is sniffed from those bytes (the client's declared type
only ever picks between readings the bytes themselves allow). Only when every file passes are the
blobs renamed into place and the rows written — in the task's transition, with an ``UPDATED``
event. A blob may outlive a transaction that failed after it was kept (harmless: it is addressed by
its content and reused by the next identical upload); a row never points at a missing blob.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, replace

from engine.definitions.model import DOCUMENT_UPLOAD_SCHEMA_TYPE, DocumentRequirement, Node
from engine.errors import (
    ConcurrentUpdateError,
    FieldError,
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from engine.state import Document, Task, TaskEventKind, TaskKind, TaskStatus, User, new_id
from engine.storage.database import Executor
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.instances import InstanceRepository
from engine.storage.tasks import TaskRepository
from engine.tasks import permissions
from engine.tasks.blobs import BlobStore, IncomingFile, StagedBlob
from engine.tasks.sniffing import accepts, clean_filename, sniff
from engine.tasks.visibility import VisibilityService
from engine.transitions.engine import Engine
from engine.transitions.transition import Transition


class DocumentService:
    """Uploading to and downloading from document-upload tasks, with docs/design.md §5's rules."""

    def __init__(self, engine: Engine, blobs: BlobStore, visibility: VisibilityService | None = None) -> None:
        self.engine = engine
        self.blobs = blobs
        self.visibility = visibility or VisibilityService(engine)

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
        except OSError as exc:  # a full disk, a read-only or missing files directory: not the client's doing
            raise UnavailableError(
                f"uploaded files cannot be stored now ({exc.strerror or type(exc).__name__})"
            ) from exc
        finally:
            if not kept:
                for blob in staged:
                    with suppress(OSError):  # where nothing could be written, nothing is left either
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
            await self.visibility.task(user, document.task_id)
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
