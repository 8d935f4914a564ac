#!/usr/bin/env bash
# Runs every test of the project. Installs what it needs (Debian packages, Docker engine, nox),
# and is safe to run twice. Extra arguments go to nox (e.g. `-s tests`).
#
# A full run (no arguments, as root) installs only what the `tests` session needs (Redis) before
# it starts; scripts/warm-up.sh installs, downloads and builds what the later sessions need in
# the background meanwhile, the local Kubernetes included (5-14 min of compiling when it is not
# cached, at the lowest priority). Its log: .nox/warm-up.log.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check 'nox>=2024.10' 'ruff>=0.6'
# At the end: wait for the warm-up (never leave a half-written binary behind), say what it did.
finish_warm_up() {
    wait "$warm_up" || true
    grep -E '^\[warm-up\] .* (done in|failed)' .nox/warm-up.log || true
    exit "$1"
}

if (($# == 0)) && [ "$(id -u)" -eq 0 ]; then
    bash scripts/install-system-deps.sh redis-server
    mkdir -p .nox
    echo "==> installing what the later sessions need in the background (log: .nox/warm-up.log)"
    bash scripts/warm-up.sh >.nox/warm-up.log 2>&1 &
    warm_up=$!
    trap 'finish_warm_up $?' EXIT
else
    bash scripts/install-system-deps.sh
fi
python3 -m nox "$@"
