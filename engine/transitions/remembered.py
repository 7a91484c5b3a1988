"""What this process's own transitions left each instance as, for a few seconds.

On PostgreSQL a transition first runs in autocommit: it reads the instance with its steps and open
tasks, computes, and writes everything in one last statement that checks the instance is still at
the revision read (:mod:`engine.storage.postgres.finish`). When this process committed the instance's last
transition a moment ago it knows exactly what that read would return, so the next transition starts
from it instead: one round trip and the read's decoding fewer (in the approval workload, one
driver: 23% less CPU and 15% less time per transition).

Nothing remembered can make a transition do what a fresh read would not. Its last statement checks,
besides the instance's revision, that the instance's open tasks are still the remembered ones (by id
and revision: a worker's claim changes a task outside any transition); if anything differs it
writes nothing and the transition runs again from a fresh read, as it does after any error of its
own, since the error may come from the old state. Only autocommit transitions are remembered: their
every write went through the transition (a transaction's action may write rows directly).

Entries last ``seconds`` and at most ``capacity`` are kept: long enough for a client or a chain of
steps moving one instance on, short enough that an entry another process (another API process, a
separate worker) has changed since is rarely met: that costs one attempt that writes nothing.

Remembered data keeps its objects' keys in the order this process wrote them, where a read returns
PostgreSQL's ``jsonb`` order; the order of an object's keys was never part of the data (SQLite's
reads keep the written order, PostgreSQL's do not).

What it earned (round 8, docs/adr/0003-remembered-instances.md): 1.71 → 1.32 M instructions per
transition. ``STEPWISE_FAST_REMEMBERED_INSTANCES=false`` turns it off (every transition reads first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine.storage.instances import LockedInstance


@dataclass(frozen=True)
class _Entry:
    state: LockedInstance
    kept_at: float


class RememberedInstances:
    """Instances as this process's last transition of each left them (see the module's docstring)."""

    def __init__(self, capacity: int = 1000, seconds: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.seconds = seconds
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, instance_id: str) -> LockedInstance | None:
        """The remembered state, forgotten now: a transition that starts from it keeps its result
        (:meth:`keep`) or nothing, and two concurrent ones never start from the same state."""
        entry = self._entries.pop(instance_id, None)
        if entry is None or self._clock() - entry.kept_at > self.seconds:
            return None
        return entry.state

    def keep(self, state: LockedInstance) -> None:
        """Remember ``state`` (an instance that has ended is not: nothing moves it on)."""
        self._entries.pop(state.instance.id, None)  # re-added last: the newest entry
        if self.capacity <= 0 or state.instance.status.is_final:
            return
        now = self._clock()
        self._entries[state.instance.id] = _Entry(state, now)
        while self._entries:
            oldest_id, oldest = next(iter(self._entries.items()))
            if len(self._entries) <= self.capacity and now - oldest.kept_at <= self.seconds:
                break
            del self._entries[oldest_id]

    def forget(self, instance_ids: Iterable[str]) -> None:
        for instance_id in instance_ids:
            self._entries.pop(instance_id, None)


class TaskHomes:
    """The instance of each task this process created or acted on lately (a task never moves), so an
    action on a task (engine.tasks.service) need not read the task first to find its instance: the
    next decision of an approval policy, the claim after a task appears. Bounded, oldest forgotten first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._homes: OrderedDict[str, str] = OrderedDict()

    def get(self, task_id: str) -> str | None:
        return self._homes.get(task_id)

    def note(self, task_ids: Iterable[str], instance_id: str) -> None:
        for task_id in task_ids:
            self._homes[task_id] = instance_id
        while len(self._homes) > self.capacity:
            self._homes.popitem(last=False)


class RememberedMembers:
    """Who holds each role and is in each group, as this process last read them, for a transition that
    creates a task with an approval policy (its eligible count, :mod:`engine.tasks.approvals`): on
    PostgreSQL it counts from what is remembered instead of reading, and its last statement checks that
    the members are still exactly those (:mod:`engine.storage.postgres.finish`); if not, nothing is
    written, they are forgotten, and the transition runs again and reads them. So a role that grew or
    shrank is counted as a read would count it, and a transition that creates a quorum task makes one
    round trip, as any other does.

    What it earned (docs/adr/0011-remembered-members.md): the quorum approval workload's statements per
    instance at c=16, 5.30 → 4.25 (the plain workload's: 3.17); its Python instructions about the same
    (7.16 → 7.17 M, within callgrind's ±1% here): a round trip's cost is mostly the kernel's and
    PostgreSQL's. ``STEPWISE_FAST_REMEMBERED_MEMBERS=false`` turns it off (every such transition reads them)."""

    def __init__(
        self, capacity: int = 1000, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.seconds = seconds
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[tuple[str, ...], float]] = OrderedDict()  # oldest first

    def get(self, kind: str, key: str) -> tuple[str, ...] | None:
        """The members of role (``kind`` ``"role"``) or group (``"group"``) ``key``, sorted, if remembered."""
        entry = self._entries.get((kind, key))
        if entry is None or self._clock() - entry[1] > self.seconds:
            return None
        return entry[0]

    def keep(self, kind: str, key: str, members: Iterable[str]) -> None:
        self._entries.pop((kind, key), None)
        if self.capacity <= 0:
            return
        self._entries[(kind, key)] = (tuple(sorted(members)), self._clock())
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def forget(self, memberships: Iterable[tuple[str, str]]) -> None:
        for membership in memberships:
            self._entries.pop(membership, None)
