#!/usr/bin/env bash
# Register the example web app with Ostiary, then start it on http://127.0.0.1:${PORT:-8001}.
# Run it with the same OSTIARY_* settings as `./scripts/serve` (the CLI writes to the same
# database); with WEBAPP_CLIENT_ID and WEBAPP_CLIENT_SECRET set it uses that client instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
port=${PORT:-8001}
url="http://127.0.0.1:$port"
issuer=${OSTIARY_ISSUER:-http://127.0.0.1:${OSTIARY_PORT:-8000}}
if [ -z "${WEBAPP_CLIENT_ID:-}" ]; then
    registered=$(.venv/bin/ostiary clients create --name "Example web app" \
        --grant-type authorization_code --grant-type refresh_token --scope "openid profile email" \
        --redirect-uri "$url/callback" --post-logout-redirect-uri "$url/signed-out" --json)
    { read -r WEBAPP_CLIENT_ID; read -r WEBAPP_CLIENT_SECRET; } < <(
        .venv/bin/python -c 'import json, sys; c = json.load(sys.stdin); print(c["client_id"]); print(c["client_secret"])' \
            <<<"$registered")
    export WEBAPP_CLIENT_ID WEBAPP_CLIENT_SECRET
    echo "registered client $WEBAPP_CLIENT_ID (ostiary clients delete $WEBAPP_CLIENT_ID removes it)"
fi
exec .venv/bin/python examples/webapp/app.py --issuer "$issuer" --port "$port" --url "$url"
