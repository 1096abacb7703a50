#!/usr/bin/env bash
# Guard benchmark (issue: oauth2_guard), all in one run on the same machine,
# the same upstream (a Caddy `respond` site) and the same load generator:
#   (a) reverse_proxy alone
#   (b) oauth2_guard + reverse_proxy, opaque tokens, many distinct tokens, warm cache
#   (c) forward_auth to a token-checking endpoint (tests/bench/verifier), then reverse_proxy
#   (d) oauth2_guard + reverse_proxy with JWT access tokens (a second Caddy, access_token format jwt)
# The upstream is a third Caddy process, so (a), (b) and (d) each cross the same two processes.
#   (e) introspection (RFC 7662) requests per second through Caddy
#   (f) (b) without the identity headers (header_up -X-Auth-*): the check and
#       token stripping alone, to tell the guard's cost from that of the three
#       headers the gateway forwards and the upstream parses
#   (g) the identity headers without any check: Caddy's own request_header
#       removes Authorization and sets X-Auth-Subject, X-Auth-Client-Id and
#       X-Auth-Scope to fixed values: what forwarding (b)'s headers costs with
#       no check at all (plus request_header's own small handler cost).
#   (m) (b) on a twin Caddy of its own, metrics on (as always)
#   (n) (m) on a second twin started with OAUTH2GATE_METRICS=off: m/n is what
#       the metrics cost the guard (issue 14: at least 0.99x)
#   (i) token issuance (client_credentials, tests/bench/tokens.lua) on (m)'s twin,
#   (j) the same on (n)'s: i/j is what the metrics cost issuance
# Usage: bash tests/bench/guard.sh   (DURATION=4s ROUNDS=6 TOKENS=2000 CONNS=32 CADDY=./caddy)
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
go build -o "$WORK/verifier" ./tests/bench/verifier

AUTH=$(freeport); UP=$(freeport); A=$(freeport); B=$(freeport); C=$(freeport); V=$(freeport); ADMIN=$(freeport)
AUTH2=$(freeport); D=$(freeport); F=$(freeport); G=$(freeport); ADMIN2=$(freeport); ADMIN3=$(freeport)
AUTHM=$(freeport); M=$(freeport); ADMINM=$(freeport); AUTHN=$(freeport); N=$(freeport); ADMINN=$(freeport)
HASH=$("$CADDY" hash-password --bcrypt-cost 10 --plaintext bench-secret)

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
http://127.0.0.1:$A {
	reverse_proxy 127.0.0.1:$UP
}
http://127.0.0.1:$B {
	oauth2_guard {
		scope GET read
		scope POST,PUT,DELETE write
	}
	reverse_proxy 127.0.0.1:$UP
}
http://127.0.0.1:$F {
	oauth2_guard {
		scope GET read
		scope POST,PUT,DELETE write
		header_up -X-Auth-Subject
		header_up -X-Auth-Client-Id
		header_up -X-Auth-Scope
	}
	reverse_proxy 127.0.0.1:$UP
}
http://127.0.0.1:$G {
	request_header -Authorization
	request_header X-Auth-Subject bench
	request_header X-Auth-Client-Id bench
	request_header X-Auth-Scope read
	reverse_proxy 127.0.0.1:$UP
}
http://127.0.0.1:$C {
	forward_auth 127.0.0.1:$V {
		uri /check
	}
	reverse_proxy 127.0.0.1:$UP
}
CF

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
			format jwt
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
http://127.0.0.1:$D {
	oauth2_guard {
		scope GET read
		scope POST,PUT,DELETE write
	}
	reverse_proxy 127.0.0.1:$UP
}
CF

# The twins (m) and (n): the same config but for ports and store, one started
# with the metrics on, one with OAUTH2GATE_METRICS=off.
twin() { # file admin auth guard store
	cat >"$1" <<CF
{
	admin 127.0.0.1:$2
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	oauth2 {
		issuer http://127.0.0.1:$3
		store file $5
		client bench {
			secret $HASH
			grants client_credentials
			scopes read write
		}
	}
}
http://127.0.0.1:$3 {
	oauth2_server
}
http://127.0.0.1:$4 {
	oauth2_guard {
		scope GET read
		scope POST,PUT,DELETE write
	}
	reverse_proxy 127.0.0.1:$UP
}
CF
}
twin "$WORK/Caddyfile.m" "$ADMINM" "$AUTHM" "$M" "$WORK/oauth2-m"
twin "$WORK/Caddyfile.n" "$ADMINN" "$AUTHN" "$N" "$WORK/oauth2-n"

# The upstream runs in a process of its own, so that every setup has the same
# shape: one Caddy doing the gateway work, one answering as the upstream.
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
XDG_DATA_HOME=$WORK/m-data "$CADDY" run --config "$WORK/Caddyfile.m" --adapter caddyfile >"$WORK/caddy-m.log" 2>&1 &
PIDS+=($!)
OAUTH2GATE_METRICS=off XDG_DATA_HOME=$WORK/n-data "$CADDY" run --config "$WORK/Caddyfile.n" --adapter caddyfile >"$WORK/caddy-n.log" 2>&1 &
PIDS+=($!)
issue() { # port file: TOKENS distinct tokens from the real token endpoint, one a line
	: >"$2"
	for i in $(seq 1 "$TOKENS"); do
		curl -s -X POST "http://127.0.0.1:$1/oauth2/token" -u bench:bench-secret \
			-d grant_type=client_credentials -d scope=read | grep -o '"access_token":"[^"]*"' | cut -d'"' -f4 >>"$2"
	done
}
waitfor "upstream caddy" "$UP" "${PIDS[0]}" "$WORK/caddy-upstream.log"
waitfor caddy "$AUTH" "${PIDS[1]}" "$WORK/caddy.log"
waitfor "jwt caddy" "$AUTH2" "${PIDS[2]}" "$WORK/caddy-jwt.log"
waitfor "twin m" "$AUTHM" "${PIDS[3]}" "$WORK/caddy-m.log"
waitfor "twin n" "$AUTHN" "${PIDS[4]}" "$WORK/caddy-n.log"

# Many distinct opaque tokens, and as many JWTs.
issue "$AUTH" "$WORK/tokens"
n=$(grep -c . "$WORK/tokens")
[ "$n" = "$TOKENS" ] || { echo "issued $n of $TOKENS tokens"; exit 1; }
issue "$AUTH2" "$WORK/jwt-tokens"
[ "$(grep -c '\.' "$WORK/jwt-tokens")" = "$TOKENS" ] || { echo "JWT tokens missing"; exit 1; }
issue "$AUTHM" "$WORK/tokens-m"
issue "$AUTHN" "$WORK/tokens-n"
[ "$(grep -c . "$WORK/tokens-m")" = "$TOKENS" ] && [ "$(grep -c . "$WORK/tokens-n")" = "$TOKENS" ] || { echo "twin tokens missing"; exit 1; }

"$WORK/verifier" -addr "127.0.0.1:$V" -tokens "$WORK/tokens" >"$WORK/verifier.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 50); do
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$C/orders" -H "Authorization: Bearer $(head -1 "$WORK/tokens")" || true)
	[ "$code" = 200 ] && break
	sleep 0.1
	[ "$i" = 50 ] && { echo "forward_auth setup answers $code"; exit 1; }
done
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$D/orders" -H "Authorization: Bearer $(head -1 "$WORK/jwt-tokens")")
[ "$code" = 200 ] || { echo "JWT guard answers $code"; exit 1; }
for port in $A $B $F $G; do
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/orders" -H "Authorization: Bearer $(head -1 "$WORK/tokens")")
	[ "$code" = 200 ] || { echo "setup on port $port answers $code"; exit 1; }
done
for tw in "$M tokens-m" "$N tokens-n"; do
	set -- $tw
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/orders" -H "Authorization: Bearer $(head -1 "$WORK/$2")")
	[ "$code" = 200 ] || { echo "twin guard on port $1 answers $code"; exit 1; }
done
# The switch really is on in one twin and off in the other.
curl -s "http://127.0.0.1:$ADMINM/metrics" | grep -q '^oauth2gate_guard_requests_total{outcome="pass"}' || { echo "twin m has no guard metrics"; exit 1; }
if curl -s "http://127.0.0.1:$ADMINN/metrics" | grep -q '^oauth2gate_'; then echo "twin n (OAUTH2GATE_METRICS=off) still has oauth2gate metrics"; exit 1; fi
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$B/orders" -H "Authorization: Bearer nope")
[ "$code" = 401 ] || { echo "guard lets an unknown token through ($code)"; exit 1; }

export TOKENS_FILE=$WORK/tokens
export BASIC_AUTH=$(printf 'bench:bench-secret' | base64)
run() { # name port [tokens] -> req/s
	local out
	out=$(TOKENS_FILE=${3:-$WORK/tokens} wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s tests/bench/guard.lua "http://127.0.0.1:$2/orders")
	local failed rps
	failed=$(echo "$out" | awk '/^failed/ {print $2}')
	rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
	if [ "${failed:-1}" != 0 ]; then echo "$1: $failed failed requests" >&2; echo "$out" >&2; exit 1; fi
	echo "$rps"
}
issuance() { # name port -> token responses/s (every one a 200 with a token)
	local out bench
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s tests/bench/tokens.lua "http://127.0.0.1:$2" -- /oauth2/token)
	bench=$(echo "$out" | grep '^BENCH ')
	case "$bench" in *" non200=0 badbody=0 sockerr=0 "*) ;; *) echo "$1: $out" >&2; exit 1 ;; esac
	echo "$bench" | sed 's/.* okrps=\([0-9.]*\).*/\1/'
}
# warm the guard's cache with every token, and everyone's connections
run warm-b "$B" >/dev/null
DURATION=5s run warm-d "$D" "$WORK/jwt-tokens" >/dev/null
DURATION=3s run warm-a "$A" >/dev/null
DURATION=3s run warm-c "$C" >/dev/null
DURATION=3s run warm-f "$F" >/dev/null
DURATION=3s run warm-g "$G" >/dev/null
run warm-m "$M" "$WORK/tokens-m" >/dev/null
run warm-n "$N" "$WORK/tokens-n" >/dev/null
DURATION=2s issuance warm-i "$AUTHM" >/dev/null
DURATION=2s issuance warm-j "$AUTHN" >/dev/null

# Each round runs every setup twice, in palindromic order (a b f g c d e e d c g f b a):
# a drift in the machine's speed during a round (other tenants, frequency)
# then weighs on every setup alike, and each ratio is taken within a round.
# Beside req/s, CPU time per request (utime+stime from /proc) is recorded for
# the gateway Caddy and the upstream Caddy in (a), (b), (f) and (g): the
# guard's cost without the noise of the load generator sharing the two cores.
CPID=${PIDS[1]}; UPID=${PIDS[0]}
TICK=$(getconf CLK_TCK)
ORDER=(a b f g c d e m n i j)
CPUKEYS=(a b f g m n i j)
declare -A GWPID=([m]=${PIDS[3]} [n]=${PIDS[4]} [i]=${PIDS[3]} [j]=${PIDS[4]})   # the gateway process of a key, when not CPID
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
declare -A SUM CPU UCPU RPS GW UP   # RPS, GW, UP: per round, indexed "key,round"
measure() { # key port [tokens]; ISSUE=1: token issuance instead of guarded requests
	local t0 u0 rps gw=${GWPID[$1]:-$CPID}
	t0=$(ticks "$gw"); u0=$(ticks "$UPID")
	if [ "${ISSUE:-0}" = 1 ]; then rps=$(issuance "$@"); else rps=$(run "$@"); fi
	CPU[$1]=$(( ${CPU[$1]:-0} + $(ticks "$gw") - t0 ))
	UCPU[$1]=$(( ${UCPU[$1]:-0} + $(ticks "$UPID") - u0 ))
	SUM[$1]=$(awk -v s="${SUM[$1]:-0}" -v r="$rps" 'BEGIN{print s+r}')
}
us() { # key ticks -> microseconds of CPU per request over both runs of key
	awk -v c="$2" -v t="$TICK" -v r="${SUM[$1]}" -v d="$DURATION" 'BEGIN{sub(/s$/, "", d); printf "%.1f", c/t*1e6/(r*d)}'
}
REV=(); for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do REV+=("${ORDER[$i]}"); done
for r in $(seq 1 "$ROUNDS"); do
	SUM=(); CPU=(); UCPU=()
	for k in "${ORDER[@]}" "${REV[@]}"; do
		case $k in
		a) measure a "$A" ;;
		b) measure b "$B" ;;
		c) measure c "$C" ;;
		d) measure d "$D" "$WORK/jwt-tokens" ;;
		e) INTROSPECT=1 measure e "$AUTH" ;;
		f) measure f "$F" ;;
		g) measure g "$G" ;;
		m) measure m "$M" "$WORK/tokens-m" ;;
		n) measure n "$N" "$WORK/tokens-n" ;;
		i) ISSUE=1 measure i "$AUTHM" ;;
		j) ISSUE=1 measure j "$AUTHN" ;;
		esac
	done
	line="round $r:"
	for k in "${ORDER[@]}"; do
		RPS[$k,$r]=$(awk -v s="${SUM[$k]}" 'BEGIN{printf "%.0f", s/2}')
		line+=" ($k) ${RPS[$k,$r]}"
	done
	line+=" req/s; CPU us/req gateway"
	for k in "${CPUKEYS[@]}"; do GW[$k,$r]=$(us "$k" "${CPU[$k]}"); line+=" ($k) ${GW[$k,$r]}"; done
	line+=", upstream"
	for k in "${CPUKEYS[@]}"; do UP[$k,$r]=$(us "$k" "${UCPU[$k]}"); line+=" ($k) ${UP[$k,$r]}"; done
	echo "$line"
done
col() { # array key -> that key's values over the rounds, one a line
	local -n arr=$1
	for r in $(seq 1 "$ROUNDS"); do echo "${arr[$2,$r]}"; done
}
mean() { awk '{s+=$1} END {printf "%.0f", s/NR}'; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.4g", (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN{printf "%.3f", x/y}'; }
rounds() { # x y -> the per-round ratios x/y, one a line
	for r in $(seq 1 "$ROUNDS"); do ratio "${RPS[$1,$r]}" "${RPS[$2,$r]}"; echo; done
}
declare -A M
for k in "${ORDER[@]}"; do M[$k]=$(col RPS "$k" | mean); done
echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds of ${ORDER[*]} ${REV[*]}, $TOKENS distinct tokens, $(nproc) cores"
printf '(a) reverse_proxy alone             %8s req/s\n' "${M[a]}"
printf '(b) oauth2_guard + reverse_proxy    %8s req/s   b/a = %s (goal >= 0.95)\n' "${M[b]}" "$(ratio "${M[b]}" "${M[a]}")"
printf '(c) forward_auth + reverse_proxy    %8s req/s   b/c = %s (goal >= 1.5)\n' "${M[c]}" "$(ratio "${M[b]}" "${M[c]}")"
printf '(d) oauth2_guard, JWT tokens        %8s req/s   d/b = %s (goal >= 0.90)\n' "${M[d]}" "$(ratio "${M[d]}" "${M[b]}")"
printf '(e) introspection                   %8s req/s\n' "${M[e]}"
printf '(f) (b) without identity headers    %8s req/s   f/a = %s\n' "${M[f]}" "$(ratio "${M[f]}" "${M[a]}")"
printf '(g) identity headers, no check      %8s req/s   g/a = %s, b/g = %s\n' "${M[g]}" "$(ratio "${M[g]}" "${M[a]}")" "$(ratio "${M[b]}" "${M[g]}")"
printf '(m) (b) on a twin, metrics on       %8s req/s\n' "${M[m]}"
printf '(n) (m) with OAUTH2GATE_METRICS=off  %8s req/s   m/n = %s (goal >= 0.99)\n' "${M[n]}" "$(ratio "${M[m]}" "${M[n]}")"
printf '(i) issuance on (m)'"'"'s twin           %8s tokens/s\n' "${M[i]}"
printf '(j) issuance on (n)'"'"'s twin           %8s tokens/s   i/j = %s (goal >= 0.99)\n' "${M[j]}" "$(ratio "${M[i]}" "${M[j]}")"
# Per-round ratios, and their median: one noisy round moves a mean, not a median.
for p in b/a b/c d/b f/a g/a b/g m/n i/j; do
	v=$(rounds "${p%/*}" "${p#*/}")
	echo "per-round $p: $(echo $v)  (median $(echo "$v" | median))"
done
cpu="CPU per request, medians: gateway"
for k in "${CPUKEYS[@]}"; do cpu+=" ($k) $(col GW "$k" | median)"; done
cpu+=" us; upstream"
for k in "${CPUKEYS[@]}"; do cpu+=" ($k) $(col UP "$k" | median)"; done
echo "$cpu us"
# What the metrics cost in CPU: the twins' gateway CPU per request, per round, on over off.
for p in m/n i/j; do
	v=$(for r in $(seq 1 "$ROUNDS"); do awk -v x="${GW[${p%/*},$r]}" -v y="${GW[${p#*/},$r]}" 'BEGIN{printf "%.3f\n", x/y}'; done)
	echo "per-round CPU per request $p: $(echo $v)  (median $(echo "$v" | median); above 1 is the metrics' cost)"
done
