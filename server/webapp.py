"""The web app (``web/``) served at ``/app/``: native ES modules with no build step (see web/README.md).

- ``/`` and ``/app`` redirect to ``/app/``; every ``/app/…`` path that is not an asset answers the one page
  (``web/index.html``), whose router reads the path, so a reload or a shared link opens the same screen.
- Assets live under ``/app/assets/<fingerprint>/``: the fingerprint is a hash of every file ``web/`` serves,
  computed at start-up, so a changed file gets a new URL and the old one may be cached for a year. The page
  itself is ``no-cache``. Modules import each other by relative paths and so stay under the same fingerprint.
- Every answer carries a Content-Security-Policy that allows only this origin: no inline script or style,
  no other host, no framing. The app is written to work under it (the browser tests check it does).
- Answers are gzip-compressed when the client accepts it (the bench measures the bytes shipped).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
"""The app's source, served as it is."""

SERVED_SUFFIXES = frozenset({".js", ".css", ".svg", ".png", ".ico"})
"""What an asset URL may name: never the vendoring script, the README or the page template itself."""

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:",
    "font-src 'self'", "connect-src 'self'", "manifest-src 'self'", "base-uri 'none'", "form-action 'none'",
    "frame-ancestors 'none'",
))  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
IMMUTABLE = "public, max-age=31536000, immutable"


def _served_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SERVED_SUFFIXES)


def fingerprint(root: Path = WEB_DIR) -> str:
    """A hash of every served file's path and content: the assets' URL prefix changes with any of them."""
    digest = hashlib.sha256()
    for path in _served_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class WebApp:
    def __init__(self, root: Path = WEB_DIR) -> None:
        self.root = root
        self.version = fingerprint(root)
        self.assets = f"/app/assets/{self.version}"
        # Every module is announced up front: the browser fetches the whole graph at once rather than level
        # by level as each import is parsed.
        preload = "\n".join(
            f'  <link rel="modulepreload" href="{self.assets}/{path.relative_to(root).as_posix()}">'
            for path in _served_files(root)
            if path.suffix == ".js"
        )
        page = (root / "index.html").read_text().replace("{{PRELOAD}}", preload)
        self.page = page.replace("{{ASSETS}}", self.assets)

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    async def asset(self, request: Request) -> Response:
        relative = Path(request.path_params["path"])
        path = (self.root / relative).resolve()
        if path.suffix not in SERVED_SUFFIXES or not path.is_relative_to(self.root) or not path.is_file():
            return Response("not found", status_code=404, headers=SECURITY_HEADERS)
        # An old page asking for its own fingerprint gets today's file, never cached: the page reloads soon.
        cache = IMMUTABLE if request.path_params["version"] == self.version else "no-store"
        media_type = "text/javascript" if path.suffix == ".js" else None
        return FileResponse(path, media_type=media_type, headers={**SECURITY_HEADERS, "Cache-Control": cache})


def web_routes(root: Path = WEB_DIR) -> list[BaseRoute]:
    web = WebApp(root)
    app_routes = Router(
        routes=[
            Route("/assets/{version}/{path:path}", web.asset, methods=["GET", "HEAD"]),
            Route("/{rest:path}", web.index, methods=["GET", "HEAD"]),
        ]
    )
    return [
        Route("/", lambda request: RedirectResponse("/app/", status_code=302), methods=["GET", "HEAD"]),
        Route("/app", lambda request: RedirectResponse("/app/", status_code=302), methods=["GET", "HEAD"]),
        Mount("/app", app=GZipMiddleware(app_routes, minimum_size=500), name="web"),
    ]
