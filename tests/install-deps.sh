#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack.
# Debian packages only when missing; `apt-get update` once before installing.
set -euo pipefail

need=()
command -v curl >/dev/null || need+=(curl)   # README flows (tests/readme_test.go)
command -v redis-server >/dev/null || need+=(redis-server)   # Redis store tests (authz/tokenstore, tests/redis_test.go)
[ -x /usr/bin/chromium ] || need+=(chromium)   # the real login and consent pages (tests/chromium_test.go)
command -v node >/dev/null || need+=(nodejs)   # openid-client and browser scripts (tests/openidclient_test.go, tests/chromium_test.go)
command -v npm >/dev/null || need+=(npm)
command -v prometheus >/dev/null || need+=(prometheus)   # a real scrape of the admin /metrics (tests/metrics_test.go)

if ((${#need[@]})); then
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# Debian 12's own nodejs is 18; both node scripts need 20 or later (the machine's Node.js is).
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "${node_major:-0}" -lt 20 ]; then
	echo "install-deps.sh: node $(node --version 2>/dev/null) is older than 20, which openid-client and playwright-core need" >&2
fi

# npm packages of the node scripts: openid-client (tests/oidcclient) and playwright-core, which
# drives /usr/bin/chromium and downloads no browser of its own (tests/browserclient).
here="$(cd "$(dirname "$0")" && pwd)"
for dir in "$here/oidcclient" "$here/browserclient"; do
	if [ ! -d "$dir/node_modules" ]; then
		(cd "$dir" && npm ci --no-audit --no-fund)
	fi
done

# Ory Hydra v2.3.0, a real identity provider for tests/hydra_test.go: built from the Go module
# proxy once (minutes on two cores) and cached by version outside the clone; instant when cached.
"$here/hydra/build.sh" >/dev/null
