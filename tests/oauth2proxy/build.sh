#!/usr/bin/env bash
# Builds oauth2-proxy (default v7.15.6) from the Go module proxy with `go install` and caches the
# binary by version outside the clone: ${OAUTH2GATE_CACHE:-~/.cache/oauth2gate}/oauth2-proxy-<version>.
# Prints its path. The install goes into a temporary GOBIN first and is renamed into place, so an
# interrupted or concurrent build never leaves a half-written binary under the cached name.
# (`oauth2-proxy --version` says "undefined" for a `go install` build: the name holds the version.)
# When the binary is cached this takes milliseconds and does nothing else.
set -euo pipefail

version="${OAUTH2_PROXY_VERSION:-v7.15.6}"
cache="${OAUTH2GATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2gate}"
bin="$cache/oauth2-proxy-$version"
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$cache"
work="$(mktemp -d "$cache/oauth2-proxy-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(cd "$work" && GOBIN="$work/bin" go install "github.com/oauth2-proxy/oauth2-proxy/v7@$version") >&2
"$work/bin/oauth2-proxy" --version >/dev/null
mv "$work/bin/oauth2-proxy" "$bin"
echo "$bin"
