#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack.
# Debian packages only when missing; `apt-get update` once before installing.
set -euo pipefail

need=()
command -v curl >/dev/null || need+=(curl)   # README flows (tests/readme_test.go)
command -v redis-server >/dev/null || need+=(redis-server)   # Redis store tests (authz/tokenstore, tests/redis_test.go)
# (chromium and node packages join this list as the tests that use them land.)

if ((${#need[@]})); then
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# openid-client interop check (tests/openidclient_test.go): its npm packages, where node is present.
oidcclient="$(cd "$(dirname "$0")" && pwd)/oidcclient"
if command -v node >/dev/null && command -v npm >/dev/null && [ ! -d "$oidcclient/node_modules" ]; then
	(cd "$oidcclient" && npm install --no-audit --no-fund)
fi
