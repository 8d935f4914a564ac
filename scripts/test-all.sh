#!/usr/bin/env bash
# Runs every test of the project. Installs what it needs (Debian packages, Docker engine, nox),
# and is safe to run twice. Extra arguments go to nox (e.g. `-s tests`).
#
# A full run (no arguments, as root) first compiles the local Kubernetes of the k8s session when
# it is not cached (scripts/kube-local.sh: 5-14 min on 2 cores), in the background at the lowest
# CPU and I/O priority, so that it takes only what the sessions before k8s leave idle; the k8s
# session's own `kube-local.sh build` waits for it. Its log: .nox/kube-local-build.log.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
python3 -m pip install -q --disable-pip-version-check 'nox>=2024.10' 'ruff>=0.6'
if (($# == 0)) && [ "$(id -u)" -eq 0 ]; then
    bash scripts/kube-local.sh fetch   # apt, in the foreground: nothing else may hold its lock
    mkdir -p .nox
    nice -n 19 ionice -c 3 bash scripts/kube-local.sh build >.nox/kube-local-build.log 2>&1 &
    kube_build=$!
    trap 'wait "$kube_build" || true' EXIT   # never leave a half-written binary behind
fi
python3 -m nox "$@"
