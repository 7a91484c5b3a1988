"""The :class:`~engine.transitions.engine.Engine`'s definition half: validate, deploy, and the per-process cache
of deployed definitions every transition reads its definition from.

A base class of ``Engine`` rather than an object it holds, so that a transition's definition lookup stays one
method call on the engine (it is on every transition's path).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy.exc import IntegrityError

from engine.calendars import Calendars
from engine.clock import Clock
from engine.definitions.model import WorkflowDefinition
from engine.definitions.parsing import parse_definition
from engine.definitions.registry import Registry
from engine.definitions.validation import calendar_problems, validate_definition
from engine.errors import ConcurrentUpdateError, DefinitionError, NotFoundError
from engine.idempotency import Guard, IdempotencyKeys
from engine.state import DeployedDefinition
from engine.storage.database import Database, Executor
from engine.storage.deferred import TransitionConnection
from engine.storage.instances import DefinitionRepository
from engine.storage.models import idempotency_keys
from engine.storage.postgres.search_indexes import ensure_search_indexes
from engine.transitions.variables import needs_starter, reads_starter_details

log = logging.getLogger(__name__)
_RACE_RETRIES = 8


class EngineDefinitions:
    """Deploys definitions and caches the deployed ones (they never change once deployed)."""

    db: Database
    registry: Registry
    clock: Clock
    calendars: Calendars
    idempotency: IdempotencyKeys

    def __init__(self) -> None:
        self._definitions: dict[tuple[str, int], WorkflowDefinition] = {}
        self._reads_starter: dict[tuple[str, int], bool] = {}
        self._latest_versions: dict[str, int] = {}
        """The latest version of each key this process has seen (PostgreSQL: see :meth:`_latest`)."""
        self._index_builds: set[asyncio.Task[None]] = set()

    def validate(self, document: Mapping[str, Any] | WorkflowDefinition) -> WorkflowDefinition:
        """Parse and validate a definition without deploying it."""
        definition = document if isinstance(document, WorkflowDefinition) else parse_definition(document)
        validate_definition(definition, self.registry)
        unknown = calendar_problems(definition, self.calendars.names())
        if unknown:
            raise DefinitionError(f"definition {definition.key!r} is invalid: {unknown[0].message}", unknown)
        return definition

    async def deploy(
        self, document: Mapping[str, Any] | WorkflowDefinition, deployed_by: str | None = None
    ) -> tuple[DeployedDefinition, bool]:
        """Deploy as the next version of its key; returns ``(deployed, created)``.

        A document identical to the latest version deploys nothing and returns that version, so
        loading the same definitions twice changes nothing. On PostgreSQL a new version's ``searchable``
        paths get their indexes after this returns, built in the background
        (:mod:`engine.storage.postgres.search_indexes`; :meth:`index_builds_done` waits for them).
        """
        definition = self.validate(document)
        guard = self.idempotency.take()
        return await self.idempotency.guarded(guard, lambda: self._deploy(definition, deployed_by, guard))

    async def _deploy(
        self, definition: WorkflowDefinition, deployed_by: str | None, guard: Guard | None
    ) -> tuple[DeployedDefinition, bool]:
        canonical = definition.to_json()
        for _ in range(_RACE_RETRIES):
            try:
                async with self.db.transaction() as session:
                    repository = DefinitionRepository(session)
                    latest = await repository.get(definition.key)
                    if latest is not None and dict(latest.document) == canonical:
                        if guard is not None:
                            row = self.idempotency.row(guard, (latest, False), self.clock.now())
                            await session.execute(idempotency_keys.insert().values(row))
                        return latest, False
                    deployed = DeployedDefinition(
                        key=definition.key,
                        version=(latest.version + 1) if latest else 1,
                        title=definition.title,
                        document=canonical,
                        deployed_at=self.clock.now(),
                        deployed_by=deployed_by,
                    )
                    await repository.insert(deployed)
                    if guard is not None:
                        row = self.idempotency.row(guard, (deployed, True), deployed.deployed_at)
                        await session.execute(idempotency_keys.insert().values(row))
                self._latest_versions[deployed.key] = deployed.version
                if definition.searchable and not self.db.is_sqlite:
                    # Not awaited: on a large table a build outlasts the request, whose deadline would
                    # cancel it half-way (an invalid index) and answer a committed deploy as failed.
                    build = asyncio.create_task(self._build_search_indexes(definition))
                    self._index_builds.add(build)
                    build.add_done_callback(self._index_builds.discard)
                return deployed, True
            except IntegrityError:  # another process deployed the same version number first
                continue
        raise ConcurrentUpdateError(f"could not deploy {definition.key!r}: too many concurrent deploys")

    async def index_builds_done(self) -> None:
        """Wait for the searchable-index builds deploys started (they log their failures)."""
        await asyncio.gather(*self._index_builds)

    async def _build_search_indexes(self, definition: WorkflowDefinition) -> None:
        """The deploy has committed: a failed build is reported, not raised (the client would read it as
        a failed deploy), and the next deploy naming the paths builds what is missing."""
        try:
            await ensure_search_indexes(self.db, definition.searchable)
        except Exception:
            log.exception("definition %s: its searchable indexes were not built; deploy it again to retry",
                          definition.key)  # fmt: skip
        else:
            log.info("definition %s: its searchable indexes are built", definition.key)

    async def definition(
        self, key: str, version: int | None = None, executor: Executor | None = None
    ) -> WorkflowDefinition:
        """A deployed definition (the latest version unless one is named); cached, they never change.

        A cold cache reads it on ``executor`` when given: work that already holds a connection (a
        query's shared read session) must not wait for a second one (see ``Database.spare_read``)."""
        if version is not None and (key, version) in self._definitions:
            return self._definitions[(key, version)]
        if executor is not None:
            deployed = await DefinitionRepository(executor).get(key, version)
        else:
            async with self.db.read() as session:
                deployed = await DefinitionRepository(session).get(key, version)
        if deployed is None:
            suffix = f" version {version}" if version is not None else ""
            raise NotFoundError(f"no workflow definition {key!r}{suffix}")
        return self._cache(deployed)

    def _cache(self, deployed: DeployedDefinition) -> WorkflowDefinition:
        cached = self._definitions.get((deployed.key, deployed.version))
        if cached is None:
            cached = replace(parse_definition(deployed.document), version=deployed.version)
            self._reads_starter[(deployed.key, deployed.version)] = reads_starter_details(cached)
            self._definitions[(deployed.key, deployed.version)] = cached
        return cached

    async def _latest(self, connection: TransitionConnection, key: str) -> WorkflowDefinition:
        """The latest version of ``key``, then the parsed definition from the cache (the document is
        read once per version). Any process may deploy, so the version is never trusted stale: on
        SQLite it is read every time (one indexed ``max(version)``, in-process); on PostgreSQL the
        version this process last saw is used without a read, and the start's last statement fails
        with :class:`NewerDefinitionDeployed` if a newer one exists by then (:mod:`engine.storage.postgres.finish`):
        one round trip fewer for every start, a second attempt after another process deployed."""
        version = self._latest_versions.get(key) if connection.dialect.name == "postgresql" else None
        repository = DefinitionRepository(connection)
        if version is None:
            version = await repository.latest_version(key)
        cached = self._definitions.get((key, version)) if version is not None else None
        if cached is None:
            deployed = await repository.get(key, version) if version is not None else None
            if deployed is None:
                raise NotFoundError(f"no workflow definition {key!r}")
            cached = self._cache(deployed)
        self._latest_versions[key] = cached.version
        return cached

    def _needs_starter(self, definition: WorkflowDefinition) -> bool:
        reads = self._reads_starter.get((definition.key, definition.version))
        return needs_starter(definition, self.registry, reads if reads is not None else True)
