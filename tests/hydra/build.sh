#!/usr/bin/env bash
# Builds Ory Hydra (default v2.3.0) from the Go module proxy and caches the binary by version
# outside the clone: ${OAUTH2GATE_CACHE:-~/.cache/oauth2gate}/hydra-<version>. Prints its path.
# Hydra's go.mod replaces dependencies with forks, so it is built inside its own module (a
# `go get -tool` from ours would ignore those replaces); the `replace ... => ./internal/httpclient`
# line is dropped because that directory is not in the module zip and the server does not need it.
# When the binary is cached this takes milliseconds and does nothing else.
set -euo pipefail

version="${HYDRA_VERSION:-v2.3.0}"
cache="${OAUTH2GATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth2gate}"
bin="$cache/hydra-$version"
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$cache"
work="$(mktemp -d "$cache/hydra-build.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

dir="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/ory/hydra/v2@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
	echo "build.sh: go mod download gave no directory for hydra $version" >&2
	exit 1
fi
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
sed -i '/=> \.\/internal\/httpclient/d' "$work/src/go.mod"
(cd "$work/src" && GOFLAGS=-mod=mod CGO_ENABLED=1 go build -trimpath \
	-tags sqlite,sqlite_omit_load_extension -o "$work/hydra" .) >&2
"$work/hydra" version >/dev/null
mv "$work/hydra" "$bin"
echo "$bin"
