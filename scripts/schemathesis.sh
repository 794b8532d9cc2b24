#!/usr/bin/env bash
# schemathesis against the demo, as a new integrator would try the API: it reads
# /api/openapi.json and sends what the document allows and what it does not, checking every answer
# against the document. Every check but positive-data acceptance (referential rules such as "an
# active method's id" cannot be written in a schema), ignored_auth included. Fails on any failure.
#   bash scripts/schemathesis.sh            (scripts/test.sh runs it; the setup script installs it)
# BYFLY_SCHEMATHESIS_SEED picks the seed (fixed by default, so a run is repeatable);
# BYFLY_SCHEMATHESIS_EXAMPLES the examples per operation (default 50).
set -euo pipefail
cd "$(dirname "$0")/.."

seed="${BYFLY_SCHEMATHESIS_SEED:-20261202}"
examples="${BYFLY_SCHEMATHESIS_EXAMPLES:-50}"
# The features of the test build (`--workspace --all-features`), so its artifacts are reused.
cargo build --locked --workspace --all-features --bin byfly-server
server="${CARGO_TARGET_DIR:-target}/debug/byfly-server"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="$(python3 -c 'import secrets, string; print("".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(64)))')"
admin="schemathesis-admin-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
"$server" demo --data-dir "$work/data" --bind "127.0.0.1:$port" --token "$token" --admin-token "$admin" \
  >"$work/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fsS "$base/api/health/live" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.2
done

run() {
  # One worker: schemathesis' coverage phase is not thread-safe under CPython 3.11 (hypothesis'
  # lambda descriptions fail with "AST constructor recursion depth mismatch" with two).
  (cd "$work" && SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$OLDPWD/tests/schemathesis" \
    python3 -m schemathesis.cli run "$base/api/openapi.json" --url "$base" \
      -H "X-API-Token: $token" -H "Authorization: Bearer $admin" \
      --checks all --exclude-checks positive_data_acceptance \
      --max-examples "$examples" --seed "$seed" --workers 1 --generation-database none \
      --no-color "$@")
}
# Revoking the source or the key its token belongs to would leave every later token route
# answering 401: `updateSource` and `revokeApiKey` (which can) run on their own, after the rest.
status=0
run --exclude-operation-id updateSource --exclude-operation-id revokeApiKey || status=$?
run --include-operation-id updateSource --include-operation-id revokeApiKey || status=$?
if [ "$status" != 0 ]; then
  echo "schemathesis found failures; the server's log:" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
