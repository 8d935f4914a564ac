#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`. Idempotent: safe to run any number of times.
#
# 1. installs Debian's docker.io with apt-get if dockerd is missing;
# 2. if `docker info` fails, starts dockerd in the background (log: /var/log/dockerd.log)
#    and waits until it answers (at most $CLIPPER_DOCKERD_TIMEOUT seconds, default 60).
set -euo pipefail

log() { echo "[ensure-docker] $*" >&2; }

if docker info >/dev/null 2>&1; then
    log "Docker engine is running"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        log "dockerd is missing and apt-get is not available: install Docker by hand"
        exit 1
    fi
    log "installing docker.io with apt-get"
    bash "$(dirname "$0")/install-system-deps.sh" docker.io
fi

if ! command -v docker >/dev/null 2>&1; then
    log "the docker CLI is missing after installing docker.io"
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    log "docker info fails and starting dockerd needs root: run this script as root"
    exit 1
fi

LOG=/var/log/dockerd.log
if pgrep -x dockerd >/dev/null 2>&1; then
    log "dockerd is already starting (pid $(pgrep -x dockerd | head -1)); waiting for it"
else
    log "starting dockerd (log: $LOG)"
    # Stale pid files from a killed engine stop dockerd from starting (or, once the pid is
    # reused, make it wait for a containerd that is not there).
    rm -f /var/run/docker.pid
    pgrep -x containerd >/dev/null 2>&1 || rm -f /var/run/docker/containerd/containerd.pid
    nohup dockerd >>"$LOG" 2>&1 </dev/null &
    disown || true
fi

timeout="${CLIPPER_DOCKERD_TIMEOUT:-60}"
for _ in $(seq "$timeout"); do
    if docker info >/dev/null 2>&1; then
        log "Docker engine is ready"
        exit 0
    fi
    sleep 1
done
log "dockerd did not answer within ${timeout}s; last lines of $LOG:"
tail -n 20 "$LOG" >&2 || true
exit 1
