#!/usr/bin/env bash
# Runs the demo behind a real nginx, with the config in this folder:
#   demo app     127.0.0.1:8000   (uvicorn, sidecar.demo.app)
#   sidecar      127.0.0.1:9091   (totp-sidecar serve, config written to a temp dir)
#   nginx        127.0.0.1:${PORT:-8080}  (nginx.conf + totp-sidecar*.conf + snippets/)
# From the repository root after `make demo` (or any install into .venv):
#   deploy/nginx/run-demo.sh            # VENV=path/to/venv NGINX=/path/to/nginx PORT=8080
# Ctrl+C stops all three; the temp dir (SQLite database, logs) is removed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
PORT="${PORT:-8080}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
[ -x "$PY" ] || { echo "run-demo: $PY not found (run 'make demo' or set VENV)" >&2; exit 1; }
[ -x "$NGINX" ] || { echo "run-demo: nginx not found (install it or set NGINX)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/totp-sidecar-nginx-demo.XXXXXX")"
pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The sidecar's config: fresh random keys each run, SQLite in the temp dir.
"$PY" - "$work/config.yaml" "$work/sidecar.db" <<'PYEOF'
import secrets, sys, yaml
path, db = sys.argv[1], sys.argv[2]
config = {
    "server": {"host": "127.0.0.1", "port": 9091, "log_level": "warning"},
    "totp": {"issuer": "Demo App"},
    "primary": {"resolver": "introspect", "session_cookies": ["demo_session"],
                "introspect": {"url": "http://127.0.0.1:8000/api/me"}},
    "secrets": {"signing_keys": [secrets.token_urlsafe(48)],
                "hash_key": secrets.token_urlsafe(48),
                "encryption_keys": [secrets.token_urlsafe(48)]},
    "storage": {"sqlite": {"path": db}},
    "rules": [{"path": "/healthz", "level": "bypass"},
              {"users": ["carol"], "level": "required"}],
    "support_contact": "it-help@example.com",
}
with open(path, "w", encoding="utf-8") as f:
    yaml.safe_dump(config, f)
PYEOF

# nginx's prefix: this folder's files, with the listen line bound to 127.0.0.1:$PORT.
conf="$work/nginx"
mkdir -p "$conf"
cp "$here/nginx.conf" "$here/totp-sidecar-http.conf" "$here/totp-sidecar-upstreams.conf" "$conf/"
cp -R "$here/snippets" "$conf/snippets"
sed -E "s/^([[:space:]]*)listen 8080;/\1listen 127.0.0.1:$PORT;/" "$here/totp-sidecar.conf" \
    > "$conf/totp-sidecar.conf"
"$NGINX" -q -t -p "$conf/" -c "$conf/nginx.conf" -e "$conf/error.log"

"$PY" -m uvicorn --factory sidecar.demo.app:create_demo_app \
    --host 127.0.0.1 --port 8000 --log-level warning --no-access-log &
pids+=($!)
"$PY" -m sidecar serve --config "$work/config.yaml" &
pids+=($!)

wait_for() {  # wait_for NAME URL: up to 15 s
    for _ in $(seq 150); do
        if "$PY" -c 'import sys, httpx; httpx.get(sys.argv[1], timeout=1).raise_for_status()' \
            "$2" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "run-demo: $1 did not start ($2)" >&2
    exit 1
}
wait_for "demo app" http://127.0.0.1:8000/healthz
wait_for "sidecar" http://127.0.0.1:9091/healthz

"$NGINX" -p "$conf/" -c "$conf/nginx.conf" -e "$conf/error.log" &
pids+=($!)
wait_for "nginx" "http://127.0.0.1:$PORT/healthz"

cat <<TXT

totp-sidecar demo behind nginx is running.

  Open   http://127.0.0.1:$PORT/   in a browser.
  Users: alice / alice-password, bob / bob-password,
         carol / carol-password (2FA required by a rule)
  Sign in, open /_2fa/settings, turn 2FA on, then sign out and in again.
  nginx files and logs: $conf
  Press Ctrl+C to stop.

TXT

wait -n "${pids[@]}"   # returns when any of the three stops; the trap stops the others
echo "run-demo: a process stopped; shutting down" >&2
exit 1
