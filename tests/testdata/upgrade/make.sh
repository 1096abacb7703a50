#!/usr/bin/env bash
# Writes tests/testdata/upgrade/{tokens.db,tokens.json}: the store of a real Caddy of the last
# buntdb release (commit 67d8a08), holding alice's password-grant tokens, a client_credentials
# token and the sealed server secrets, for TestUpgradeFromBuntdbStore. Lifetimes are 100 years,
# so the fixture stays live. Run from the repository root with OLD_CADDY built at 67d8a08:
#   git worktree add /tmp/old 67d8a08 && (cd /tmp/old && go build -o /tmp/caddy-buntdb ./cmd/caddy)
#   OLD_CADDY=/tmp/caddy-buntdb bash tests/testdata/upgrade/make.sh
set -euo pipefail
OLD_CADDY=${OLD_CADDY:?the caddy binary built at 67d8a08}
OUT=tests/testdata/upgrade
W=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$W"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The key and passwords below are the test's own (tests/upgrade_test.go), not secrets.
KEY=dXBncmFkZS1maXh0dXJlLXNlY3JldHMta2V5LTMyYiE=
WEB=$("$OLD_CADDY" hash-password --bcrypt-cost 4 --plaintext web-secret)
ALICE=$("$OLD_CADDY" hash-password --bcrypt-cost 4 --plaintext alice-password)
cat >"$W/Caddyfile" <<CF
{
	admin off
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	oauth2 {
		issuer http://127.0.0.1:$PORT
		store file $W/store
		secrets_key $KEY
		access_token {
			ttl 876000h
		}
		refresh_token {
			ttl 876000h
		}
		client web {
			secret $WEB
			grants password refresh_token client_credentials
			scopes openid read
		}
		user alice $ALICE
	}
}
http://127.0.0.1:$PORT {
	oauth2_server /o
}
CF
HOME=$W XDG_DATA_HOME=$W/data XDG_CONFIG_HOME=$W/config "$OLD_CADDY" run --config "$W/Caddyfile" --adapter caddyfile >"$W/log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/o/.well-known/openid-configuration" && break; sleep 0.1; done
pw=$(curl -sf -u web:web-secret -d grant_type=password -d username=alice -d password=alice-password -d 'scope=openid read' "http://127.0.0.1:$PORT/o/token")
cc=$(curl -sf -u web:web-secret -d grant_type=client_credentials -d scope=read "http://127.0.0.1:$PORT/o/token")
jwks=$(curl -sf "http://127.0.0.1:$PORT/o/jwks" || curl -sf "http://127.0.0.1:$PORT/o/.well-known/jwks.json")
kill $PID
wait $PID 2>/dev/null || true
cp "$W/store/tokens.db" "$OUT/tokens.db"
python3 - "$pw" "$cc" "$jwks" >"$OUT/tokens.json" <<'PY'
import json, sys
pw, cc, jwks = (json.loads(a) for a in sys.argv[1:4])
print(json.dumps({"access": pw["access_token"], "refresh": pw["refresh_token"], "id_token": pw.get("id_token", ""),
                  "cc_access": cc["access_token"], "kids": sorted(k["kid"] for k in jwks["keys"])}, indent=1))
PY
echo "wrote $OUT/tokens.db ($(wc -c <"$OUT/tokens.db") bytes) and $OUT/tokens.json"
