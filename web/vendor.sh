#!/usr/bin/env bash
# Re-vendor the web app's libraries from npm into web/vendor/ and record what was taken in web/vendor/VERSIONS.
# Needs npm (Node.js) only when run by a person refreshing the pins; `make run` and `make test` never run it.
#   web/vendor.sh                  # the versions pinned below
#   PREACT=10 HTM=3 GRAPHQL_WS=6 web/vendor.sh   # the newest release of each major line, then update the pins
set -euo pipefail
PREACT=${PREACT:-10.29.8}
HTM=${HTM:-3.1.1}
GRAPHQL_WS=${GRAPHQL_WS:-6.4.2}

here=$(cd "$(dirname "$0")" && pwd)
out="$here/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --json "preact@$PREACT" "htm@$HTM" "graphql-ws@$GRAPHQL_WS" > packed.json
for f in *.tgz; do mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done

rm -rf "$out" && mkdir -p "$out"
p=$(echo preact-*/package) h=$(echo htm-*/package) g=$(echo graphql-ws-*/package)
cp "$p/dist/preact.module.js" "$p/LICENSE" "$out/" && mv "$out/LICENSE" "$out/preact.LICENSE"
# The one change to any vendored file: hooks import the bare specifier "preact", which a browser resolves only
# through an import map (an inline script our Content-Security-Policy refuses); point it at the file beside it.
sed 's|from"preact"|from"./preact.module.js"|g; s|from "preact"|from "./preact.module.js"|g' \
  "$p/hooks/dist/hooks.module.js" > "$out/hooks.module.js"
cp "$h/dist/htm.module.js" "$out/" && cp "$h/LICENSE" "$out/htm.LICENSE"
cp "$g/dist/client.js" "$out/graphql-ws.js" && cp "$g"/dist/common-*.js "$out/" && cp "$g/LICENSE.md" "$out/graphql-ws.LICENSE"
if grep -lE "^(import|export)[^;]*from *['\"][^./]" "$out"/*.js; then echo "a vendored file still imports a bare specifier" >&2; exit 1; fi

python3 - "$out/VERSIONS" packed.json <<'PY'
import json, sys
packed = json.load(open(sys.argv[2]))
with open(sys.argv[1], "w") as f:
    f.write("# package@version integrity (npm pack), written by web/vendor.sh\n")
    for p in packed:
        f.write(f"{p['name']}@{p['version']} {p['integrity']}\n")
PY
cat "$out/VERSIONS"
