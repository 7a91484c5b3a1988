"""The off-switches of the mechanisms that bend a library, or trade simplicity, for speed (docs/adr/).

Each is on unless its ``STEPWISE_FAST_*`` variable says ``false``. Off, the plain path runs: what the
code would do without the mechanism, through the libraries' public API. Both paths give the same
results; ``make test-plain`` runs the suite with every switch off so the plain path stays correct,
and a switch is the first thing to turn off when an upgrade of SQLAlchemy, graphql-core or
Strawberry breaks the mechanism behind it.

The defaults of :class:`~engine.storage.database.Database`, the server's settings and
``schema.schema.build_schema`` are :meth:`FastPaths.from_env`, so every embedding (the tests
included) honours the variables without passing anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

_VARIABLES = {
    "execution": "STEPWISE_FAST_EXECUTION",
    "driver_writes": "STEPWISE_FAST_DRIVER_WRITES",
    "remembered_instances": "STEPWISE_FAST_REMEMBERED_INSTANCES",
    "remembered_members": "STEPWISE_FAST_REMEMBERED_MEMBERS",
    "count_beside": "STEPWISE_FAST_COUNT_BESIDE",
    "webhook_client": "STEPWISE_FAST_WEBHOOK_CLIENT",
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class FastPaths:
    execution: bool = True
    """The executor completes plain fields and prefetched relations itself (``schema/execution.py``,
    docs/adr/0001-executor-shortcut.md): a 50-task inbox page 47.1 → 40.1 M instructions (round 10),
    and most of round 3's 74.2 → 56.2 M; −15 to −19% server CPU per inbox request. Off, every field
    goes through its resolver on Strawberry's own execution."""
    driver_writes: bool = True
    """A transition's two hot statements run on asyncpg's connection past SQLAlchemy's execution
    (``engine/storage/postgres/driver.py``, ``engine/storage/deferred.py``,
    docs/adr/0002-driver-bypass.md): 2.41 → 2.15 M instructions per transition (round 6, the
    statements) and 1.99 → 1.82 M (round 7, no SQLAlchemy connection around the pool's). Off, every
    statement of a transition runs on a SQLAlchemy ``AsyncConnection``."""
    remembered_instances: bool = True
    """A transition starts from what this process's last transition of the instance left
    (``engine/transitions/remembered.py``, docs/adr/0003-remembered-instances.md): 1.71 → 1.32 M
    instructions per transition, 23% less CPU. Off, every transition reads the instance first."""
    remembered_members: bool = True
    """A transition that creates an approval policy's task counts the role's or group's members as this
    process last read them, and its last statement checks they are still those
    (``engine/transitions/remembered.py``, docs/adr/0011-remembered-members.md): a quorum approval's
    start makes one round trip instead of two (figures there). Off, every such transition reads them."""
    count_beside: bool = True
    """The inbox's ``totalCount`` is counted on a spare connection while the page is read
    (``engine/storage/inbox.py``, docs/adr/0004-count-beside.md): p50 −1.0 ms, p99 −2.3 ms at 1M
    tasks. Off, the count runs after the page on the query's own connection."""
    webhook_client: bool = True
    """Webhook deliveries are POSTed through aiohttp's client (``engine/workers/webhook_http.py``,
    docs/adr/0010-webhook-client.md): client CPU per POST with twenty in flight 2.3–2.5 ms through httpx,
    0.18–0.21 ms through aiohttp (side by side, load 15–20); the dispatcher's CPU per delivered event
    2.72 → 0.58–0.63 ms (bench.webhook_delivery). Off, they go through httpx like HTTP tasks' calls."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FastPaths:
        """The switches as ``STEPWISE_FAST_*`` set them (``true``/``false``, ``1``/``0``, ``on``/``off``)."""
        source = os.environ if environ is None else environ
        values: dict[str, bool] = {}
        for name, variable in _VARIABLES.items():
            raw = source.get(variable)
            if raw is None or not raw.strip():
                continue
            word = raw.strip().lower()
            if word not in _TRUE | _FALSE:
                raise ValueError(f"{variable} must be true or false, not {raw!r}")
            values[name] = word in _TRUE
        return cls(**values)

    @classmethod
    def none(cls) -> FastPaths:
        """Every switch off: the plain path everywhere."""
        return cls(**{f.name: False for f in fields(cls)})
