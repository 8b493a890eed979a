#!/usr/bin/env bash
# The HTTP API against its own OpenAPI document: schemathesis (from PyPI, in a cached virtual
# environment) generates requests from /openapi.json, valid and invalid, with and without
# tokens, and checks every answer against the document (status codes, content types,
# schemas, authentication). The API is the booking demo's, served with a reader and an
# operator token. Needs the debug `booking` binary (scripts/test.sh builds it).
#
#   scripts/api-contract.sh             runs it
#   scripts/api-contract.sh --install   only installs schemathesis
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/baton/schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -x "$venv/bin/schemathesis" ]; then
  printf '\n== installing schemathesis %s (PyPI) into %s\n' "$SCHEMATHESIS_VERSION" "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
case "${1:-}" in
  "") ;;
  --install) exit 0 ;;
  *) echo "api-contract.sh: unknown argument '$1' (use --install, or nothing)" >&2; exit 2 ;;
esac

booking="${CARGO_TARGET_DIR:-target}/debug/booking"
[ -x "$booking" ] || cargo build --quiet --locked -p baton-examples --bin booking
operator="operator-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
reader="reader-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
log="$(mktemp)"
"$booking" --workflows 50 --no-progress --serve 127.0.0.1:0 \
  --token "operator:$operator" --token "reader:$reader" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  grep -q '^dashboard: ' "$log" && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; echo "the booking demo exited before serving" >&2; exit 1; }
  sleep 0.1
done
url="$(sed -n 's#^dashboard: \(http://[0-9.:]*\)/.*#\1#p' "$log" | head -1)"
[ -n "$url" ] || { cat "$log"; echo "the booking demo did not say where it serves" >&2; exit 1; }

report="$(mktemp -d)"
# Run from the report's folder: schemathesis keeps a cache in the current directory.
(cd "$report" && "$venv/bin/schemathesis" run "$url/openapi.json" \
  --header "Authorization: Bearer $operator" \
  --checks all --max-examples 30 --seed 1 --workers 1 \
  --request-timeout 30 --report junit --report-dir "$report" \
  --output-truncate true)
echo "schemathesis: the API keeps to its OpenAPI document ($url, report in $report)"
