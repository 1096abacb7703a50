#!/usr/bin/env bash
# Token throughput: client_credentials tokens per second through the real Caddy
# binary with oauth2gate on its embedded file store, against go-oauth2's stock
# setup (tests/bench/stockserver) on the same load generator, in the same run.
#
#   bash tests/bench/run.sh
#
# Environment (all optional):
#   DURATION=10s     length of each wrk run
#   ROUNDS=2         rounds; each round is stock then oauth2gate
#   CONNS=32         wrk connections      THREADS=1   wrk threads
#   CADDY=path       use this caddy binary instead of building ./cmd/caddy
#   STOCK_ONLY=1     measure the stock server only (no caddy build or run)
#   BUNTDB=1         also measure oauth2gate on its buntdb store of earlier releases (default 1):
#                    a Caddy built from BUNTDB_REV (default 67d8a08, the last commit whose
#                    embedded store was buntdb) in a git worktree, or BUNTDB_CADDY=path
#   BCRYPT_COST=n    cost of the client secret's bcrypt hash (default: caddy hash-password's)
#   KEEP=1           keep the work directory (logs, Caddyfile, stores) after a good run
#
# Every server listens on 127.0.0.1 only; every wait is bounded; both servers are
# stopped on exit. Exit status is non-zero when a warm-up fails or any measured
# round saw a non-200 response or a socket error.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR="$ROOT/tests/bench"
LUA="$BENCH_DIR/tokens.lua"

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
STOCK_ONLY=${STOCK_ONLY:-0}
BUNTDB=${BUNTDB:-1}
BUNTDB_REV=${BUNTDB_REV:-67d8a08}
[[ $STOCK_ONLY == 1 ]] && BUNTDB=0
KEEP=${KEEP:-0}
CLIENT_ID=bench
CLIENT_SECRET=bench-secret
STOCK_PATH=/token
GATE_PATH=/oauth2/token
BODY="grant_type=client_credentials&client_id=$CLIENT_ID&client_secret=$CLIENT_SECRET"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/oauth2gate-bench.XXXXXX")
PIDS=()
OK_EXIT=0

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
	if [[ $OK_EXIT == 1 && $KEEP != 1 ]]; then
		rm -rf "$WORK"
	else
		log "work directory kept: $WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
if ! command -v wrk >/dev/null 2>&1; then
	log "wrk not found: installing it from Debian's packages"
	SUDO=""
	if [[ $(id -u) != 0 ]]; then
		command -v sudo >/dev/null 2>&1 || die "wrk is missing and this is not root: apt-get install -y wrk"
		SUDO=sudo
	fi
	$SUDO apt-get update
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
fi
command -v curl >/dev/null 2>&1 || die "curl is required"
command -v go >/dev/null 2>&1 || die "go is required"

# ---------------------------------------------------------------- build
cd "$ROOT"
log "building the stock go-oauth2 server"
if ! go build -o "$WORK/stockserver" ./tests/bench/stockserver 2>"$WORK/stock-build.log"; then
	# go-oauth2's manage package imports its generates package, which needs
	# github.com/golang-jwt/jwt/v5; when the repo's go.sum does not list it yet,
	# build with a scratch copy of go.mod/go.sum instead (the repo's files stay as they are).
	if grep -q 'missing go.sum entry' "$WORK/stock-build.log"; then
		log "repo go.sum lacks an entry the stock server needs; building with a scratch go.mod/go.sum"
		mkdir -p "$WORK/mod"
		cp go.mod go.sum "$WORK/mod/"
		go get -modfile="$WORK/mod/go.mod" github.com/go-oauth2/oauth2/v4/generates@v4.5.4 >>"$WORK/stock-build.log" 2>&1 ||
			{ cat "$WORK/stock-build.log" >&2; die "could not resolve the stock server's dependencies"; }
		go build -modfile="$WORK/mod/go.mod" -o "$WORK/stockserver" ./tests/bench/stockserver 2>>"$WORK/stock-build.log" ||
			{ cat "$WORK/stock-build.log" >&2; die "stock server build failed"; }
	else
		cat "$WORK/stock-build.log" >&2
		die "stock server build failed"
	fi
fi

if [[ $STOCK_ONLY != 1 ]]; then
	if [[ -n ${CADDY:-} ]]; then
		[[ -x $CADDY ]] || die "CADDY=$CADDY is not an executable"
		log "using caddy binary $CADDY"
	else
		log "building caddy with oauth2gate (go build ./cmd/caddy)"
		go build -o "$WORK/caddy" ./cmd/caddy || die "caddy build failed (go build -o $WORK/caddy ./cmd/caddy)"
		CADDY="$WORK/caddy"
	fi
fi
if [[ $BUNTDB == 1 ]]; then
	if [[ -n ${BUNTDB_CADDY:-} ]]; then
		[[ -x $BUNTDB_CADDY ]] || die "BUNTDB_CADDY=$BUNTDB_CADDY is not an executable"
		log "using caddy binary $BUNTDB_CADDY for the buntdb store"
	else
		log "building caddy at $BUNTDB_REV (the buntdb store) in a git worktree"
		git -C "$ROOT" worktree add --detach -q "$WORK/buntdb-src" "$BUNTDB_REV" ||
			die "git worktree add $BUNTDB_REV failed (set BUNTDB_CADDY, or BUNTDB=0)"
		(cd "$WORK/buntdb-src" && go build -o "$WORK/caddy-buntdb" ./cmd/caddy) || die "building caddy at $BUNTDB_REV failed"
		git -C "$ROOT" worktree remove --force "$WORK/buntdb-src"
		BUNTDB_CADDY="$WORK/caddy-buntdb"
	fi
fi

# ---------------------------------------------------------------- ports
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
TAKEN=" "
free_port() { # a loopback port nobody listens on and that this script has not handed out
	local i p
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		[[ $TAKEN == *" $p "* ]] && continue
		port_busy "$p" && continue
		TAKEN+="$p "
		echo "$p"
		return 0
	done
	die "no free loopback port found in 200 tries"
}
STOCK_PORT=$(free_port); TAKEN+="$STOCK_PORT "
GATE_PORT=$(free_port); TAKEN+="$GATE_PORT "
ADMIN_PORT=$(free_port); TAKEN+="$ADMIN_PORT "
BUNT_PORT=$(free_port); TAKEN+="$BUNT_PORT "
BUNT_ADMIN=$(free_port); TAKEN+="$BUNT_ADMIN "

# ---------------------------------------------------------------- servers
wait_port() { # wait_port NAME PID PORT LOG: up to 30 s for the port to accept connections
	local name=$1 pid=$2 port=$3 logf=$4 i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || { tail -n 40 "$logf" >&2; die "$name exited during start-up (log: $logf)"; }
		port_busy "$port" && return 0
		sleep 0.1
	done
	tail -n 40 "$logf" >&2
	die "$name did not listen on 127.0.0.1:$port within 30 s (log: $logf)"
}

STOCK_DB="$WORK/stock-tokens.db"
log "starting the stock server on 127.0.0.1:$STOCK_PORT"
"$WORK/stockserver" -addr "127.0.0.1:$STOCK_PORT" -db "$STOCK_DB" >"$WORK/stock.log" 2>&1 &
STOCK_PID=$!
PIDS+=("$STOCK_PID")
wait_port "stock server" "$STOCK_PID" "$STOCK_PORT" "$WORK/stock.log"

GATE_STORE="$WORK/oauth2"
if [[ $STOCK_ONLY != 1 ]]; then
	log "hashing the client secret with caddy hash-password"
	HASH_ARGS=(hash-password --plaintext "$CLIENT_SECRET")
	[[ -n ${BCRYPT_COST:-} ]] && HASH_ARGS+=(--bcrypt-cost "$BCRYPT_COST")
	SECRET_HASH=$("$CADDY" "${HASH_ARGS[@]}" 2>"$WORK/hash.log" | tail -n 1) || SECRET_HASH=""
	[[ $SECRET_HASH == \$2* || $SECRET_HASH == \$argon2id* ]] ||
		{ cat "$WORK/hash.log" >&2; die "caddy hash-password gave no hash: '$SECRET_HASH'"; }

	start_gate() { # start_gate NAME CADDY PORT ADMIN STORE: one Caddy with the same config
		local name=$1 bin=$2 port=$3 admin=$4 store=$5
		mkdir -p "$store" "$WORK/xdg-$name/data" "$WORK/xdg-$name/config"
		cat >"$WORK/Caddyfile.$name" <<EOF
{
	admin 127.0.0.1:$admin
	default_bind 127.0.0.1
	persist_config off
	auto_https off
	oauth2 {
		issuer http://127.0.0.1:$port
		store file $store
		client $CLIENT_ID {
			secret $SECRET_HASH
			grants client_credentials
			scopes read write
		}
	}
}
http://127.0.0.1:$port {
	oauth2_server
}
EOF
		log "starting $name ($bin) on 127.0.0.1:$port (admin 127.0.0.1:$admin)"
		XDG_DATA_HOME="$WORK/xdg-$name/data" XDG_CONFIG_HOME="$WORK/xdg-$name/config" \
			"$bin" run --config "$WORK/Caddyfile.$name" --adapter caddyfile >"$WORK/$name.log" 2>&1 &
		local pid=$!
		PIDS+=("$pid")
		wait_port "$name" "$pid" "$port" "$WORK/$name.log"
	}
	start_gate oauth2gate "$CADDY" "$GATE_PORT" "$ADMIN_PORT" "$GATE_STORE"
	[[ $BUNTDB != 1 ]] || start_gate buntdb "$BUNTDB_CADDY" "$BUNT_PORT" "$BUNT_ADMIN" "$WORK/oauth2-buntdb"
fi

# ---------------------------------------------------------------- warm-up
warm_up() { # warm_up NAME URL: 5 token requests, each must be 200 with an access_token
	local name=$1 url=$2 i code body
	for ((i = 1; i <= 5; i++)); do
		code=$(curl -sS --max-time 30 -o "$WORK/warm.json" -w '%{http_code}' \
			-H 'Content-Type: application/x-www-form-urlencoded' --data "$BODY" "$url") || code=000
		body=$(cat "$WORK/warm.json" 2>/dev/null || true)
		if [[ $code != 200 || $body != *'"access_token"'* ]]; then
			log "$name warm-up request $i: POST $url"
			log "  status: $code"
			log "  body:   $body"
			die "$name did not issue a token"
		fi
	done
	log "$name warm-up ok: $(printf '%s' "$body" | head -c 200)"
}
warm_up stock "http://127.0.0.1:$STOCK_PORT$STOCK_PATH"
[[ $STOCK_ONLY == 1 ]] || warm_up oauth2gate "http://127.0.0.1:$GATE_PORT$GATE_PATH"
[[ $BUNTDB != 1 ]] || warm_up buntdb "http://127.0.0.1:$BUNT_PORT$GATE_PATH"

# ---------------------------------------------------------------- measure
store_bytes() { # apparent size in bytes of a file or directory tree
	if [[ -e $1 ]]; then du -sb "$1" | cut -f1; else echo 0; fi
}

RESULTS="$WORK/results.tsv" # round side rps okrps ok non200 sockerr p50 p99 growth
: >"$RESULTS"
FAILED=0
run_wrk() { # run_wrk ROUND SIDE PORT PATH STORE
	local round=$1 side=$2 port=$3 path=$4 store=$5 out before after line
	out="$WORK/wrk-$side-$round.txt"
	before=$(store_bytes "$store")
	log "round $round: $side (wrk -t$THREADS -c$CONNS -d$DURATION http://127.0.0.1:$port$path)"
	timeout 600 wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$LUA" \
		"http://127.0.0.1:$port" -- "$path" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "wrk failed for $side"; }
	sleep 1 # let a batching store reach the disk before the size is read
	after=$(store_bytes "$store")
	grep -E '^(status codes|non-200|first bad)' "$out" | sed 's/^/    /' >&2
	line=$(grep '^BENCH ' "$out") || { cat "$out" >&2; die "no BENCH line from wrk ($out)"; }
	# BENCH requests= ok= non200= badbody= sockerr= seconds= rps= okrps= p50_ms= p99_ms=
	awk -v r="$round" -v s="$side" -v g=$((after - before)) '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		printf "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\n", r, s, v["rps"], v["okrps"], v["ok"],
			v["non200"] + v["badbody"], v["sockerr"], v["p50_ms"], v["p99_ms"], g
	}' <<<"$line" >>"$RESULTS"
	if grep -qE 'non200=[1-9]|badbody=[1-9]|sockerr=[1-9]' <<<"$line"; then
		log "  WARNING: $side round $round had failed requests (see $out)"
		FAILED=1
	fi
}

for ((r = 1; r <= ROUNDS; r++)); do
	run_wrk "$r" stock "$STOCK_PORT" "$STOCK_PATH" "$STOCK_DB"
	# oauth2gate's two stores in turn, the order swapped every round
	if ((r % 2)); then sides=(oauth2gate buntdb); else sides=(buntdb oauth2gate); fi
	for side in "${sides[@]}"; do
		case $side in
		oauth2gate) [[ $STOCK_ONLY == 1 ]] || run_wrk "$r" oauth2gate "$GATE_PORT" "$GATE_PATH" "$GATE_STORE" ;;
		buntdb) [[ $BUNTDB != 1 ]] || run_wrk "$r" buntdb "$BUNT_PORT" "$GATE_PATH" "$WORK/oauth2-buntdb" ;;
		esac
	done
done

# ---------------------------------------------------------------- report
echo
echo "client_credentials token throughput — wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS round(s), $(nproc) CPU(s), $(go version | cut -d' ' -f3)"
echo "stock = go-oauth2 v4.5.4 NewDefaultServer + buntdb NewFileTokenStore, POST $STOCK_PATH"
[[ $STOCK_ONLY == 1 ]] || echo "oauth2gate = $(basename "$CADDY") run, oauth2 app with 'store file' (pebble), POST $GATE_PATH"
[[ $BUNTDB != 1 ]] || echo "buntdb = the same Caddy config on $(basename "$BUNTDB_CADDY"), built at $BUNTDB_REV (the buntdb store)"
echo
awk -F'\t' '
BEGIN {
	printf "%-6s %-11s %10s %10s %8s %8s %8s %8s %12s\n", "round", "server", "req/s", "tokens/s", "failed", "sockerr", "p50 ms", "p99 ms", "bytes/token"
}
{
	bpt = ($5 > 0) ? sprintf("%.0f", $10 / $5) : "n/a"
	printf "%-6s %-11s %10.1f %10.1f %8d %8d %8.2f %8.2f %12s\n", $1, $2, $3, $4, $6, $7, $8, $9, bpt
	n[$2]++; rps[$2] += $3; ok[$2] += $4; tok[$2] += $5; grow[$2] += $10
}
END {
	print ""
	split("stock oauth2gate buntdb", sides, " ")
	for (i = 1; i <= 3; i++) {
		s = sides[i]
		if (!n[s]) continue
		mrps[s] = rps[s] / n[s]; mok[s] = ok[s] / n[s]
		bpt = (tok[s] > 0) ? sprintf("%.0f", grow[s] / tok[s]) : "n/a"
		printf "mean   %-11s %10.1f %10.1f   store growth %s bytes/token (%d bytes for %d tokens)\n", s, mrps[s], mok[s], bpt, grow[s], tok[s]
	}
	if (n["stock"] && n["oauth2gate"]) {
		printf "ratio  oauth2gate/stock  req/s %.3f   tokens/s %.3f\n", \
			(mrps["stock"] > 0 ? mrps["oauth2gate"] / mrps["stock"] : 0), \
			(mok["stock"] > 0 ? mok["oauth2gate"] / mok["stock"] : 0)
	}
	if (n["buntdb"] && n["oauth2gate"]) {
		printf "ratio  oauth2gate/buntdb tokens/s %.3f (goal >= 1.0)\n", (mok["buntdb"] > 0 ? mok["oauth2gate"] / mok["buntdb"] : 0)
	}
}' "$RESULTS"
echo
echo "store sizes at the end: stock $(store_bytes "$STOCK_DB") bytes ($STOCK_DB)$([[ $STOCK_ONLY == 1 ]] || echo ", oauth2gate $(store_bytes "$GATE_STORE") bytes ($GATE_STORE, $(find "$GATE_STORE" -type f | wc -l) file(s))")"

if [[ $FAILED == 1 ]]; then
	log "some requests failed: the figures above count them in req/s but not in tokens/s"
	exit 1
fi
OK_EXIT=1
