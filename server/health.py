"""``/healthz`` and ``/readyz`` (their meaning is in docs/operations.md, "Health and readiness")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine import Database, EventHub, current_revision, head_revision
from server.shutdown import Shutdown


def health_routes(db: Database, events: EventHub, shutdown: Shutdown) -> list[Route]:
    async def healthz(request: Request) -> JSONResponse:
        """The process lives and its event loop answers: nothing else is checked."""
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        """Whether to send this process work: database reachable and at the latest migration, the
        event listener up (PostgreSQL), and not shutting down."""
        body: dict[str, object] = {}
        try:
            current = await current_revision(db)
        except Exception as exc:  # any driver error means "not ready"; the reason is the exception's type only
            body["database"] = f"unreachable ({type(exc).__name__})"
            current = None
        else:
            body["database"] = "ok"
        head = head_revision()
        body |= {"migration": current, "head": head}
        problems = [name for name, bad in (
            ("database", body["database"] != "ok"),
            ("migration", current != head),
            ("event listener", db.dialect == "postgresql" and not events.listening),
            ("shutting down", shutdown.in_progress),
        ) if bad]  # fmt: skip
        if db.dialect == "postgresql":
            body["eventListener"] = "up" if events.listening else "down"
        body["status"] = "unavailable" if problems else "ok"
        if problems:
            body["problems"] = problems
        return JSONResponse(body, status_code=503 if problems else 200)

    return [Route("/healthz", healthz), Route("/readyz", readyz)]
