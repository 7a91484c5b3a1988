"""Strawberry permission classes. Finer rules (who may claim, submit…) live in ``engine.tasks.permissions``
and are applied by the engine's services; this only keeps anonymous requests out."""

from __future__ import annotations

from typing import Any

from strawberry.exceptions import StrawberryGraphQLError
from strawberry.permission import BasePermission

from schema.context import Info


class IsAuthenticated(BasePermission):
    message = "authentication required: send 'Authorization: Bearer <token>'"
    error_extensions = {"code": "UNAUTHENTICATED"}

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        error = info.context.authentication_error
        if error is not None:  # say what is wrong with the token rather than that one is missing
            raise StrawberryGraphQLError(error.message, extensions=self.error_extensions)
        return info.context.viewer is not None
