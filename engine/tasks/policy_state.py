"""A task's approval-policy state as the engine holds it: who is shut out, the levels with their resolved
approvers, the level being decided and the decisions so far (:mod:`engine.tasks.policies` has the rules
that read it, :mod:`engine.tasks.approvals` what fills it in).

Frozen values: a decision makes a new state (``dataclasses.replace``), never changes one a task that
is remembered between transitions still holds. Stored as the task's ``policy`` JSON, in the shape
:meth:`TaskPolicy.to_json` writes and :meth:`TaskPolicy.from_json` reads back::

    {"excluded": {"alice": "starter"}, "excludes": ["starter"],
     "levels": [{"of": {"role": "approver"}, "required": 2, "rejectWhen": "any", "eligible": 3}],
     "chain": false, "level": 0,
     "decisions": [{"by": "bob", "decision": "approved", "comment": null, "at": "…", "level": 0}]}

``levels`` is absent on a task that only has ``excludes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.definitions.approval import REJECT_ANY, Approvers


@dataclass(frozen=True)
class PolicyDecision:
    """One approver's decision, at the level it was made at; ``at`` is ISO 8601 text, as stored."""

    by: str
    decision: str
    comment: str | None
    at: str
    level: int = 0
    values: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"by": self.by, "decision": self.decision, "comment": self.comment, "at": self.at,
                               "level": self.level}  # fmt: skip
        if self.values:
            doc["values"] = dict(self.values)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PolicyDecision:
        values = doc.get("values")
        return cls(by=str(doc["by"]), decision=str(doc["decision"]), comment=doc.get("comment"), at=str(doc["at"]),
                   level=int(doc.get("level", 0)), values=dict(values) if values else None)  # fmt: skip


@dataclass(frozen=True)
class PolicyLevel:
    """One level as resolved for the task: its approvers (a template already rendered to user ids),
    how many approvals settle it, when rejections do, and how many approvers were eligible when it began."""

    approvers: Approvers
    required: int = 1
    reject_when: str | int = REJECT_ANY
    eligible: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"of": self.approvers.to_json(), "required": self.required,
                               "rejectWhen": self.reject_when}  # fmt: skip
        if self.eligible is not None:
            doc["eligible"] = self.eligible
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PolicyLevel:
        of: Mapping[str, Any] = doc["of"]
        named = "role" not in of and "group" not in of
        approvers = Approvers(role=of.get("role"), group=of.get("group"),
                              users=tuple(of.get("users", ())) if named else None)  # fmt: skip
        eligible = doc.get("eligible")
        return cls(approvers=approvers, required=int(doc["required"]), reject_when=doc.get("rejectWhen", REJECT_ANY),
                   eligible=int(eligible) if eligible is not None else None)  # fmt: skip


@dataclass(frozen=True)
class TaskPolicy:
    """``excluded``: user id → the ``excludes`` rule that shuts them out. ``levels`` is None for a task
    that has ``excludes`` only (no approval policy)."""

    excluded: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    excludes: tuple[str, ...] = ()
    levels: tuple[PolicyLevel, ...] | None = None
    chain: bool = False
    level: int = 0
    decisions: tuple[PolicyDecision, ...] = ()

    @property
    def has_levels(self) -> bool:
        return self.levels is not None

    @property
    def current(self) -> PolicyLevel:
        """The level being decided (a policy with levels only)."""
        assert self.levels is not None, "a task with excludes only has no levels"
        return self.levels[self.level]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"excluded": dict(self.excluded), "excludes": list(self.excludes)}
        if self.levels is not None:
            doc.update(levels=[level.to_json() for level in self.levels], chain=self.chain, level=self.level,
                       decisions=[d.to_json() for d in self.decisions])  # fmt: skip
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TaskPolicy:
        levels = doc.get("levels")
        return cls(
            excluded=MappingProxyType({str(user): str(rule) for user, rule in doc.get("excluded", {}).items()}),
            excludes=tuple(doc.get("excludes", ())),
            levels=tuple(PolicyLevel.from_json(level) for level in levels) if levels is not None else None,
            chain=bool(doc.get("chain", False)),
            level=int(doc.get("level", 0)),
            decisions=tuple(PolicyDecision.from_json(d) for d in doc.get("decisions", ())),
        )
