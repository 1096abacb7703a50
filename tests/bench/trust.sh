#!/usr/bin/env bash
# Trusted-issuer benchmark (issue 13), one run, the same upstream (a Caddy `respond` site in its
# own process) and the same load generator as guard.sh:
#   (b) oauth2_guard with this server's own opaque tokens, warm cache (a Caddy with a store)
#   (t) oauth2_guard in a Caddy that only guards, with another issuer's JWT access tokens
#       (an oauth2gate with access_token format jwt RS256, trusted by a `trust` block), warm cache
#   (i) the same guard-only Caddy with another issuer's opaque tokens, introspected (RFC 7662)
#       once each, then from the introspection cache (cache_ttl 5m)
# and the peers a user would pick instead (PEERS=0 leaves them out), built from the Go module
# proxy and cached by version (tests/oauth2proxy/build.sh, tests/hydra/build.sh):
#   (p) oauth2-proxy v7.15.6 in front of the same upstream, --skip-jwt-bearer-tokens, verifying
#       (t)'s JWTs against the same issuer (its discovery and JWKS)
#   (f) Caddy forward_auth to that oauth2-proxy's /oauth2/auth, then reverse_proxy (the guard-only
#       Caddy, another site)
#   (g) oauth2gate issuance: client_credentials at (b)'s issuer, tokens.lua as in run.sh
#   (h) Ory Hydra v2.3.0 issuance, the same request; its default secret hashing (PBKDF2, 25000
#       iterations), `hydra serve all --dev`, SQLite in a file on /dev/shm
#   (k) (h) with oauth2.hashers.pbkdf2.iterations 1 (another Hydra process)
#   (n) oauth2gate introspection (/oauth2/introspect, client_secret_basic) of (b)'s tokens
#   (y) Hydra introspection (admin /admin/oauth2/introspect) of as many tokens of (h)'s
# Every guard and introspection setup sends TOKENS distinct tokens in turn. Each round runs every
# setup twice in palindromic order (b t i p f g h k n y y n k h g f p i t b); each ratio is taken
# within a round and the median of the per-round ratios is printed, with its goal.
# Usage: bash tests/bench/trust.sh   (DURATION=4s ROUNDS=6 TOKENS=2000 CONNS=32 CADDY=./caddy PEERS=1)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-4s}
ROUNDS=${ROUNDS:-6}
TOKENS=${TOKENS:-2000}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
PEERS=${PEERS:-1}

. tests/bench/lib.sh
bench_need wrk
bench_start
if [ "$PEERS" = 1 ]; then
	OAUTH2_PROXY=$(bash tests/oauth2proxy/build.sh)
	HYDRA=$(bash tests/hydra/build.sh)
fi

AUTH=$(freeport); AUTH2=$(freeport); UP=$(freeport); B=$(freeport); T=$(freeport); I=$(freeport)
ADMIN=$(freeport); ADMIN2=$(freeport); ADMIN3=$(freeport); ADMIN4=$(freeport)
OP=$(freeport); FA=$(freeport); HP=$(freeport); HA=$(freeport); KP=$(freeport); KA=$(freeport)
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
if [ "$PEERS" = 1 ]; then
	# (f): oauth2-proxy answers /oauth2/auth with 202 and the caller's identity in X-Auth-Request-*
	# (--set-xauthrequest), which forward_auth copies onto the request it sends upstream.
	cat >>"$WORK/Caddyfile.trust" <<CF
http://127.0.0.1:$FA {
	forward_auth 127.0.0.1:$OP {
		uri /oauth2/auth
		copy_headers X-Auth-Request-User X-Auth-Request-Email
	}
	reverse_proxy 127.0.0.1:$UP
}
CF
fi
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

issue() { # port file [curl credentials...]: TOKENS distinct tokens from the real token endpoint, one a line
	local port=$1 file=$2
	shift 2
	(($#)) || set -- -u bench:bench-secret
	: >"$file"
	for i in $(seq 1 "$TOKENS"); do
		curl -s -m 10 -X POST "http://127.0.0.1:$port/oauth2/token" "$@" \
			-d grant_type=client_credentials -d scope=read | grep -o '"access_token":"[^"]*"' | cut -d'"' -f4 >>"$file"
	done
}
issue "$AUTH" "$WORK/tokens"
[ "$(grep -c . "$WORK/tokens")" = "$TOKENS" ] || { echo "opaque tokens missing"; exit 1; }
issue "$AUTH2" "$WORK/jwt-tokens"
[ "$(grep -c '\.' "$WORK/jwt-tokens")" = "$TOKENS" ] || { echo "JWT tokens missing"; exit 1; }

if [ "$PEERS" = 1 ]; then
	# (p) and (f): one oauth2-proxy, an OIDC client of the JWT issuer (discovery at start-up, so
	# after that issuer listens). Our JWTs carry aud = the issuer URL (RFC 9068 lets the resource
	# be named so); oauth2-proxy accepts only its client_id unless told another audience. Its
	# request log is off: the Caddy sites here keep no access log either.
	"$OAUTH2_PROXY" --provider=oidc --oidc-issuer-url="http://127.0.0.1:$AUTH2" \
		--client-id=bench --client-secret=bench-secret --oidc-extra-audience="http://127.0.0.1:$AUTH2" \
		--skip-jwt-bearer-tokens=true --email-domain='*' --set-xauthrequest=true \
		--upstream="http://127.0.0.1:$UP/" --http-address="127.0.0.1:$OP" \
		--cookie-secret="$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')" \
		--cookie-secure=false --request-logging=false >"$WORK/oauth2-proxy.log" 2>&1 &
	PIDS+=($!)
	OPPID=${PIDS[-1]}
	waitfor oauth2-proxy "$OP" "$OPPID" "$WORK/oauth2-proxy.log"
	# (h), (k), (y): two Hydras, each with its own SQLite file, telemetry off; (k) hashes with 1
	# PBKDF2 iteration. A client's hash records its iterations, so each Hydra gets its own client.
	# Not DSN=memory: that database lives only while one of its pooled connections does, and when
	# wrk stops, the requests it leaves in flight cancel their queries ("sqlite select one: context
	# canceled"), the pool drops those connections, and once it has dropped them all every client
	# lookup fails (401 invalid_client to every request). The file goes on a RAM disk (/dev/shm)
	# when there is one, so Hydra pays no more for its storage than in memory.
	HDB=$WORK
	if [ -d /dev/shm ] && [ -w /dev/shm ]; then
		HDB=$(mktemp -d /dev/shm/oauth2gate-bench.XXXXXX)
		BENCH_DIRS+=("$HDB")
	fi
	hydra() { # name public-port admin-port [VAR=value...]
		local name=$1 pub=$2 adm=$3 dsn="sqlite://$HDB/$1.sqlite?_fk=true" i
		shift 3
		DSN=$dsn timeout 120 "$HYDRA" migrate sql up -e --yes >"$WORK/$name-migrate.log" 2>&1 ||
			{ echo "$name: migrations failed"; tail -20 "$WORK/$name-migrate.log"; exit 1; }
		env DSN="$dsn" SECRETS_SYSTEM="$(python3 -c 'import secrets; print(secrets.token_hex(24))')" \
			SERVE_PUBLIC_HOST=127.0.0.1 SERVE_PUBLIC_PORT="$pub" SERVE_ADMIN_HOST=127.0.0.1 SERVE_ADMIN_PORT="$adm" \
			URLS_SELF_ISSUER="http://127.0.0.1:$pub" LOG_LEVEL=warn "$@" \
			"$HYDRA" serve all --dev --sqa-opt-out >"$WORK/$name.log" 2>&1 &
		PIDS+=($!)
		for i in $(seq 1 300); do
			[ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$adm/health/ready")" = 200 ] && break
			kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "$name exited during start-up"; tail -20 "$WORK/$name.log"; exit 1; }
			[ "$i" = 300 ] && { echo "$name not ready within 30 s"; tail -20 "$WORK/$name.log"; exit 1; }
			sleep 0.1
		done
		code=$(curl -s -m 10 -o "$WORK/$name-client.json" -w '%{http_code}' -X POST "http://127.0.0.1:$adm/admin/clients" \
			-H 'Content-Type: application/json' -d '{"client_id":"bench","client_secret":"bench-secret",
			"grant_types":["client_credentials"],"scope":"read write","token_endpoint_auth_method":"client_secret_post"}')
		[ "$code" = 201 ] || { echo "$name: creating the client answers $code"; cat "$WORK/$name-client.json"; exit 1; }
	}
	hydra hydra "$HP" "$HA"
	HPID=${PIDS[-1]}
	hydra hydra-1iter "$KP" "$KA" OAUTH2_HASHERS_PBKDF2_ITERATIONS=1
	KPID=${PIDS[-1]}
	issue "$HP" "$WORK/hydra-tokens" -d client_id=bench -d client_secret=bench-secret
	[ "$(grep -c . "$WORK/hydra-tokens")" = "$TOKENS" ] || { echo "Hydra tokens missing"; exit 1; }
fi

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
if [ "$PEERS" = 1 ]; then
	for port in $OP $FA; do
		code=$(curl -s -o "$WORK/body" -w '%{http_code}' "http://127.0.0.1:$port/orders" -H "Authorization: Bearer $(head -1 "$WORK/jwt-tokens")")
		[ "$code" = 200 ] && [ "$(cat "$WORK/body")" = ok ] || { echo "oauth2-proxy setup on port $port answers $code to a JWT"; tail -20 "$WORK/oauth2-proxy.log"; exit 1; }
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/orders" -H "Authorization: Bearer $(head -1 "$WORK/tokens")")
		case $code in 401 | 403) ;; *) echo "oauth2-proxy setup on port $port lets an opaque token through ($code)"; exit 1 ;; esac
	done
	for x in "$AUTH /oauth2/introspect $WORK/tokens" "$HA /admin/oauth2/introspect $WORK/hydra-tokens"; do
		set -- $x
		curl -s -u bench:bench-secret -d "token=$(head -1 "$3")" "http://127.0.0.1:$1$2" | grep -q '"active":true' ||
			{ echo "introspection at $1$2 does not find its token active"; exit 1; }
	done
fi

run() { # name port tokens -> req/s
	local out failed rps
	out=$(TOKENS_FILE=$3 wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s tests/bench/guard.lua "http://127.0.0.1:$2/orders")
	failed=$(echo "$out" | awk '/^failed/ {print $2}')
	rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
	if [ "${failed:-1}" != 0 ]; then echo "$1: $failed failed requests" >&2; echo "$out" >&2; exit 1; fi
	echo "$rps"
}
issuance() { # name port -> tokens/s (200 with an access_token); any other answer fails the run
	local out line
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 10s -s tests/bench/tokens.lua "http://127.0.0.1:$2" -- /oauth2/token)
	line=$(grep '^BENCH ' <<<"$out") || { echo "$1: no BENCH line" >&2; echo "$out" >&2; exit 1; }
	if ! grep -q ' non200=0 badbody=0 sockerr=0 ' <<<"$line"; then echo "$1: failed requests" >&2; echo "$out" >&2; exit 1; fi
	sed -E 's/.* okrps=([0-9.]+).*/\1/' <<<"$line"
}
export BASIC_AUTH=$(printf 'bench:bench-secret' | base64)
measure() { # key -> req/s (tokens/s for issuance)
	case $1 in
	b) run b "$B" "$WORK/tokens" ;;
	t) run t "$T" "$WORK/jwt-tokens" ;;
	i) run i "$I" "$WORK/tokens" ;;
	p) run p "$OP" "$WORK/jwt-tokens" ;;
	f) run f "$FA" "$WORK/jwt-tokens" ;;
	g) issuance g "$AUTH" ;;
	h) issuance h "$HP" ;;
	k) issuance k "$KP" ;;
	n) INTROSPECT=1 run n "$AUTH" "$WORK/tokens" ;;
	y) INTROSPECT=1 INTROSPECT_PATH=/admin/oauth2/introspect run y "$HA" "$WORK/hydra-tokens" ;;
	esac
}
ORDER=(b t i)
[ "$PEERS" = 1 ] && ORDER+=(p f g h k n y)
REV=(); for ((j = ${#ORDER[@]} - 1; j >= 0; j--)); do REV+=("${ORDER[$j]}"); done
# Warm every cache with every token, and everyone's connections.
for k in "${ORDER[@]}"; do measure "$k" >/dev/null; done

# Beside req/s, the CPU time (utime+stime from /proc) that the serving processes spend per request:
# each setup's own server (for (f) the Caddy and the oauth2-proxy behind it) and, for the gateways,
# the upstream. It does not count the load generator, and moves less with the machine's load.
UPID=${PIDS[0]}; AUTHPID=${PIDS[1]}; TRUSTPID=${PIDS[3]}
declare -A SERVER=([b]=$AUTHPID [t]=$TRUSTPID [i]=$TRUSTPID [g]=$AUTHPID [n]=$AUTHPID)
if [ "$PEERS" = 1 ]; then
	SERVER+=([p]=$OPPID [f]="$TRUSTPID $OPPID" [h]=$HPID [k]=$KPID [y]=$HPID)
fi
GATEWAYS=" b t i p f "
TICK=$(getconf CLK_TCK)
ticks() { local p s=0; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$s"; }
us() { # ticks summed-req/s -> microseconds of CPU per request over both runs of a setup
	awk -v c="$1" -v t="$TICK" -v r="$2" -v d="$DURATION" 'BEGIN{sub(/s$/, "", d); printf "%.1f", c/t*1e6/(r*d)}'
}
declare -A SUM RPS CPU UCPU SCPU UPCPU # RPS, SCPU, UPCPU: per round, indexed "key,round"
for r in $(seq 1 "$ROUNDS"); do
	SUM=(); CPU=(); UCPU=()
	for k in "${ORDER[@]}" "${REV[@]}"; do
		# shellcheck disable=SC2086 # SERVER values are lists of pids
		s0=$(ticks ${SERVER[$k]}); u0=$(ticks "$UPID")
		v=$(measure "$k")
		CPU[$k]=$((${CPU[$k]:-0} + $(ticks ${SERVER[$k]}) - s0))
		UCPU[$k]=$((${UCPU[$k]:-0} + $(ticks "$UPID") - u0))
		SUM[$k]=$(awk -v s="${SUM[$k]:-0}" -v r="$v" 'BEGIN{print s+r}')
	done
	line="round $r:"
	for k in "${ORDER[@]}"; do
		RPS[$k,$r]=$(awk -v s="${SUM[$k]}" 'BEGIN{printf "%.0f", s/2}')
		line+=" ($k) ${RPS[$k,$r]}"
	done
	line+=" req/s; CPU us/req server"
	for k in "${ORDER[@]}"; do SCPU[$k,$r]=$(us "${CPU[$k]}" "${SUM[$k]}"); line+=" ($k) ${SCPU[$k,$r]}"; done
	line+=", upstream"
	for k in "${ORDER[@]}"; do
		UPCPU[$k,$r]=$(us "${UCPU[$k]}" "${SUM[$k]}")
		[[ $GATEWAYS == *" $k "* ]] && line+=" ($k) ${UPCPU[$k,$r]}"
	done
	echo "$line"
done
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.4g", (v[NR/2]+v[NR/2+1])/2}'; }
mean() { awk '{s+=$1} END {printf "%.0f", s/NR}'; }
declare -A NAME=(
	[b]="oauth2_guard, own opaque tokens" [t]="oauth2_guard, trusted issuer's JWTs"
	[i]="oauth2_guard, introspected opaque" [p]="oauth2-proxy in front, JWTs"
	[f]="forward_auth to oauth2-proxy, JWTs" [g]="oauth2gate issuance (tokens/s)"
	[h]="Hydra issuance, PBKDF2 default" [k]="Hydra issuance, PBKDF2 1 iteration"
	[n]="oauth2gate introspection" [y]="Hydra introspection (admin)"
)
col() { # array key -> that key's values over the rounds, one a line
	local -n arr=$1
	for r in $(seq 1 "$ROUNDS"); do echo "${arr[$2,$r]}"; done
}
echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds of ${ORDER[*]} ${REV[*]}, $TOKENS distinct tokens, $(nproc) cores"
echo "setup                                      req/s   server CPU us/req   upstream CPU us/req  (mean; medians)"
for k in "${ORDER[@]}"; do
	u=-
	[[ $GATEWAYS == *" $k "* ]] && u=$(col UPCPU "$k" | median)
	printf '(%s) %-36s %9s %19s %21s\n' "$k" "${NAME[$k]}" "$(col RPS "$k" | mean)" "$(col SCPU "$k" | median)" "$u"
done
GOALS=("t/b 0.95" "i/b 0.95")
[ "$PEERS" = 1 ] && GOALS+=("t/p 3" "t/f 3" "g/h 10" "g/k 10" "n/y 10")
for gl in "${GOALS[@]}"; do
	set -- $gl
	x=${1%/*} y=${1#*/}
	v=$(for r in $(seq 1 "$ROUNDS"); do awk -v a="${RPS[$x,$r]}" -v b="${RPS[$y,$r]}" 'BEGIN{printf "%.3f\n", a/b}'; done)
	m=$(echo "$v" | median)
	verdict=$(awk -v m="$m" -v g="$2" 'BEGIN{print (m >= g) ? "holds" : "DOES NOT HOLD"}')
	c=$(for r in $(seq 1 "$ROUNDS"); do awk -v a="${SCPU[$y,$r]}" -v b="${SCPU[$x,$r]}" 'BEGIN{printf "%.3f\n", a/b}'; done | median)
	echo "per-round $1: $(echo $v)  (median $m; goal >= $2: $verdict; server CPU per request $y/$x, median $c)"
done
