#!/usr/bin/env bash
# Smoke-checks provider.mjs with curl: starts it on a free loopback port,
# exercises token / introspection / revocation / error paths and exits 0
# only if every check behaves as documented in README.md.
#
#   bash tests/interop/check.sh          # from anywhere; needs node + npm + curl
#   TOKEN_TTL=5 bash tests/interop/check.sh   # default 3; keep >= 3 or tokens expire mid-check
#
# Ends with the line "N passed, N failed".
set -uo pipefail

cd "$(dirname "$0")"
TTL="${TOKEN_TTL:-3}"        # short so the expiry check stays fast
RESOURCE="https://api.example.test"

if [ ! -d node_modules/oidc-provider ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2 || { echo "npm ci failed" >&2; exit 1; }
fi

WORK="$(mktemp -d)"
PROVIDER_PID=""
cleanup() {
  if [ -n "$PROVIDER_PID" ] && kill -0 "$PROVIDER_PID" 2>/dev/null; then
    kill -TERM "$PROVIDER_PID" 2>/dev/null
    wait "$PROVIDER_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $1"; [ -f "$WORK/body" ] && echo "       status=$STATUS body=$(cat "$WORK/body")"; }
check() { local name="$1"; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }

# json FIELD [FILE]: prints the field (strings raw, others as JSON), "<absent>" if missing.
json() {
  node -e '
    const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const v = o[process.argv[2]];
    process.stdout.write(v === undefined ? "<absent>" : typeof v === "string" ? v : JSON.stringify(v));
  ' "${2:-$WORK/body}" "$1" 2>/dev/null || echo "<unparsable>"
}

# req URL [curl args...]: POST/GET, sets STATUS, body in $WORK/body, headers in $WORK/headers.
req() {
  local url="$1"; shift
  STATUS="$(curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "$@" "$url")" || STATUS="curl-error"
}

eq() { [ "$1" = "$2" ]; }

# ---------------------------------------------------------------- start
PORT=0 TOKEN_TTL="$TTL" node provider.mjs >"$WORK/stdout" 2>"$WORK/stderr" &
PROVIDER_PID=$!
ISSUER=""
for _ in $(seq 1 100); do
  ISSUER="$(sed -n 's/^LISTENING \(http:\/\/127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$WORK/stdout")"
  [ -n "$ISSUER" ] && break
  kill -0 "$PROVIDER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ISSUER" ]; then
  echo "provider did not start; stderr:" >&2; cat "$WORK/stderr" >&2
  echo "0 passed, 1 failed"; exit 1
fi
echo "# provider at $ISSUER (TOKEN_TTL=$TTL)"
check "stdout has exactly one line" eq "$(wc -l <"$WORK/stdout")" 1

# ---------------------------------------------------------------- discovery
req "$ISSUER/.well-known/openid-configuration"
check "discovery 200" eq "$STATUS" 200
check "discovery issuer" eq "$(json issuer)" "$ISSUER"
TOKEN_EP="$(json token_endpoint)"
INTROSPECT_EP="$(json introspection_endpoint)"
REVOKE_EP="$(json revocation_endpoint)"
check "token_endpoint = /token" eq "$TOKEN_EP" "$ISSUER/token"
check "introspection_endpoint = /token/introspection" eq "$INTROSPECT_EP" "$ISSUER/token/introspection"
check "revocation_endpoint = /token/revocation" eq "$REVOKE_EP" "$ISSUER/token/revocation"
check "client_credentials advertised" eq "$(json grant_types_supported | grep -c client_credentials)" 1
req "$ISSUER/.well-known/oauth-authorization-server"
check "RFC 8414 metadata 200" eq "$STATUS" 200

# ---------------------------------------------------------------- token: basic
req "$TOKEN_EP" -u basic-client:basic-secret-1 -d grant_type=client_credentials -d scope=api.read
check "basic: 200" eq "$STATUS" 200
check "basic: token_type Bearer" eq "$(json token_type)" Bearer
check "basic: expires_in = TOKEN_TTL" eq "$(json expires_in)" "$TTL"
check "basic: scope api.read" eq "$(json scope)" api.read
check "basic: no refresh_token" eq "$(json refresh_token)" "<absent>"
check "basic: cache-control no-store" grep -qi '^cache-control: no-store' "$WORK/headers"
BASIC_TOKEN="$(json access_token)"
check "basic: opaque (not a JWT)" eq "$(tr -cd . <<<"$BASIC_TOKEN")" ""

# ---------------------------------------------------------------- token: post
req "$TOKEN_EP" -d grant_type=client_credentials -d client_id=post-client -d client_secret=post-secret-2 \
  --data-urlencode 'scope=api.read api.write'
check "post: 200" eq "$STATUS" 200
check "post: scope api.read api.write" eq "$(json scope)" "api.read api.write"
POST_TOKEN="$(json access_token)"

# ---------------------------------------------------------------- token: resource (RFC 8707)
req "$TOKEN_EP" -u basic-client:basic-secret-1 -d grant_type=client_credentials -d scope=api.read \
  --data-urlencode "resource=$RESOURCE"
check "resource: 200" eq "$STATUS" 200
check "resource: scope api.read" eq "$(json scope)" api.read
check "resource: expires_in = TOKEN_TTL" eq "$(json expires_in)" "$TTL"
RES_TOKEN="$(json access_token)"
check "resource: opaque (not a JWT)" eq "$(tr -cd . <<<"$RES_TOKEN")" ""

req "$TOKEN_EP" -u basic-client:basic-secret-1 -d grant_type=client_credentials \
  --data-urlencode "resource=https://other.example.test"
check "unknown resource: 400 invalid_target" eq "$STATUS/$(json error)" 400/invalid_target

# ---------------------------------------------------------------- RFC 6749 2.3.1 encoding
ENCODED_BASIC="$(printf '%s' 'weird%3Aclient+id:s%25cr%3At+%2B%2F%3D' | base64 | tr -d '\n')"
req "$TOKEN_EP" -H "Authorization: Basic $ENCODED_BASIC" -d grant_type=client_credentials -d scope=api.write
check "weird client, form-urlencoded basic: 200" eq "$STATUS" 200
check "weird client: scope api.write" eq "$(json scope)" api.write
RAW_BASIC="$(printf '%s' 'weird:client id:s%cr:t +/=' | base64 | tr -d '\n')"
req "$TOKEN_EP" -H "Authorization: Basic $RAW_BASIC" -d grant_type=client_credentials
check "weird client, NOT urlencoded: 400 invalid_request" eq "$STATUS/$(json error)" 400/invalid_request

# ---------------------------------------------------------------- errors
req "$TOKEN_EP" -u basic-client:wrong-secret -d grant_type=client_credentials
check "wrong secret (basic): 401 invalid_client" eq "$STATUS/$(json error)" 401/invalid_client
check "wrong secret (basic): WWW-Authenticate Basic" grep -qi '^www-authenticate: Basic .*error="invalid_client"' "$WORK/headers"
req "$TOKEN_EP" -d grant_type=client_credentials -d client_id=post-client -d client_secret=wrong-secret
check "wrong secret (post): 401 invalid_client" eq "$STATUS/$(json error)" 401/invalid_client
req "$TOKEN_EP" -u basic-client:basic-secret-1 -d grant_type=client_credentials -d scope=openid
check "disallowed scope: 400 invalid_scope" eq "$STATUS/$(json error)" 400/invalid_scope

# fresh_token VAR [curl args...]: mints a token just before use so a short TTL cannot bite.
fresh_token() {
  local var="$1"; shift
  req "$TOKEN_EP" -d grant_type=client_credentials "$@"
  printf -v "$var" '%s' "$(json access_token)"
}

# ---------------------------------------------------------------- introspection
fresh_token RES_TOKEN -u basic-client:basic-secret-1 -d scope=api.read --data-urlencode "resource=$RESOURCE"
req "$INTROSPECT_EP" -u api:api-secret --data-urlencode "token=$RES_TOKEN"
check "introspect resource token: 200" eq "$STATUS" 200
check "introspect: active true" eq "$(json active)" true
check "introspect: scope api.read" eq "$(json scope)" api.read
check "introspect: aud = resource" eq "$(json aud)" "$RESOURCE"
check "introspect: client_id basic-client" eq "$(json client_id)" basic-client
check "introspect: token_type Bearer" eq "$(json token_type)" Bearer
check "introspect: iss" eq "$(json iss)" "$ISSUER"
EXP="$(json exp)"; IAT="$(json iat)"
check "introspect: exp - iat = TOKEN_TTL" eq "$( [[ "$EXP$IAT" =~ ^[0-9]+$ ]] && echo $((EXP - IAT)) )" "$TTL"

fresh_token POST_TOKEN -d client_id=post-client -d client_secret=post-secret-2 --data-urlencode 'scope=api.read api.write'
req "$INTROSPECT_EP" -u api:api-secret --data-urlencode "token=$POST_TOKEN"
check "introspect post token: active, no aud" eq "$(json active)/$(json aud)/$(json scope)" "true/<absent>/api.read api.write"

req "$INTROSPECT_EP" -d client_id=post-client -d client_secret=post-secret-2 --data-urlencode "token=$RES_TOKEN"
check "introspect another client's token: active false" eq "$STATUS/$(cat "$WORK/body")" '200/{"active":false}'

req "$INTROSPECT_EP" -u api:wrong-secret --data-urlencode "token=$RES_TOKEN"
check "introspect wrong secret: 401 invalid_client" eq "$STATUS/$(json error)" 401/invalid_client

# ---------------------------------------------------------------- revocation
fresh_token RES_TOKEN -u basic-client:basic-secret-1 -d scope=api.read --data-urlencode "resource=$RESOURCE"
req "$REVOKE_EP" -d client_id=post-client -d client_secret=post-secret-2 --data-urlencode "token=$RES_TOKEN"
check "revoke another client's token: 400 invalid_request" eq "$STATUS/$(json error)" 400/invalid_request
req "$INTROSPECT_EP" -u api:api-secret --data-urlencode "token=$RES_TOKEN"
check "still active after refused revoke" eq "$(json active)" true

req "$REVOKE_EP" -u basic-client:basic-secret-1 --data-urlencode "token=$RES_TOKEN" -d token_type_hint=access_token
check "revoke by owner: 200 empty body" eq "$STATUS/$(wc -c <"$WORK/body")" 200/0
req "$INTROSPECT_EP" -u api:api-secret --data-urlencode "token=$RES_TOKEN"
check "introspect after revoke: active false" eq "$STATUS/$(cat "$WORK/body")" '200/{"active":false}'
req "$REVOKE_EP" -u basic-client:basic-secret-1 --data-urlencode "token=$RES_TOKEN"
check "revoke again: 200" eq "$STATUS" 200

# ---------------------------------------------------------------- expiry
fresh_token BASIC_TOKEN -u basic-client:basic-secret-1
req "$INTROSPECT_EP" -u api:api-secret --data-urlencode "token=$BASIC_TOKEN"
check "fresh token active before TOKEN_TTL" eq "$(json active)" true
sleep "$((TTL + 1))"
req "$INTROSPECT_EP" -u api:api-secret --data-urlencode "token=$BASIC_TOKEN"
check "introspect after TOKEN_TTL: active false" eq "$(cat "$WORK/body")" '{"active":false}'

# ---------------------------------------------------------------- shutdown
rm -f "$WORK/body"
kill -TERM "$PROVIDER_PID"
wait "$PROVIDER_PID"; RC=$?
PROVIDER_PID=""
check "SIGTERM: exit 0" eq "$RC" 0

echo "# provider stderr:"; sed 's/^/#   /' "$WORK/stderr"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
