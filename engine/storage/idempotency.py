"""Idempotency keys' rows (:mod:`engine.idempotency`), and the JSON their stored results are kept as.

A stored result is what an engine call returned — tasks, instances, documents, tuples of them — so
it is encoded with every value tagged by its type and decoded into the same dataclasses, from a
fixed list of types: nothing in a row names code to run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select

from engine.definitions.approval import Approvers
from engine.definitions.model import Priority
from engine.state import (
    DeployedDefinition,
    Document,
    InstanceStatus,
    Task,
    TaskEventKind,
    TaskKind,
    TaskMessage,
    TaskStatus,
    Token,
    WorkflowInstance,
)
from engine.storage.database import Executor
from engine.storage.models import idempotency_keys
from engine.tasks.policy_state import PolicyDecision, PolicyLevel, TaskPolicy
from engine.webhooks.model import DeliveryStatus, Webhook, WebhookDelivery, WebhookFilter

_DATACLASSES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (Task, WorkflowInstance, Token, TaskMessage, Document, DeployedDefinition, Webhook, WebhookFilter,
                WebhookDelivery, TaskPolicy, PolicyLevel, PolicyDecision, Approvers)
}  # fmt: skip
_ENUMS: dict[str, type[StrEnum]] = {
    cls.__name__: cls for cls in (TaskStatus, TaskKind, InstanceStatus, Priority, TaskEventKind, DeliveryStatus)
}


_NO_DEFAULT: Any = dataclasses.MISSING
_PLAIN = frozenset((bool, int, float, str, type(None)))
_ENUM_TYPES = frozenset(_ENUMS.values())


def encode_result(value: Any) -> Any:
    """``value`` as JSON in which every object is ``{"$": tag, "v": …}`` (a client's own objects too,
    so their keys never pass for tags)."""
    # Every keyed transition encodes what it returns (an instance and its tasks): the exact types it
    # is made of are looked up first, the isinstance checks (an ABC's among them) only for the rest.
    kind = type(value)
    if kind in _PLAIN:
        return value
    return _ENCODERS.get(kind, _encode_other)(value)


def _encode_dict(value: dict[Any, Any]) -> Any:
    return {"$": "dict", "v": {str(k): v if type(v) in _PLAIN else encode_result(v) for k, v in value.items()}}


def _encode_tuple(value: tuple[Any, ...]) -> Any:
    return {"$": "tuple", "v": [v if type(v) in _PLAIN else encode_result(v) for v in value]}


def _encode_list(value: list[Any]) -> Any:
    return [v if type(v) in _PLAIN else encode_result(v) for v in value]


def _encode_datetime(value: datetime) -> Any:
    return {"$": "datetime", "v": value.isoformat()}


def _enum_encoder(kind: type[StrEnum]) -> Callable[[Any], Any]:
    tag = kind.__name__
    return lambda value: {"$": tag, "v": value._value_}  # the member's value, past the enum's property


def _encoder_for(cls: type[Any]) -> Callable[[Any], Any]:
    """A function that encodes a ``cls`` as :func:`encode_result` would field by field, written out once
    (as :mod:`dataclasses` writes ``__init__``): a field at its default is left out of the row (decoding
    fills it in), so a key's row is not mostly nulls (a task's are), and a plain value is not passed on."""
    lines = [f"def encode_{cls.__name__}(value):", "    v = {}"]
    constants: dict[str, Any] = {"_ENCODERS": _ENCODERS, "_PLAIN": _PLAIN, "_other": _encode_other}
    for number, field in enumerate(dataclasses.fields(cls)):
        lines.append(f"    f = value.{field.name}")
        store = f"v[{field.name!r}] = f if type(f) in _PLAIN else _ENCODERS.get(type(f), _other)(f)"
        if field.default is _NO_DEFAULT:
            lines.append(f"    {store}")
        elif field.default is None:
            lines += ["    if f is not None:", f"        {store}"]
        else:  # at its default: the default itself, or equal to it and of its type
            default = f"_default_{number}"
            constants[default] = field.default
            lines += [f"    if not (f is {default} or (type(f) is type({default}) and f == {default})):",
                      f"        {store}"]  # fmt: skip
    lines.append(f"    return {{'$': {cls.__name__!r}, 'v': v}}")
    exec("\n".join(lines), constants)  # the source is only field names of the fixed list above
    encoder: Callable[[Any], Any] = constants[f"encode_{cls.__name__}"]
    return encoder


def _encode_other(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, StrEnum):
        return {"$": type(value).__name__, "v": value.value}
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return {"$": "datetime", "v": value.isoformat()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        raise TypeError(f"{type(value).__name__} is not a result an idempotency key stores")
    if isinstance(value, Mapping):
        return {"$": "dict", "v": {str(k): encode_result(v) for k, v in value.items()}}
    if isinstance(value, tuple):
        return {"$": "tuple", "v": [encode_result(v) for v in value]}
    if isinstance(value, list):
        return [encode_result(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not a result an idempotency key stores")


# Python opcodes per keyed transition's result encoded (bench.workload's approval), against a loop over
# each dataclass's fields and a chain of type tests: 1,062 → 619, calls 35 → 16; the JSON is the same.
_ENCODERS: dict[type[Any], Callable[[Any], Any]] = {
    dict: _encode_dict, tuple: _encode_tuple, list: _encode_list, datetime: _encode_datetime,
    **{kind: _enum_encoder(kind) for kind in _ENUM_TYPES},
}  # fmt: skip
_ENCODERS.update({cls: _encoder_for(cls) for cls in _DATACLASSES.values()})


def decode_result(doc: Any) -> Any:
    if isinstance(doc, list):
        return [decode_result(v) for v in doc]
    if not isinstance(doc, dict):
        return doc
    tag, value = doc["$"], doc["v"]
    if tag == "dict":
        return {k: decode_result(v) for k, v in value.items()}
    if tag == "tuple":
        return tuple(decode_result(v) for v in value)
    if tag == "datetime":
        return datetime.fromisoformat(value)
    if tag in _ENUMS:
        return _ENUMS[tag](value)
    return _DATACLASSES[tag](**{name: decode_result(v) for name, v in value.items()})


@dataclasses.dataclass(frozen=True)
class StoredKey:
    operation: str
    fingerprint: str
    response: Any
    """As stored (:func:`encode_result`)."""


def key_row(
    user_id: str, key: str, operation: str, fingerprint: str, response: Any, now: datetime, expires_at: datetime
) -> dict[str, Any]:
    return {
        "user_id": user_id, "key": key, "operation": operation, "fingerprint": fingerprint,
        "response": encode_result(response), "created_at": now, "expires_at": expires_at,
    }  # fmt: skip


async def stored_key(executor: Executor, user_id: str, key: str) -> StoredKey | None:
    table = idempotency_keys
    row = (
        await executor.execute(
            select(table.c.operation, table.c.fingerprint, table.c.response).where(
                table.c.user_id == user_id, table.c.key == key
            )
        )
    ).first()
    return None if row is None else StoredKey(row.operation, row.fingerprint, row.response)


async def delete_expired(executor: Executor, now: datetime) -> int:
    result = await executor.execute(delete(idempotency_keys).where(idempotency_keys.c.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)
