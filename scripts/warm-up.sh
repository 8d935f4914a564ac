#!/usr/bin/env bash
# What the sessions after `tests` install, download or build, done in the background while the
# `tests` session runs (scripts/test-all.sh starts this for a full run), so that they find it ready:
#
#   packages   Debian packages: the default set of install-system-deps.sh, then the Docker
#              engine, chromium (browser), the Kubernetes build's packages and source, and R;
#   images     the registry-free base image (build-base-image.sh), then the plugin sessions'
#              wheels into pip's cache (prefetch-wheels.py), beside the packages;
#   kubernetes the local Kubernetes (kube-local.sh build: 5-14 min on 2 cores), compiled at the
#              lowest CPU and I/O priority, so that it takes only what the sessions leave idle.
#
# Each step is done again by the session that needs it, so a failed step here costs only time.
# Sessions wait for a step that is under way: installs share one lock (install-system-deps.sh), so
# do base-image builds (build-base-image.sh) and Kubernetes builds (kube-local.sh). Needs root.
set -uo pipefail
cd "$(dirname "$0")/.."

# Run one step, log its outcome and duration, and return its status.
step() {
    local name=$1 start=$SECONDS status=0
    shift
    echo "[warm-up] $(date +%T) $name: $*"
    "$@" || status=$?
    if ((status)); then
        echo "[warm-up] $(date +%T) $name failed (status $status) after $((SECONDS - start)) s;" \
             "the session that needs it will try again"
    else
        echo "[warm-up] $(date +%T) $name done in $((SECONDS - start)) s"
    fi
    return "$status"
}

images() {
    step "base image" bash scripts/build-base-image.sh
    step "wheels" nice -n 10 python3 scripts/prefetch-wheels.py
}

kubernetes() {
    step "Kubernetes build" nice -n 19 ionice -c 3 bash scripts/kube-local.sh build
}

step "Debian packages" bash scripts/install-system-deps.sh
step "Docker engine" bash scripts/ensure-docker.sh && images &
step "chromium" bash scripts/install-system-deps.sh chromium
if step "Kubernetes packages and source" bash scripts/kube-local.sh fetch; then
    kubernetes &
fi
step "R" bash scripts/install-r.sh
wait
