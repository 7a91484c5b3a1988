"""What a task shows besides itself: its form, its document requirements and documents, its attempts
and its messages."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from engine import EscalationAction, Node, state
from schema.context import Info
from schema.sharing import same_for_every_viewer
from schema.types.user import User, load_user


@strawberry.type
class FormField:
    key: str
    type: str
    label: str
    required: bool
    options: list[str] | None
    mask: str | None
    multiline: bool | None


@strawberry.type
class Form:
    fields: list[FormField]

    @classmethod
    def of(cls, node: Node) -> Form | None:
        """The form of ``node`` (form and approval tasks), or None if it has none."""
        if node.form is None:
            return None
        return cls(
            fields=[
                FormField(
                    key=f.key,
                    type=f.type,
                    label=f.label,
                    required=f.required,
                    options=list(f.options) if f.options is not None else None,
                    mask=f.mask,
                    multiline=f.multiline,
                )  # fmt: skip
                for f in node.form.fields
            ]
        )


@strawberry.type
class DocumentRequirement:
    key: str
    label: str
    accept: list[str]
    min_files: int
    max_files: int | None
    max_bytes: int | None

    @classmethod
    def all_of(cls, node: Node) -> list[DocumentRequirement]:
        """What ``node`` asks to be uploaded (document-upload tasks; empty for any other)."""
        return [
            cls(
                key=d.key,
                label=d.label,
                accept=list(d.accept),
                min_files=d.min_files,
                max_files=d.max_files,
                max_bytes=d.max_bytes,
            )  # fmt: skip
            for d in node.documents
        ]


@strawberry.type
class Document:
    id: strawberry.ID
    requirement_key: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime
    source: strawberry.Private[state.Document]

    @strawberry.field(description="Download address: GET with the same bearer token.")
    @same_for_every_viewer
    def url(self) -> str:
        return f"/files/documents/{self.id}"

    @strawberry.field
    @same_for_every_viewer
    async def uploaded_by(self, info: Info) -> User:
        user = await load_user(info, self.source.uploaded_by)
        assert user is not None
        return user

    @classmethod
    def from_domain(cls, document: state.Document) -> Document:
        return cls(
            id=strawberry.ID(document.id), requirement_key=document.requirement_key, filename=document.filename,
            content_type=document.content_type, size=document.size, sha256=document.sha256,
            uploaded_at=document.uploaded_at, source=document,
        )  # fmt: skip


@strawberry.type
class TaskAttempt:
    number: int
    started_at: datetime
    finished_at: datetime | None
    request: JSON | None
    response: JSON | None
    error: str | None

    @classmethod
    def from_domain(cls, attempt: state.TaskAttempt) -> TaskAttempt:
        return cls(
            number=attempt.number,
            started_at=attempt.started_at,
            finished_at=attempt.finished_at,
            request=attempt.request,
            response=attempt.response,
            error=attempt.error,
        )  # fmt: skip


@strawberry.type
class TaskMessage:
    id: strawberry.ID
    body: str
    posted_at: datetime
    source: strawberry.Private[state.TaskMessage]

    @strawberry.field
    @same_for_every_viewer
    async def author(self, info: Info) -> User:
        user = await load_user(info, self.source.author_id)
        assert user is not None
        return user

    @classmethod
    def from_domain(cls, message: state.TaskMessage) -> TaskMessage:
        return cls(id=strawberry.ID(message.id), body=message.body, posted_at=message.posted_at, source=message)


@strawberry.type(description="One step of the task's escalation ladder, past or scheduled.")
class TaskEscalation:
    step: int
    action: EscalationAction
    status: state.EscalationStatus
    due_at: datetime
    fired_at: datetime | None
    detail: JSON | None = strawberry.field(description="What it did: a reminder's recipients, a reassignment's target.")

    @classmethod
    def from_domain(cls, escalation: state.TaskEscalation, task: state.Task) -> TaskEscalation:
        return cls(
            step=escalation.step, action=EscalationAction(escalation.action), status=escalation.status_with(task),
            due_at=escalation.due_at, fired_at=escalation.fired_at,
            detail=JSON(dict(escalation.detail)) if escalation.detail is not None else None,
        )  # fmt: skip


@strawberry.type(description="A signal sent to a node before a token reached it: applied once when one does.")
class HeldSignal:
    node_id: str
    payload: JSON | None
    sent_at: datetime
    applied_at: datetime | None = strawberry.field(
        description="When a token arrived and the signal completed its task."
    )
    task_id: strawberry.ID | None = strawberry.field(description="The task the signal completed.")
    source: strawberry.Private[state.HeldSignal]

    @classmethod
    def from_domain(cls, signal: state.HeldSignal) -> HeldSignal:
        return cls(
            node_id=signal.node_id, payload=signal.payload, sent_at=signal.sent_at, applied_at=signal.applied_at,
            task_id=strawberry.ID(signal.task_id) if signal.task_id else None, source=signal,
        )  # fmt: skip

    @strawberry.field
    async def sent_by(self, info: Info) -> User | None:
        return await load_user(info, self.source.sent_by) if self.source.sent_by else None
