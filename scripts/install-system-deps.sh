#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use; does nothing when they are present.
set -euo pipefail
packages=(redis-server docker.io debootstrap docker-registry wrk nginx-light libnginx-mod-http-echo openjdk-17-jre-headless)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
