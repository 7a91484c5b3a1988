"""``uploadTaskDocuments``: files arrive by the GraphQL multipart request spec as ``Upload`` values.

The engine's :class:`~engine.tasks.documents.DocumentService` owns every rule (visibility, state,
permission, requirement, sniffed type, sizes, counts). A value that is not a file — an inline
string where an upload belongs — reaches it as is and comes back as a ``ValidationFailed`` entry.
"""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.file_uploads import Upload

from engine import IdempotencyKeyReusedError, InvalidStateError, StepwiseError
from schema.context import Info
from schema.errors import Conflict, Forbidden, InvalidState, NotFound, ValidationFailed, to_error
from schema.idempotency import idempotency_key_field, idempotent
from schema.permissions import IsAuthenticated
from schema.types.details import Document
from schema.types.tasks import Task


@strawberry.input
class UploadTaskDocumentsInput:
    task_id: strawberry.ID
    requirement_key: str
    files: list[Upload] = strawberry.field(description="Parts of a multipart request (GraphQL multipart spec).")
    idempotency_key: str | None = idempotency_key_field()


@strawberry.type
class DocumentsSuccess:
    documents: list[Document] = strawberry.field(description="The documents this upload added.")
    task: Task


DocumentsResult = Annotated[
    DocumentsSuccess | NotFound | Forbidden | Conflict | InvalidState | ValidationFailed,
    strawberry.union("DocumentsResult"),
]


@strawberry.type
class DocumentMutations:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Upload files for one document requirement of a document-upload task (multipart request).",
    )
    async def upload_task_documents(self, info: Info, input: UploadTaskDocumentsInput) -> DocumentsResult:
        try:
            service = info.context.documents
            added, task = await idempotent(info, "uploadTaskDocuments", input, lambda: service.upload(
                info.context.user, input.task_id, input.requirement_key, list(input.files)
            ))  # fmt: skip
        except StepwiseError as exc:
            error = to_error(exc)
            if isinstance(exc, IdempotencyKeyReusedError):
                return error
            if isinstance(error, Conflict):  # a lost race with another change: reads as the task's state
                return InvalidState(message=error.message, code=InvalidStateError.code)
            return error
        return DocumentsSuccess(documents=[Document.from_domain(d) for d in added], task=Task.from_domain(task))
