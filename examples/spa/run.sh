#!/usr/bin/env bash
# Register the example single-page app with Ostiary (a public client: no secret; its origin
# may call /token, /revoke and /userinfo), then serve it on http://127.0.0.1:${PORT:-8002}.
# Run it with the same OSTIARY_* settings as `./scripts/serve` (the CLI writes to the same
# database); with SPA_CLIENT_ID set it uses that client instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
port=${PORT:-8002}
url="http://127.0.0.1:$port"
issuer=${OSTIARY_ISSUER:-http://127.0.0.1:${OSTIARY_PORT:-8000}}
if [ -z "${SPA_CLIENT_ID:-}" ]; then
    registered=$(.venv/bin/ostiary clients create --name "Example single-page app" --public \
        --grant-type authorization_code --grant-type refresh_token --scope "openid profile email" \
        --redirect-uri "$url/callback" --post-logout-redirect-uri "$url/" --cors-origin "$url" --json)
    SPA_CLIENT_ID=$(.venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["client_id"])' <<<"$registered")
    export SPA_CLIENT_ID
    echo "registered client $SPA_CLIENT_ID (ostiary clients delete $SPA_CLIENT_ID removes it)"
fi
exec .venv/bin/python examples/spa/serve.py --issuer "$issuer" --port "$port" --url "$url"
