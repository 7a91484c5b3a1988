"""An admin's patch for a failed system task's retry (``retryTask(patch:)``, docs/api.md).

``{"config": {...}, "data": {...}}``, both optional JSON Merge Patches (RFC 7386: an object merges
key by key, ``null`` removes a key, anything else replaces): ``config`` over the task's rendered
config at each of its later attempts (kept on the task, whose ``input`` a system task never uses
otherwise), ``data`` over the instance's data, in the retry's own transition, before the task runs
again and renders its config from it. A patch is taken as it is, never rendered as a template, and
may not carry a secret: neither a ``{{ secrets`` template nor any configured secret's value, so a
retry cannot put one where it would be stored, shown or sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import FieldError, ValidationError

PARTS = ("config", "data")
CONFIG_PATCH = "configPatch"
"""The key of a system task's ``input`` under which its config patch is kept."""


@dataclass(frozen=True)
class RetryPatch:
    config: Mapping[str, Any] | None = None
    data: Mapping[str, Any] | None = None


def checked_patch(patch: Any, secrets: Mapping[str, str]) -> RetryPatch:
    """``patch`` as a :class:`RetryPatch`, or ``ValidationError`` naming every offending field."""
    if not isinstance(patch, Mapping):
        raise ValidationError("patch must be a JSON object", [FieldError("patch", "must be a JSON object")])
    problems = [FieldError(f"patch.{key}", f"unknown part; a patch has {' and '.join(PARTS)}", "UNKNOWN_FIELD")
                for key in patch if key not in PARTS]  # fmt: skip
    for part in PARTS:
        value = patch.get(part)
        if value is not None and not isinstance(value, Mapping):
            problems.append(FieldError(f"patch.{part}", "must be a JSON object"))
    values = [value for value in secrets.values() if value]
    problems += [FieldError(path, "a patch may not carry a secret", "SECRET_NOT_ALLOWED")
                 for path in _secret_paths(patch, "patch", values)]  # fmt: skip
    if problems:
        raise ValidationError("the patch is invalid", problems)
    return RetryPatch(config=patch.get("config"), data=patch.get("data"))


def _secret_paths(value: Any, path: str, secrets: list[str]) -> list[str]:
    if isinstance(value, Mapping):
        found = [f"{path}.{key}" for key in value if _is_secret(str(key), secrets)]
        return found + [p for key, item in value.items() for p in _secret_paths(item, f"{path}.{key}", secrets)]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _secret_paths(item, f"{path}.{index}", secrets)]
    return [path] if isinstance(value, str) and _is_secret(value, secrets) else []


def _is_secret(text: str, secrets: list[str]) -> bool:
    templated = "secrets" in text and ("{{" in text or "{%" in text)  # {{ secrets.X }}, {{ x ~ secrets.X }}, …
    return templated or any(secret in text for secret in secrets)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: ``patch`` applied to ``target`` (neither is changed)."""
    if not isinstance(patch, Mapping):
        return patch
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged
