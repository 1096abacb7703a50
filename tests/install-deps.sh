#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack.
# Debian packages only when missing; `apt-get update` once before installing.
set -euo pipefail

need=()
command -v curl >/dev/null || need+=(curl)   # README flows (tests/readme_test.go)
# (redis-server, chromium and node packages join this list as the tests that use them land.)

if ((${#need[@]})); then
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
