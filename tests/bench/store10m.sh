#!/usr/bin/env bash
# The embedded store at ten million live tokens (issue 16): builds the store
# directly through the store API (tests/bench/store10m: tokenstore.OpenFile and
# SaveTokens from 256 callers, each answered after its fsync), then measures
#   - the store: fill rate, bytes on disk per token, open to first answer, a
#     lookup that misses the gateway's cache (p50/p99), the sweep's pauses;
#   - the real Caddy on it: `caddy run` to the first answer of a guarded
#     request (the median of three starts), and resident memory under a
#     guarded load of 100k distinct tokens, against the same Caddy on a store
#     holding only those 100k tokens: the difference per extra live token is
#     what the store costs beyond the cache (whose bound is the same in both).
#
#   make build && bash tests/bench/store10m.sh
#
# Environment (all optional): N=10000000 tokens, SAMPLE=100000, CADDY=./caddy,
# LOAD=20s (wrk per RSS reading), EXPIRED=1000000 (sweep), KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/lib.sh
bench_need wrk curl
N=${N:-10000000}
SAMPLE=${SAMPLE:-100000}
LOAD=${LOAD:-20s}
EXPIRED=${EXPIRED:-1000000}
CADDY=${CADDY:-./caddy}
[ -x "$CADDY" ] || { echo "no caddy at $CADDY: make build first" >&2; exit 1; }
bench_start
go build -o "$WORK/store10m" ./tests/bench/store10m
S="$WORK/store10m"
HASH=$("$CADDY" hash-password --bcrypt-cost 10 --plaintext bench-secret)

ms() { echo $(($(date +%s%N) / 1000000)); }
rss_mb() { awk '/^VmRSS:/ {print int($2/1024)}' "/proc/$1/status"; }

echo "== fill: $N live tokens (and, apart, a store of the $SAMPLE sampled alone)"
"$S" -phase fill -dir "$WORK/big" -n "$N" -sample "$WORK/big.tokens" -sample-n "$SAMPLE" | tee "$WORK/fill.txt"
"$S" -phase fill -dir "$WORK/small" -n "$SAMPLE" -sample "$WORK/small.tokens" -sample-n "$SAMPLE" >/dev/null

echo "== the store, opened in a fresh process"
"$S" -phase lookup -dir "$WORK/big" -sample "$WORK/big.tokens"

# A Caddy that guards with the store: its own issuer, the store, the default cache.
caddyfile() { # file storedir port admin
	cat >"$1" <<CF
{
	admin 127.0.0.1:$4
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	oauth2 {
		issuer http://127.0.0.1:$3
		store file $2
		client bench {
			secret $HASH
			grants client_credentials
			scopes read write
		}
	}
}
http://127.0.0.1:$3 {
	oauth2_guard {
		scope GET read
	}
	respond "ok"
}
CF
}

# start_caddy storedir tokens: starts Caddy; STARTMS is the ms from exec to the first 200 of a
# guarded request with the first sampled token, CPID its pid, PORT its port.
start_caddy() {
	local port admin t0 tok
	port=$(freeport)
	admin=$(freeport)
	PORT=$port
	caddyfile "$WORK/Caddyfile.$port" "$1" "$port" "$admin"
	tok=$(head -1 "$2")
	t0=$(ms)
	"$CADDY" run --config "$WORK/Caddyfile.$port" --adapter caddyfile >"$WORK/caddy.$port.log" 2>&1 &
	CPID=$!
	PIDS+=("$CPID")
	for _ in $(seq 1 3000); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://127.0.0.1:$port/" 2>/dev/null)" = 200 ]; then
			STARTMS=$(($(ms) - t0))
			return 0
		fi
		kill -0 "$CPID" 2>/dev/null || { tail -20 "$WORK/caddy.$port.log" >&2; return 1; }
		sleep 0.005
	done
	echo "caddy on $1 gave no 200 within 30 s" >&2
	tail -20 "$WORK/caddy.$port.log" >&2
	return 1
}

stop_caddy() {
	kill "$CPID" 2>/dev/null || true
	for _ in $(seq 1 100); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$CPID" 2>/dev/null || true
	wait "$CPID" 2>/dev/null || true
}

echo "== caddy run to the first answer of a guarded request (three starts each)"
for store in big small; do
	times=()
	for _ in 1 2 3; do
		start_caddy "$WORK/$store" "$WORK/$store.tokens"
		times+=("$STARTMS")
		stop_caddy
	done
	sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
	echo "$store store: ${times[*]} ms (median $(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p) ms)"
	echo "$store $sorted" >>"$WORK/starts.txt"
done

echo "== resident memory of Caddy under a guarded load of the $SAMPLE sampled tokens ($LOAD of wrk -t1 -c32)"
declare -A RSS
for store in big small; do
	start_caddy "$WORK/$store" "$WORK/$store.tokens"
	r0=$(rss_mb "$CPID")
	TOKENS_FILE="$WORK/$store.tokens" wrk -t1 -c32 -d"$LOAD" -s tests/bench/guard.lua "http://127.0.0.1:$PORT/orders" >"$WORK/wrk.$store.txt"
	rate=$(awk '/Requests\/sec/ {print int($2)}' "$WORK/wrk.$store.txt")
	RSS[$store]=$(rss_mb "$CPID")
	echo "$store store: RSS $r0 MB after start, ${RSS[$store]} MB after the load ($rate req/s)"
	grep -q "Non-2xx" "$WORK/wrk.$store.txt" && { echo "the load saw refusals:" >&2; cat "$WORK/wrk.$store.txt" >&2; exit 1; }
	stop_caddy
done
extra=$((N - SAMPLE))
echo "memory beyond the cache: $(( (RSS[big] - RSS[small]) )) MB for $extra more live tokens = $(awk -v a="${RSS[big]}" -v b="${RSS[small]}" -v n="$extra" 'BEGIN {printf "%.1f", (a-b)*1048576/n}') bytes per token"

echo "== the sweep: $EXPIRED tokens expire at once in the $N-token store, under issuance and lookups"
"$S" -phase sweep -dir "$WORK/big" -expired "$EXPIRED"
