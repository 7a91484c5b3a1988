"""Stepwise engine: workflow definitions, transitions, events, tasks, workers and storage.

The engine imports neither ``schema`` nor ``server``; both build on it and import only what this
module exports (``__all__``; tests/test_import_boundaries.py checks it). Inside the engine, modules
import each other by their own paths, never from here.

Where things are: a definition is parsed and validated in ``definitions/``; a transition is run by
the :class:`Engine` and written in ``transitions/`` (its last statement in ``storage/writer.py``
and, on PostgreSQL, ``storage/postgres/finish.py``); an event is numbered and delivered in
``events/``; a permission is decided in ``tasks/permissions.py`` and applied by the services in
``tasks/``; a system task's executor runs in ``workers/``.
"""

from engine import errors, state
from engine.calendars import BusinessCalendar, Calendars, parse_calendars
from engine.catalog import default_registry
from engine.clock import Clock, ManualClock, SystemClock
from engine.definitions.escalations import EscalationAction
from engine.definitions.model import Node, Priority, WorkflowDefinition
from engine.definitions.validation import DEFAULT_MAX_JSON_BYTES
from engine.errors import (
    AuthenticationError,
    ConcurrentUpdateError,
    ConflictError,
    DefinitionError,
    EmailActionRefusedError,
    FieldError,
    ForbiddenError,
    IdempotencyKeyReusedError,
    InvalidStateError,
    NotFoundError,
    SeparationOfDutiesError,
    ServiceAccountError,
    StepwiseError,
    SubscriberOverflowError,
    SubscriptionLimitError,
    UnavailableError,
    ValidationError,
)
from engine.events.cursors import decode_event_cursor, encode_event_cursor
from engine.events.hub import EventFilter, EventHub
from engine.events.log import Delivery
from engine.fastpaths import FastPaths
from engine.idempotency import IdempotencyKeys, IdempotentRequest
from engine.observer import AttemptOutcome, EngineObserver
from engine.paging import MAX_PAGE
from engine.services import Services
from engine.signing import SIGNATURE_HEADER, new_signing_secret, sign, signature_header, verify_signature
from engine.state import (
    SERVICE_ROLE,
    DeployedDefinition,
    Document,
    InstanceStatus,
    StepInstance,
    StepMetrics,
    Task,
    TaskAttempt,
    TaskEscalation,
    TaskEvent,
    TaskEventKind,
    TaskKind,
    TaskMessage,
    TaskStatus,
    User,
    WorkflowInstance,
)
from engine.storage.data_search import DataCondition, DataOperator, DataSort, DataSource
from engine.storage.database import Database, ReadSessions
from engine.storage.directory import DirectoryRepository
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.escalations import EscalationRepository
from engine.storage.held_signals import signals_of as held_signals_of
from engine.storage.inbox import (
    TaskOrderField,
    TaskQuery,
    TaskSearch,
    count_beside,
    encode_cursor,
    page_of_tasks,
    page_with_cursors,
    task_search,
)
from engine.storage.instances import InstanceRepository
from engine.storage.migrations import current_revision, head_revision, upgrade
from engine.storage.outages import database_unavailable
from engine.storage.task_events import HistoryPage, encode_history_cursor
from engine.storage.tasks import TaskRepository
from engine.tasks import permissions, policies
from engine.tasks.action_approvals import ActionDecision
from engine.tasks.approval_requests import (
    MAX_WAIT_SECONDS,
    REQUEST_DEFINITION_KEY,
    ApprovalRequest,
    ApprovalRequestService,
    AwaitedDecision,
    RequestedApproval,
)
from engine.tasks.blobs import BlobStore
from engine.tasks.bulk import MAX_BULK_TASKS, BulkItem, BulkTaskService
from engine.tasks.documents import DocumentService
from engine.tasks.email_actions import EmailAction, EmailActionPage, EmailActionService, EmailActionTokens
from engine.tasks.policy_state import PolicyDecision, PolicyLevel, TaskPolicy
from engine.tasks.service import TaskService
from engine.tasks.visibility import VisibilityService
from engine.tasks.workflows import WorkflowService
from engine.transitions.engine import Engine
from engine.webhooks.model import DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery, WebhookFilter
from engine.webhooks.service import WebhookService
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.hostpolicy import HostPolicy
from engine.workers.hostpolicy import check_entries as check_host_entries
from engine.workers.notifications import EmailNotifier
from engine.workers.webhooks import MAX_WEBHOOK_ATTEMPTS, DeliveryPolicy, WebhookDispatcher
from engine.workers.worker import Worker

__all__ = [
    # whole modules: the domain's dataclasses and states, the errors, the permission and approval-policy rules
    "errors", "state", "permissions", "policies",
    # running the engine
    "Engine", "Database", "ReadSessions", "Clock", "SystemClock", "ManualClock", "default_registry",
    "upgrade", "current_revision", "head_revision", "FastPaths",
    # the domain's dataclasses and states (also as ``state.X``)
    "User", "Task", "TaskStatus", "TaskKind", "TaskEvent", "TaskEventKind", "TaskMessage", "TaskAttempt", "Document",
    "TaskEscalation",
    "WorkflowInstance", "InstanceStatus", "StepInstance", "StepMetrics", "DeployedDefinition",
    # definitions
    "WorkflowDefinition", "Node", "Priority",
    # the services (built once per app: Services.build)
    "Services", "VisibilityService", "WorkflowService", "TaskService", "DocumentService", "BlobStore",
    # reads that return engine dataclasses (the schema's DataLoaders and the inbox batch them)
    "TaskRepository", "InstanceRepository", "TaskDetailsRepository", "DirectoryRepository", "held_signals_of",
    "TaskQuery", "TaskSearch", "TaskOrderField", "task_search", "page_of_tasks", "count_beside", "encode_cursor",
    "page_with_cursors",
    "HistoryPage", "encode_history_cursor", "DataCondition", "DataOperator", "DataSource", "DataSort",
    # exactly-once mutations (engine.idempotency): any writer may guard its change with a key
    "IdempotencyKeys", "IdempotentRequest",
    # events
    "EventHub", "EventFilter", "Delivery", "encode_event_cursor", "decode_event_cursor",
    # workers
    "Worker", "BUILTIN_EXECUTORS", "SystemTaskContext", "HostPolicy", "check_host_entries", "DEFAULT_MAX_JSON_BYTES",
    # business time
    "BusinessCalendar", "Calendars", "parse_calendars",
    # escalation ladders
    "EscalationAction", "EscalationRepository",
    # webhooks, and signing what the engine sends out
    "WebhookService", "Webhook", "WebhookFilter", "WebhookDelivery", "WebhookAttempt", "DeliveryStatus",
    "WebhookDispatcher", "DeliveryPolicy", "MAX_WEBHOOK_ATTEMPTS",
    "SIGNATURE_HEADER", "sign", "signature_header", "verify_signature", "new_signing_secret",
    # approve by email
    "EmailAction", "EmailActionPage", "EmailActionService", "EmailActionTokens", "EmailNotifier",
    "EmailActionRefusedError",
    # bulk actions
    "BulkTaskService", "BulkItem", "MAX_BULK_TASKS", "MAX_PAGE", "TaskPolicy", "PolicyLevel", "PolicyDecision",
    # what the engine reports to an operator's instruments (the server's metrics)
    "EngineObserver", "AttemptOutcome",
    # errors
    "StepwiseError", "AuthenticationError", "NotFoundError", "ForbiddenError", "ConflictError",
    "ConcurrentUpdateError", "InvalidStateError", "ValidationError", "DefinitionError", "FieldError",
    "SubscriptionLimitError", "SubscriberOverflowError", "UnavailableError", "IdempotencyKeyReusedError",
    "SeparationOfDutiesError", "ServiceAccountError", "database_unavailable",
    # action approvals, and asking for one without a workflow
    "ActionDecision", "ApprovalRequest", "ApprovalRequestService", "AwaitedDecision", "RequestedApproval",
    "MAX_WAIT_SECONDS", "REQUEST_DEFINITION_KEY", "SERVICE_ROLE",
]  # fmt: skip
