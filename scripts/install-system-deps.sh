#!/usr/bin/env bash
# Installs Debian packages with apt-get unless they are present (one `dpkg-query` each, so a
# second run does nothing). With no package: the packages the tests and benchmarks use.
# `--update` refreshes the package lists even when nothing is missing (after adding a source).
#
#   scripts/install-system-deps.sh [--update] [PACKAGE...]
#
# Every apt-get of the project goes through here: calls wait for each other on one lock
# (/tmp/clipper-apt.lock), so that scripts/warm-up.sh can install in the background while a test
# session asks for a package.
set -euo pipefail
LOCK=/tmp/clipper-apt.lock
if [ -z "${CLIPPER_APT_LOCK_HELD:-}" ]; then
    flock -n "$LOCK" true || echo "==> waiting for another install of Debian packages to finish"
    # -o: the lock stays with flock, so a daemon that a package's postinst starts cannot keep it.
    CLIPPER_APT_LOCK_HELD=1 exec flock -o "$LOCK" bash "$0" "$@"
fi
update=0
if [ "${1:-}" = "--update" ]; then update=1; shift; fi
if (($#)); then
    packages=("$@")
elif ((update)); then
    packages=()
else
    packages=(redis-server docker.io debootstrap docker-registry wrk nginx-light
              libnginx-mod-http-echo openjdk-17-jre-headless)
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
for pkg in ${packages[@]+"${packages[@]}"}; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
export DEBIAN_FRONTEND=noninteractive
if ((update)) || ((${#missing[@]})); then
    $SUDO apt-get update -q
fi
if ((${#missing[@]})); then
    echo "==> installing Debian packages: ${missing[*]}"
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
