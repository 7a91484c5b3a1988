"""Managing webhooks as a user: admins only (``permissions.can_manage_webhooks``).

A URL must be ``http`` or ``https`` and pass the host policy of HTTP tasks when it is registered (its host
resolves, and to addresses the policy admits); the worker checks it again at every delivery, on the address
it connects to, since a name may resolve elsewhere later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import ExecutionFailedError, FieldError, ForbiddenError, NotFoundError, ValidationError
from engine.paging import check_first
from engine.signing import new_signing_secret
from engine.state import TaskEventKind, User, new_id
from engine.storage.models import idempotency_keys
from engine.storage.task_events import TaskEventRepository
from engine.storage.webhooks import WebhookRepository
from engine.tasks import permissions
from engine.transitions.engine import Engine
from engine.webhooks.model import Webhook, WebhookAttempt, WebhookDelivery, WebhookFilter
from engine.workers.hostpolicy import HostPolicy, checked_addresses

DEFAULT_SECRET_GRACE = timedelta(hours=24)
MAX_URL_LENGTH = 2048
T = TypeVar("T")


class WebhookService:
    def __init__(
        self, engine: Engine, host_policy: HostPolicy | None = None, secret_grace: timedelta = DEFAULT_SECRET_GRACE
    ) -> None:
        self.engine = engine
        self.host_policy = host_policy or HostPolicy()
        self.secret_grace = secret_grace

    @staticmethod
    def _require_admin(user: User) -> None:
        if not permissions.can_manage_webhooks(user):
            raise ForbiddenError("only an admin may manage webhooks")

    async def _write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``work`` in one transaction, which also stores the running request's idempotency key with what
        ``work`` returned (a repeat with the key gets that instead: :mod:`engine.idempotency`)."""
        keys = self.engine.idempotency
        guard = keys.take()

        async def write() -> T:
            async with self.engine.db.transaction() as session:
                result = await work(session)
                if guard is not None:
                    await session.execute(
                        idempotency_keys.insert().values(keys.row(guard, result, self.engine.clock.now()))
                    )
            return result

        return await keys.guarded(guard, write)

    async def create(
        self, user: User, url: str, events: Iterable[TaskEventKind], filter: WebhookFilter
    ) -> tuple[Webhook, str]:
        """The new webhook and its signing secret (shown this once). It gets the events committed from now on."""
        self._require_admin(user)
        await self._check_url(url)
        now, secret = self.engine.clock.now(), new_signing_secret()

        async def create(session: AsyncSession) -> tuple[Webhook, str]:
            cursor = await TaskEventRepository(session).latest_position()
            webhook = Webhook(
                id=new_id(), url=url, events=tuple(sorted(set(events))), filter=filter, enabled=True,
                created_by=user.id, created_at=now, updated_at=now, secret=secret, cursor=cursor,
            )  # fmt: skip
            await WebhookRepository(session).add(webhook)
            return webhook, secret

        return await self._write(create)

    async def update(
        self,
        user: User,
        webhook_id: str,
        *,
        url: str | None = None,
        events: Iterable[TaskEventKind] | None = None,
        filter: WebhookFilter | None = None,
        enabled: bool | None = None,
    ) -> Webhook:
        self._require_admin(user)
        if url is not None:
            await self._check_url(url)

        async def update(session: AsyncSession) -> Webhook:
            repository = WebhookRepository(session)
            webhook = await self._get(repository, webhook_id)
            webhook = replace(
                webhook, url=webhook.url if url is None else url,
                events=webhook.events if events is None else tuple(sorted(set(events))),
                filter=webhook.filter if filter is None else filter,
                enabled=webhook.enabled if enabled is None else enabled, updated_at=self.engine.clock.now(),
            )  # fmt: skip
            await repository.save(webhook)
            return webhook

        return await self._write(update)

    async def delete(self, user: User, webhook_id: str) -> None:
        """Delete the webhook and its delivery log (a disabled one keeps both: ``update(enabled=False)``)."""
        self._require_admin(user)

        async def delete(session: AsyncSession) -> None:
            if not await WebhookRepository(session).delete(webhook_id):
                raise NotFoundError(f"no webhook {webhook_id}")

        await self._write(delete)

    async def rotate_secret(self, user: User, webhook_id: str) -> tuple[Webhook, str]:
        """A new secret signs from now on; the one it replaces signs beside it for ``secret_grace``."""
        self._require_admin(user)
        now, secret = self.engine.clock.now(), new_signing_secret()

        async def rotate(session: AsyncSession) -> tuple[Webhook, str]:
            repository = WebhookRepository(session)
            webhook = await self._get(repository, webhook_id)
            webhook = replace(webhook, secret=secret, previous_secret=webhook.secret,
                              previous_secret_until=now + self.secret_grace, updated_at=now)  # fmt: skip
            await repository.save(webhook)
            return webhook, secret

        return await self._write(rotate)

    async def redeliver(self, user: User, delivery_id: str) -> WebhookDelivery:
        """Send a delivery again with its id, as soon as no earlier event of its task is pending before it."""
        self._require_admin(user)

        async def redeliver(session: AsyncSession) -> WebhookDelivery:
            repository = WebhookRepository(session)
            if await repository.get_delivery(delivery_id) is None:
                raise NotFoundError(f"no webhook delivery {delivery_id}")
            await repository.redeliver(delivery_id, self.engine.clock.now())
            delivery = await repository.get_delivery(delivery_id)
            assert delivery is not None
            return delivery

        return await self._write(redeliver)

    async def webhooks(self, user: User) -> list[Webhook]:
        self._require_admin(user)
        async with self.engine.db.read() as session:
            return await WebhookRepository(session).all()

    async def deliveries(
        self, user: User, webhook_id: str, first: int, before: int | None
    ) -> tuple[list[WebhookDelivery], bool, dict[str, list[WebhookAttempt]]]:
        """A page of the webhook's delivery log, newest event first: the deliveries, whether more follow,
        and each one's attempts."""
        self._require_admin(user)
        check_first(first)
        async with self.engine.db.read() as session:
            repository = WebhookRepository(session)
            await self._get(repository, webhook_id)
            page = await repository.deliveries(webhook_id, before, first + 1)
            attempts = await repository.attempts(d.id for d in page[:first])
        return page[:first], len(page) > first, attempts

    @staticmethod
    async def _get(repository: WebhookRepository, webhook_id: str) -> Webhook:
        webhook = await repository.get(webhook_id)
        if webhook is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        return webhook

    async def _check_url(self, url: str) -> None:
        await check_url(url, self.host_policy)


async def check_url(url: str, host_policy: HostPolicy, field: str = "url") -> None:
    """Refuse (``ValidationError`` on ``field``) a URL Stepwise would not send to: not http(s), with
    credentials, or to an address the host policy denies (webhooks; action approvals' callbacks)."""

    def refused(message: str, code: str) -> ValidationError:
        return ValidationError(f"{field}: {message}", [FieldError(field, message, code)])

    parts = urlsplit(url)
    if len(url) > MAX_URL_LENGTH or parts.scheme not in ("http", "https") or not parts.hostname:
        raise refused(f"an http or https URL of at most {MAX_URL_LENGTH} characters", "INVALID_URL")
    if parts.username or parts.password:
        raise refused("credentials do not belong in the URL; verify the signature instead", "INVALID_URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        await checked_addresses(parts.hostname, port, host_policy)
    except ValueError as exc:  # a port out of range
        raise refused(str(exc), "INVALID_URL") from exc
    except ExecutionFailedError as exc:
        raise refused(exc.message, "HOST_REFUSED" if exc.non_retryable else "HOST_UNRESOLVED") from exc
