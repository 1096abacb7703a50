# Shared by the benchmark scripts (guard.sh, redis.sh, trust.sh): source it after
# `set -euo pipefail` and `cd` to the repository root.
#   bench_need CMD...          installs the Debian packages of the missing commands
#                              (each command's package has its name: wrk, redis-server)
#   bench_start                WORK (a temporary directory), PIDS and a cleanup trap that
#                              stops every process in PIDS and removes WORK and the
#                              directories in BENCH_DIRS; CADDY built from ./cmd/caddy
#                              unless given (KEEP=1 keeps them; a failed run keeps them too)
#   freeport                   a free loopback port, none given twice in one run (after
#                              bench_start: the kernel may hand a closed port out again)
#   waitfor NAME PORT PID LOG  until PORT accepts connections; fails with LOG's tail if
#                              PID exits first or nothing listens within 10 s

bench_need() {
	local need=() c
	for c in "$@"; do command -v "$c" >/dev/null || need+=("$c"); done
	((${#need[@]})) || return 0
	local sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
}

bench_start() {
	WORK=$(mktemp -d)
	PIDS=()
	BENCH_DIRS=()
	trap bench_cleanup EXIT
	if [ -z "${CADDY:-}" ]; then
		CADDY=$WORK/caddy
		go build -o "$CADDY" ./cmd/caddy
	fi
}

bench_cleanup() {
	local rc=$? p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ "${KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
		echo "work directory kept: $WORK ${BENCH_DIRS[*]}"
	else
		rm -rf "$WORK" "${BENCH_DIRS[@]}"
	fi
}

freeport() {
	local p
	for _ in $(seq 1 20); do
		p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
		[ -n "${WORK:-}" ] || { echo "$p"; return 0; }
		grep -qx "$p" "$WORK/.ports" 2>/dev/null && continue
		echo "$p" >>"$WORK/.ports"
		echo "$p"
		return 0
	done
	echo "freeport: no new free port in 20 tries" >&2
	return 1
}

waitfor() {
	for _ in $(seq 1 100); do
		kill -0 "$3" 2>/dev/null || { echo "$1 exited during start-up"; tail -20 "$4"; exit 1; }
		if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "$1 did not listen on 127.0.0.1:$2"; tail -20 "$4"; exit 1
}
