"""How the web app is served: redirects, the one page for every /app/ path, fingerprinted immutable assets,
gzip, and a Content-Security-Policy that allows only this origin."""

from __future__ import annotations

import re

import httpx
from starlette.applications import Starlette

from server.webapp import CONTENT_SECURITY_POLICY, WEB_DIR, fingerprint, web_routes


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=Starlette(routes=web_routes())), base_url="http://t")


async def test_the_root_redirects_to_the_app() -> None:
    async with client() as http:
        for path in ("/", "/app"):
            response = await http.get(path)
            assert response.status_code == 302
            assert response.headers["location"] == "/app/"


async def test_every_app_path_is_the_page_with_its_policy_and_fingerprinted_assets() -> None:
    async with client() as http:
        for path in ("/app/", "/app/steps/some-id", "/app/tasks/x?y=1"):
            response = await http.get(path)
            assert response.status_code == 200
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert response.headers["cache-control"] == "no-cache"
            assert f"/app/assets/{fingerprint()}/src/main.js" in response.text
            assert "<script>" not in response.text and "style=" not in response.text  # nothing inline
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY


async def test_assets_are_immutable_under_their_fingerprint_and_compressed() -> None:
    async with client() as http:
        page = (await http.get("/app/")).text
        [main] = re.findall(r'src="([^"]+main\.js)"', page)
        response = await http.get(main, headers={"accept-encoding": "gzip"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["content-encoding"] == "gzip"
        assert response.text == (WEB_DIR / "src" / "main.js").read_text()
        stale = await http.get("/app/assets/0000000000000000/src/main.js")
        assert stale.status_code == 200 and stale.headers["cache-control"] == "no-store"


async def test_only_the_apps_assets_are_served() -> None:
    async with client() as http:
        version = fingerprint()
        refused = ("vendor.sh", "README.md", "index.html", "../server/app.py", "%2e%2e/pyproject.toml",
                   "%2e%2e/server/static/graphiql/graphiql.min.js", "nothing.js")  # fmt: skip
        for path in refused:
            assert (await http.get(f"/app/assets/{version}/{path}")).status_code == 404, path
