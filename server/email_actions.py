"""The pages behind approve-by-email links (engine.tasks.email_actions): ``/email-actions/{approve,reject,open}``.

``GET ?token=…`` shows what the link will do and changes nothing (mail scanners fetch links); its form
``POST``s the token back, and the task is decided as the link's user. Refusals are pages that say why.
Rendered by the server with Jinja2 (autoescaped), styled by our own stylesheet, under a
Content-Security-Policy that allows nothing but it and a form posting to this origin; the token is in the
URL, so no page sends a ``Referer`` and none is cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from engine import (
    EmailAction,
    EmailActionService,
    NotFoundError,
    Services,
    StepwiseError,
    User,
)
from server.auth import authenticate
from server.settings import Settings

ASSETS = Path(__file__).resolve().parent / "static" / "email_actions"
_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(ASSETS), autoescape=True)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STATUS = {"UNAUTHENTICATED": 401, "LINK_INVALID": 400, "LINK_OTHER_USER": 403, "LINK_USED": 410, "LINK_EXPIRED": 410}
_DONE = {EmailAction.APPROVE: "Approved", EmailAction.REJECT: "Rejected"}


def _page(status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_TEMPLATES.get_template("page.html").render(**values), status_code=status, headers=HEADERS)


def _refused(exc: StepwiseError) -> HTMLResponse:
    status = _STATUS.get(exc.code, 404 if isinstance(exc, NotFoundError) else 409)
    return _page(status, heading="This link cannot be used", message=exc.message, tone="refused")


def email_action_routes(services: Services, settings: Settings) -> list[BaseRoute]:
    async def signed_in(request: Request) -> User | None:
        """Who the request's credentials name, if it carries any: a link refuses to act for anyone else."""
        return await authenticate(services.engine, settings, request.headers.get("authorization"))

    def service() -> EmailActionService:
        if services.email_actions is None:
            raise NotFoundError("approve-by-email links are not enabled on this server")
        return services.email_actions

    def action_of(request: Request) -> EmailAction | None:
        try:
            return EmailAction(request.path_params["action"])
        except ValueError:
            return None

    async def show(request: Request) -> Response:
        action = action_of(request)
        if action is None:
            return _refused(NotFoundError("no such page"))
        token = request.query_params.get("token", "")
        try:
            page = await service().page(token, await signed_in(request))
        except StepwiseError as exc:
            return _refused(exc)
        decisions = [d for d in page.decisions if action is EmailAction.OPEN or d is action]
        if decisions:
            message = f"Signed in by this link as {page.user.name}. Confirm to decide the task."
        else:
            message = f"This task cannot be decided from this link: {page.why_not or 'open it in Stepwise'}."
        return _page(heading="Confirm your decision" if decisions else "Open the task", task=page.task,
                     user=page.user, decisions=decisions, token=token, chosen=action.value, message=message,
                     tone="")  # fmt: skip

    async def act(request: Request) -> Response:
        action = action_of(request)
        if action is None:
            return _refused(NotFoundError("no such page"))
        form = await request.form()
        token = form.get("token")
        try:
            task = await service().decide(token if isinstance(token, str) else "", action, await signed_in(request))
        except StepwiseError as exc:
            return _refused(exc)
        return _page(heading=_DONE.get(action, "Done"), task=task, tone="done",
                     message="Thank you: the workflow goes on. This link will not work again.")  # fmt: skip

    async def stylesheet(request: Request) -> Response:
        return FileResponse(ASSETS / "style.css", media_type="text/css", headers={"X-Content-Type-Options": "nosniff"})

    return [
        Route("/email-actions/assets/style.css", stylesheet, methods=["GET"]),
        Route("/email-actions/{action}", show, methods=["GET"]),
        Route("/email-actions/{action}", act, methods=["POST"]),
    ]
