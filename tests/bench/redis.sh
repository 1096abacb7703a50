#!/usr/bin/env bash
# Redis store benchmark, all in one run on this machine (loopback only):
#   1. cross-instance revocation propagation: instance A rotates a refresh token (revoking the old
#      access token), instance B, which had the old token cached, is polled until it refuses it;
#      p50/p99 over N revocations (tests/bench/propagation);
#   2. client_credentials tokens/s: A (store redis) beside F (store file), alternating wrk rounds;
#   3. guard req/s with a warm cache: B (store redis, tokens issued by A) and A beside F (store file).
# Usage: bash tests/bench/redis.sh   (N=1000 DURATION=10s ROUNDS=2 TOKENS=1000 CONNS=32 CADDY=./caddy;
#        ONLY_PROPAGATION=1 stops after 1; KEEP=1 keeps the work directory with every log)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
TOKENS=${TOKENS:-1000}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}

. tests/bench/lib.sh
bench_need wrk redis-server
bench_start
go build -o "$WORK/propagation" ./tests/bench/propagation

REDIS=$(freeport)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
waitfor redis-server "$REDIS" "${PIDS[-1]}" "$WORK/redis.log"

CC_HASH=$("$CADDY" hash-password --bcrypt-cost 10 --plaintext bench-secret)
APP_HASH=$("$CADDY" hash-password --bcrypt-cost 10 --plaintext app-secret)
USER_HASH=$("$CADDY" hash-password --bcrypt-cost 10 --plaintext alice-password)
# Instances on one Redis share the key that seals the secrets kept there.
SECRETS_KEY=$(head -c 32 /dev/urandom | base64)

# start_caddy NAME STORE-LINE -> sets AUTH_<NAME> and API_<NAME>
start_caddy() {
	local name=$1 store=$2 auth api admin
	auth=$(freeport); api=$(freeport); admin=$(freeport)
	cat >"$WORK/Caddyfile.$name" <<CF
{
	admin 127.0.0.1:$admin
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	oauth2 {
		issuer http://127.0.0.1:$auth
		$store
		secrets_key $SECRETS_KEY
		client bench {
			secret $CC_HASH
			grants client_credentials
			scopes read write
		}
		client app {
			secret $APP_HASH
			grants password refresh_token
			scopes read write
		}
		user alice $USER_HASH
	}
}
http://127.0.0.1:$auth {
	oauth2_server
}
http://127.0.0.1:$api {
	oauth2_guard {
		scope GET read
		scope POST,PUT,DELETE write
	}
	respond "ok"
}
CF
	mkdir -p "$WORK/xdg-$name"
	XDG_DATA_HOME="$WORK/xdg-$name/data" XDG_CONFIG_HOME="$WORK/xdg-$name/config" \
		"$CADDY" run --config "$WORK/Caddyfile.$name" --adapter caddyfile >"$WORK/caddy-$name.log" 2>&1 &
	PIDS+=($!)
	waitfor "caddy $name" "$api" "${PIDS[-1]}" "$WORK/caddy-$name.log"
	printf -v "AUTH_$name" '%s' "$auth"
	printf -v "API_$name" '%s' "$api"
}
start_caddy A "store redis redis://127.0.0.1:$REDIS"
start_caddy B "store redis redis://127.0.0.1:$REDIS"
start_caddy F "store file $WORK/filestore"

echo "== 1. revocation propagation A -> B ($N refresh rotations)"
timeout 600 "$WORK/propagation" -n "$N" -a "http://127.0.0.1:$AUTH_A/oauth2/token" -b "http://127.0.0.1:$API_B/orders" \
	-client app -secret app-secret -user alice -password alice-password | tee "$WORK/propagation.txt"
slow=$(cat "$WORK"/caddy-*.log | grep -c 'not every instance acknowledged' || true)
echo "revocations that waited the full ack bound (a missed acknowledgement): $slow"
[ "${ONLY_PROPAGATION:-0}" = 1 ] && exit 0

issue_tokens() { # issue_tokens AUTHPORT FILE
	: >"$2"
	for _ in $(seq 1 "$TOKENS"); do
		curl -s --max-time 10 -X POST "http://127.0.0.1:$1/oauth2/token" -u bench:bench-secret \
			-d grant_type=client_credentials -d scope=read | grep -o '"access_token":"[^"]*"' | cut -d'"' -f4 >>"$2"
	done
	local n
	n=$(grep -c . "$2")
	[ "$n" = "$TOKENS" ] || { echo "issued $n of $TOKENS tokens on port $1"; exit 1; }
}

tokens_wrk() { # tokens_wrk AUTHPORT -> tokens/s (fails on any bad response)
	local out line
	out=$(timeout 600 wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s tests/bench/tokens.lua "http://127.0.0.1:$1" -- /oauth2/token 2>&1)
	line=$(grep '^BENCH ' <<<"$out") || { echo "$out" >&2; exit 1; }
	if grep -qE 'non200=[1-9]|badbody=[1-9]|sockerr=[1-9]' <<<"$line"; then echo "$out" >&2; exit 1; fi
	sed -E 's/.* okrps=([0-9.]+).*/\1/' <<<"$line"
}

guard_wrk() { # guard_wrk APIPORT TOKENSFILE -> req/s (fails on any failed request)
	local out failed
	out=$(TOKENS_FILE=$2 timeout 600 wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s tests/bench/guard.lua "http://127.0.0.1:$1/orders" 2>&1)
	failed=$(awk '/^failed/ {print $2}' <<<"$out")
	[ "${failed:-1}" = 0 ] || { echo "$out" >&2; exit 1; }
	awk '/Requests\/sec/ {print $2}' <<<"$out"
}

echo
echo "== 2. client_credentials tokens/s: redis (A) vs file (F), wrk -t$THREADS -c$CONNS -d$DURATION"
for port in "$AUTH_A" "$AUTH_F"; do
	# One request first: the client secret's bcrypt check is paid once, then remembered; 32 of
	# them at once on a cold server would only measure bcrypt.
	curl -sf --max-time 30 -o /dev/null -u bench:bench-secret -d grant_type=client_credentials "http://127.0.0.1:$port/oauth2/token" ||
		{ echo "no token from port $port"; exit 1; }
	(DURATION=2s tokens_wrk "$port" >/dev/null) || echo "(warm-up on port $port had errors; not measured)"
done
declare -a TR TF
for r in $(seq 1 "$ROUNDS"); do
	TR+=("$(tokens_wrk "$AUTH_A")")
	TF+=("$(tokens_wrk "$AUTH_F")")
	printf 'round %d: redis %s  file %s tokens/s\n' "$r" "${TR[-1]}" "${TF[-1]}"
done

echo
echo "== 3. guard req/s, warm cache, $TOKENS distinct tokens: redis on B (tokens issued on A), redis on A, file (F)"
# A and F both carry phase 2's issuance history (F holds every token in its process: buntdb keeps
# its index in memory); B only ever checked tokens.
issue_tokens "$AUTH_A" "$WORK/tokens-redis"
issue_tokens "$AUTH_F" "$WORK/tokens-file"
DURATION=3s guard_wrk "$API_B" "$WORK/tokens-redis" >/dev/null
DURATION=3s guard_wrk "$API_A" "$WORK/tokens-redis" >/dev/null
DURATION=3s guard_wrk "$API_F" "$WORK/tokens-file" >/dev/null
declare -a GR GA GF
for r in $(seq 1 "$ROUNDS"); do
	GR+=("$(guard_wrk "$API_B" "$WORK/tokens-redis")")
	GA+=("$(guard_wrk "$API_A" "$WORK/tokens-redis")")
	GF+=("$(guard_wrk "$API_F" "$WORK/tokens-file")")
	printf 'round %d: redis on B %s  redis on A %s  file %s req/s\n' "$r" "${GR[-1]}" "${GA[-1]}" "${GF[-1]}"
done

mean() { printf '%s\n' "$@" | awk '{s+=$1} END {printf "%.0f", s/NR}'; }
echo
echo "summary ($(nproc) cores, $(go version | cut -d' ' -f3), $(redis-server --version | cut -d' ' -f3))"
grep '^BENCH' "$WORK/propagation.txt"
printf 'tokens/s  redis %s  file %s  (redis/file %s)\n' "$(mean "${TR[@]}")" "$(mean "${TF[@]}")" \
	"$(awk -v a="$(mean "${TR[@]}")" -v b="$(mean "${TF[@]}")" 'BEGIN{printf "%.2f", a/b}')"
printf 'guard req/s  redis on B %s  redis on A %s  file %s  (B/file %s, A/file %s)\n' "$(mean "${GR[@]}")" "$(mean "${GA[@]}")" "$(mean "${GF[@]}")" \
	"$(awk -v a="$(mean "${GR[@]}")" -v b="$(mean "${GF[@]}")" 'BEGIN{printf "%.2f", a/b}')" \
	"$(awk -v a="$(mean "${GA[@]}")" -v b="$(mean "${GF[@]}")" 'BEGIN{printf "%.2f", a/b}')"
