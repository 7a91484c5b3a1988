"""The engine's services for one app, built once and shared by every entry point (GraphQL, file
downloads, CLI): the only way in to the operations that apply the permission rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from engine.tasks.approval_requests import ApprovalRequestService
from engine.tasks.blobs import BlobStore
from engine.tasks.bulk import BulkTaskService
from engine.tasks.documents import DocumentService
from engine.tasks.email_actions import EmailActionService, EmailActionTokens
from engine.tasks.service import TaskService
from engine.tasks.visibility import VisibilityService
from engine.tasks.workflows import WorkflowService
from engine.transitions.engine import Engine
from engine.webhooks.service import DEFAULT_SECRET_GRACE, WebhookService
from engine.workers.hostpolicy import HostPolicy


@dataclass(frozen=True)
class Services:
    engine: Engine
    visibility: VisibilityService
    workflows: WorkflowService
    tasks: TaskService
    bulk: BulkTaskService
    """Bulk claim, assign and decide, each item through ``tasks``."""
    documents: DocumentService | None
    """None without a blob store: documents cannot be uploaded then."""
    webhooks: WebhookService
    email_actions: EmailActionService | None
    """None without tokens to read (``email_tokens``): approve-by-email links are refused then."""
    approval_requests: ApprovalRequestService

    @classmethod
    def build(
        cls, engine: Engine, blobs: BlobStore | None = None, *, host_policy: HostPolicy | None = None,
        webhook_secret_grace: timedelta = DEFAULT_SECRET_GRACE, secrets: Mapping[str, str] | None = None,
        email_tokens: EmailActionTokens | None = None,
    ) -> Services:  # fmt: skip
        """``host_policy``: what webhook URLs may name (the HTTP tasks' policy); ``secrets``: the workers'
        (``STEPWISE_SECRETS``), which no API input may carry; ``email_tokens``: how the approve-by-email links
        the worker sends are signed."""
        visibility = VisibilityService(engine)
        tasks = TaskService(engine, secrets)
        return cls(
            engine=engine,
            visibility=visibility,
            workflows=WorkflowService(engine, visibility),
            tasks=tasks,
            bulk=BulkTaskService(tasks),
            documents=DocumentService(engine, blobs, visibility) if blobs is not None else None,
            webhooks=WebhookService(engine, host_policy, webhook_secret_grace),
            email_actions=EmailActionService(engine, tasks, email_tokens) if email_tokens is not None else None,
            approval_requests=ApprovalRequestService(engine, visibility, host_policy),
        )
