"""GraphiQL served entirely from this server: no CDN, no external URL.

The browser assets (GraphiQL 3 UMD build, React 18 UMD production builds) are vendored under
``server/static/graphiql/`` (see the README there) and mounted at :data:`ASSETS_PATH` by
:func:`graphiql_assets_mount`. :func:`graphiql_html` renders the page that loads them.

Authentication: the user types ``{"Authorization": "Bearer <JWT>"}`` into GraphiQL's *Headers* editor (persisted in
local storage). The page lower-cases header names before handing them to GraphiQL's fetcher, so HTTP requests carry
``authorization: Bearer …`` and WebSocket subscriptions send ``{"authorization": "Bearer …"}`` as the
``connection_init`` payload (GraphiQL's ``createFetcher`` uses the request headers as ``connectionParams``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

ASSETS_PATH = "/graphiql-assets"
"""URL prefix under which the vendored GraphiQL assets are served."""

STATIC_DIR = Path(__file__).resolve().parent / "static" / "graphiql"
"""Directory holding the vendored GraphiQL, React and ReactDOM bundles."""

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Stepwise GraphiQL</title>
  <style>
    html, body {{ height: 100%; margin: 0; }}
    #graphiql {{ height: 100vh; }}
  </style>
  <link rel="stylesheet" href="{prefix}/graphiql.min.css">
  <script src="{prefix}/react.production.min.js"></script>
  <script src="{prefix}/react-dom.production.min.js"></script>
  <script src="{prefix}/graphiql.min.js"></script>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script>
    (function () {{
      var url = new URL({endpoint}, window.location.href);
      var subscriptionUrl = new URL(url.href);
      subscriptionUrl.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      var baseFetcher = GraphiQL.createFetcher({{
        url: url.href,
        subscriptionUrl: subscriptionUrl.href,
      }});
      // Header names are lower-cased so that the WebSocket connectionParams (built from the same headers)
      // read {{"authorization": "Bearer ..."}}.
      function fetcher(params, opts) {{
        var given = (opts && opts.headers) || {{}};
        var headers = {{}};
        Object.keys(given).forEach(function (name) {{
          headers[name.toLowerCase()] = given[name];
        }});
        return baseFetcher(params, Object.assign({{}}, opts, {{ headers: headers }}));
      }}
      ReactDOM.createRoot(document.getElementById("graphiql")).render(
        React.createElement(GraphiQL, {{
          fetcher: fetcher,
          isHeadersEditorEnabled: true,
          shouldPersistHeaders: true,
        }})
      );
    }})();
  </script>
</body>
</html>
"""


def graphiql_assets_mount() -> Mount:
    """Return the route serving the vendored GraphiQL assets at :data:`ASSETS_PATH`."""
    return Mount(ASSETS_PATH, app=StaticFiles(directory=STATIC_DIR), name="graphiql-assets")


def graphiql_html(endpoint: str, assets_prefix: str = ASSETS_PATH) -> str:
    """Render the GraphiQL page for ``endpoint`` (resolved against ``window.location``).

    Queries and mutations go over HTTP(S) to ``endpoint``; subscriptions over WS(S) to the same path using the
    ``graphql-transport-ws`` protocol. Every asset is loaded from ``assets_prefix`` on this server.
    """
    # json.dumps gives a valid JS string literal; escaping "<" keeps "</script>" out of the inline script.
    endpoint_js = json.dumps(endpoint).replace("<", "\\u003c")
    prefix = html.escape(assets_prefix.rstrip("/"), quote=True)
    return _PAGE.format(prefix=prefix, endpoint=endpoint_js)
