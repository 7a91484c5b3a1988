"""``GET /files/documents/{id}``: download an uploaded document (what ``Document.url`` points at).

Same bearer authentication as ``/graphql`` and the same visibility rule as the document's task: a
missing token or a bad one is 401, a document the user may not see is 404 exactly like one that
does not exist. The blob streams with its stored (sniffed) content type as an attachment, with
``nosniff`` and a sandboxing CSP so a browser never renders an uploaded file as part of this site.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from engine import AuthenticationError, NotFoundError, Services, UnavailableError
from server.auth import authenticate
from server.settings import Settings

log = logging.getLogger(__name__)

DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "private, no-store",
}


def _unauthorized(message: str) -> Response:
    return PlainTextResponse(message, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def document_routes(services: Services, settings: Settings) -> list[Route]:
    engine, service = services.engine, services.documents
    assert service is not None, "an app that serves documents has a blob store"
    blobs = service.blobs

    async def download(request: Request) -> Response:
        try:
            user = await authenticate(engine, settings, request.headers.get("authorization"))
        except AuthenticationError as exc:
            return _unauthorized(exc.message)
        except UnavailableError as exc:
            return PlainTextResponse(exc.message, status_code=503, headers={"Retry-After": "5"})
        if user is None:
            return _unauthorized("authentication required: send 'Authorization: Bearer <token>'")
        document_id = request.path_params["document_id"]
        try:
            document = await service.visible_document(user, document_id)
        except NotFoundError as exc:
            return PlainTextResponse(exc.message, status_code=404)
        path = blobs.path_of(document.sha256)
        if not await asyncio.to_thread(path.is_file):
            log.error("document %s: blob %s is missing from %s", document.id, document.sha256, blobs.root)
            return PlainTextResponse("the document's content is missing", status_code=500)
        return FileResponse(path, media_type=document.content_type, filename=document.filename,
                            headers=DOWNLOAD_HEADERS)  # fmt: skip

    return [Route("/files/documents/{document_id}", download, methods=["GET"])]
