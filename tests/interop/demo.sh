#!/usr/bin/env bash
# Runs the demo (examples/demo.rs) in its real-server mode against the interop provider:
# tokens from provider.mjs, and a protected API (examples/introspection_api.rs) that
# introspects every token at the provider. Exits with the demo's status.
#
#   bash tests/interop/demo.sh                          # 2,000 requests over 12 s
#   bash tests/interop/demo.sh --seconds 3 --requests 600   # extra args go to the demo
#   TOKEN_TTL=10 bash tests/interop/demo.sh             # token lifetime, default 5 s
#   AUTH=private_key_jwt bash tests/interop/demo.sh     # client pkjwt-es256, signed with
#                                                       # tests/keys/p256.pem
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TTL="${TOKEN_TTL:-5}"

if [ ! -d "$HERE/node_modules/oidc-provider" ]; then
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd "$ROOT" && cargo build -q --example demo --example introspection_api)

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ -s "$WORK/api.err" ] && sed 's/^/# api: /' "$WORK/api.err" | tail -1
  rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for FILE REGEX: prints the first capture of REGEX in FILE, waiting up to 120 s (a
# cold Node start on a busy CI machine once took over 30 s). On a timeout it prints FILE and
# the matching .err file.
wait_for() {
  for _ in $(seq 1 1200); do
    local hit
    hit="$(sed -n "s/$2/\1/p" "$1" | head -1)"
    if [ -n "$hit" ]; then echo "$hit"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $2 in $1" >&2
  cat "$1" >&2
  cat "${1%.out}.err" >&2 2>/dev/null || true
  return 1
}

(cd "$HERE" && PORT=0 TOKEN_TTL="$TTL" exec node provider.mjs) >"$WORK/provider.out" 2>"$WORK/provider.err" &
PIDS+=($!)
ISSUER="$(wait_for "$WORK/provider.out" '^LISTENING \(http:.*\)$')"

(cd "$ROOT" && exec cargo run -q --example introspection_api -- --issuer "$ISSUER") \
  >"$WORK/api.out" 2>"$WORK/api.err" &
PIDS+=($!)
API="$(wait_for "$WORK/api.out" '^API \(http:.*\)$')"

echo "# provider $ISSUER (tokens live $TTL s), API $API"
cd "$ROOT"
case "${AUTH:-basic}" in
  basic)
    export OAUTH_CLIENT_SECRET=basic-secret-1
    CLIENT=(--client-id basic-client)
    ;;
  private_key_jwt)
    unset OAUTH_CLIENT_SECRET
    CLIENT=(--client-id pkjwt-es256 --auth private_key_jwt --key "$ROOT/tests/keys/p256.pem")
    ;;
  *) echo "AUTH must be basic or private_key_jwt" >&2; exit 2 ;;
esac
cargo run -q --example demo -- \
  --token-url "$ISSUER/token" "${CLIENT[@]}" --api-url "$API" \
  --scope api.read --resource https://api.example.test \
  --requests 2000 --seconds 12 "$@"
