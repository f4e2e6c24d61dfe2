# Sourced by the benchmark scripts: start `maas serve` on a fresh data folder on $PORT, wait until
# it is ready, log in as the bootstrap admin, and stop it (removing the folder) when the script
# exits. Sets URL, TOKEN (exported) and work (the temporary folder). Needs BIN and PORT; gRPC
# stays off unless GRPC_BIND (ADDR:PORT) is set.
URL="http://127.0.0.1:$PORT"
PASSWORD=bench-password-for-maas
[ -x "$BIN" ] || { echo "$BIN is missing: cargo build --release -p maas-gateway" >&2; exit 1; }

work=$(mktemp -d)
MAAS_ADMIN_PASSWORD=$PASSWORD MAAS__LOG__LEVEL=warn "$BIN" serve --data-dir "$work/data" \
  --bind "127.0.0.1:$PORT" --grpc-bind "${GRPC_BIND:-}" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -sf "$URL/health/ready" >/dev/null && break
  sleep 0.1
done
TOKEN=$(curl -sf -X POST "$URL/v1/auth/token" -H 'Content-Type: application/json' \
  -d "{\"username\": \"admin\", \"password\": \"$PASSWORD\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
export TOKEN URL
