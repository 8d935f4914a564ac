#!/usr/bin/env bash
# Installs Debian packages with apt-get unless they are present (one `dpkg-query` each, so a
# second run does nothing). With no argument: the packages the tests and benchmarks use.
#
#   scripts/install-system-deps.sh [PACKAGE...]
set -euo pipefail
if (($#)); then
    packages=("$@")
else
    packages=(redis-server docker.io debootstrap docker-registry wrk nginx-light
              libnginx-mod-http-echo openjdk-17-jre-headless)
fi
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "==> installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
