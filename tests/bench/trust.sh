#!/usr/bin/env bash
# Trusted-issuer benchmark (issue 13), one run, the same upstream (a Caddy `respond` site in its
# own process) and the same load generator as guard.sh:
#   (b) oauth2_guard with this server's own opaque tokens, warm cache (a Caddy with a store)
#   (t) oauth2_guard in a Caddy that only guards, with another issuer's JWT access tokens
#       (an oauth2gate with access_token format jwt, trusted by a `trust` block), warm cache
#   (i) the same guard-only Caddy with another issuer's opaque tokens, introspected (RFC 7662)
#       once each, then from the introspection cache (cache_ttl 5m)
# Every setup sends TOKENS distinct tokens in turn. Rounds run b t i i t b; each ratio is taken
# within a round and the median of the per-round ratios is printed.
# Usage: bash tests/bench/trust.sh   (DURATION=4s ROUNDS=6 TOKENS=2000 CONNS=32 CADDY=./caddy)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-4s}
ROUNDS=${ROUNDS:-6}
TOKENS=${TOKENS:-2000}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}

. tests/bench/lib.sh
bench_need wrk
bench_start

AUTH=$(freeport); AUTH2=$(freeport); UP=$(freeport); B=$(freeport); T=$(freeport); I=$(freeport)
ADMIN=$(freeport); ADMIN2=$(freeport); ADMIN3=$(freeport); ADMIN4=$(freeport)
HASH=$("$CADDY" hash-password --bcrypt-cost 10 --plaintext bench-secret)

# The issuer of opaque tokens, with (b) guarding its own tokens.
cat >"$WORK/Caddyfile" <<CF
{
	admin 127.0.0.1:$ADMIN
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	oauth2 {
		issuer http://127.0.0.1:$AUTH
		store file $WORK/oauth2
		client bench {
			secret $HASH
			grants client_credentials
			scopes read write
		}
	}
}
http://127.0.0.1:$AUTH {
	oauth2_server
}
http://127.0.0.1:$B {
	oauth2_guard {
		scope GET read
		scope POST,PUT,DELETE write
	}
	reverse_proxy 127.0.0.1:$UP
}
CF
# The issuer of JWT access tokens (RS256, as most identity providers sign).
cat >"$WORK/Caddyfile.jwt" <<CF
{
	admin 127.0.0.1:$ADMIN2
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	oauth2 {
		issuer http://127.0.0.1:$AUTH2
		store file $WORK/oauth2-jwt
		access_token {
			format jwt RS256
		}
		client bench {
			secret $HASH
			grants client_credentials
			scopes read write
		}
	}
}
http://127.0.0.1:$AUTH2 {
	oauth2_server
}
CF
# The Caddy that only guards: no store, two trust blocks.
cat >"$WORK/Caddyfile.trust" <<CF
{
	admin 127.0.0.1:$ADMIN4
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	oauth2 {
		trust http://127.0.0.1:$AUTH2 {
			audience http://127.0.0.1:$AUTH2
		}
		trust http://127.0.0.1:$AUTH {
			audience bench
			introspection http://127.0.0.1:$AUTH/oauth2/introspect {
				client_id bench
				client_secret bench-secret
			}
			cache_ttl 5m
		}
	}
}
http://127.0.0.1:$T {
	oauth2_guard {
		issuer http://127.0.0.1:$AUTH2
		scope GET read
		scope POST,PUT,DELETE write
	}
	reverse_proxy 127.0.0.1:$UP
}
http://127.0.0.1:$I {
	oauth2_guard {
		issuer http://127.0.0.1:$AUTH
		scope GET read
		scope POST,PUT,DELETE write
	}
	reverse_proxy 127.0.0.1:$UP
}
CF
cat >"$WORK/Caddyfile.upstream" <<CF
{
	admin 127.0.0.1:$ADMIN3
	persist_config off
	auto_https off
	default_bind 127.0.0.1
}
http://127.0.0.1:$UP {
	respond "ok"
}
CF
XDG_DATA_HOME=$WORK/up-data "$CADDY" run --config "$WORK/Caddyfile.upstream" --adapter caddyfile >"$WORK/caddy-upstream.log" 2>&1 &
PIDS+=($!)
"$CADDY" run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
PIDS+=($!)
XDG_DATA_HOME=$WORK/jwt-data "$CADDY" run --config "$WORK/Caddyfile.jwt" --adapter caddyfile >"$WORK/caddy-jwt.log" 2>&1 &
PIDS+=($!)
waitfor "upstream caddy" "$UP" "${PIDS[0]}" "$WORK/caddy-upstream.log"
waitfor caddy "$AUTH" "${PIDS[1]}" "$WORK/caddy.log"
waitfor "jwt caddy" "$AUTH2" "${PIDS[2]}" "$WORK/caddy-jwt.log"
# Started after its issuers, so the keys load at once (they would otherwise in the background).
XDG_DATA_HOME=$WORK/trust-data "$CADDY" run --config "$WORK/Caddyfile.trust" --adapter caddyfile >"$WORK/caddy-trust.log" 2>&1 &
PIDS+=($!)
waitfor "trust caddy" "$T" "${PIDS[3]}" "$WORK/caddy-trust.log"

issue() { # port file: TOKENS distinct tokens from the real token endpoint, one a line
	: >"$2"
	for i in $(seq 1 "$TOKENS"); do
		curl -s -X POST "http://127.0.0.1:$1/oauth2/token" -u bench:bench-secret \
			-d grant_type=client_credentials -d scope=read | grep -o '"access_token":"[^"]*"' | cut -d'"' -f4 >>"$2"
	done
}
issue "$AUTH" "$WORK/tokens"
[ "$(grep -c . "$WORK/tokens")" = "$TOKENS" ] || { echo "opaque tokens missing"; exit 1; }
issue "$AUTH2" "$WORK/jwt-tokens"
[ "$(grep -c '\.' "$WORK/jwt-tokens")" = "$TOKENS" ] || { echo "JWT tokens missing"; exit 1; }

for i in $(seq 1 100); do
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T/orders" -H "Authorization: Bearer $(head -1 "$WORK/jwt-tokens")")
	[ "$code" = 200 ] && break
	sleep 0.1
	[ "$i" = 100 ] && { echo "trusted JWT guard answers $code"; tail -20 "$WORK/caddy-trust.log"; exit 1; }
done
for port in $B $I; do
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/orders" -H "Authorization: Bearer $(head -1 "$WORK/tokens")")
	[ "$code" = 200 ] || { echo "setup on port $port answers $code"; exit 1; }
done
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T/orders" -H "Authorization: Bearer $(head -1 "$WORK/tokens")")
[ "$code" = 401 ] || { echo "the JWT-only route lets an opaque token through ($code)"; exit 1; }

run() { # name port tokens -> req/s
	local out failed rps
	out=$(TOKENS_FILE=$3 wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s tests/bench/guard.lua "http://127.0.0.1:$2/orders")
	failed=$(echo "$out" | awk '/^failed/ {print $2}')
	rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
	if [ "${failed:-1}" != 0 ]; then echo "$1: $failed failed requests" >&2; echo "$out" >&2; exit 1; fi
	echo "$rps"
}
# Warm every cache with every token, and everyone's connections.
run warm-b "$B" "$WORK/tokens" >/dev/null
run warm-t "$T" "$WORK/jwt-tokens" >/dev/null
run warm-i "$I" "$WORK/tokens" >/dev/null

ORDER=(b t i)
declare -A SUM RPS
for r in $(seq 1 "$ROUNDS"); do
	SUM=()
	for k in b t i i t b; do
		case $k in
		b) v=$(run b "$B" "$WORK/tokens") ;;
		t) v=$(run t "$T" "$WORK/jwt-tokens") ;;
		i) v=$(run i "$I" "$WORK/tokens") ;;
		esac
		SUM[$k]=$(awk -v s="${SUM[$k]:-0}" -v r="$v" 'BEGIN{print s+r}')
	done
	line="round $r:"
	for k in "${ORDER[@]}"; do
		RPS[$k,$r]=$(awk -v s="${SUM[$k]}" 'BEGIN{printf "%.0f", s/2}')
		line+=" ($k) ${RPS[$k,$r]}"
	done
	echo "$line req/s"
done
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.4g", (v[NR/2]+v[NR/2+1])/2}'; }
echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds of b t i i t b, $TOKENS distinct tokens, $(nproc) cores"
for p in t/b i/b; do
	v=$(for r in $(seq 1 "$ROUNDS"); do awk -v x="${RPS[${p%/*},$r]}" -v y="${RPS[${p#*/},$r]}" 'BEGIN{printf "%.3f\n", x/y}'; done)
	echo "per-round $p: $(echo $v)  (median $(echo "$v" | median); goal >= 0.95)"
done
