#!/usr/bin/env bash
# Create the local base image clipper/base:bookworm without any image registry:
# debootstrap a Debian bookworm root with Python 3 and `docker import` it. Idempotent: does
# nothing when the image exists (pass --force to rebuild). Takes about a minute.
#
#   scripts/build-base-image.sh [--force] [IMAGE]      (IMAGE defaults to clipper/base:bookworm)
#   export CLIPPER_BASE_IMAGE=clipper/base:bookworm     (then the project's images build FROM it)
#
# Needs root, debootstrap and a reachable Debian mirror ($DEBIAN_MIRROR, default deb.debian.org).
set -euo pipefail

log() { echo "[build-base-image] $*" >&2; }

FORCE=0
if [ "${1:-}" = "--force" ]; then FORCE=1; shift; fi
IMAGE="${1:-clipper/base:bookworm}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-venv,python3-pip,python-is-python3,ca-certificates"

# One build at a time: a second call (scripts/warm-up.sh may run one in the background) waits for
# the first and then finds the image.
LOCK=/tmp/clipper-base-image.lock
if [ -z "${CLIPPER_BASE_IMAGE_LOCK_HELD:-}" ]; then
    flock -n "$LOCK" true || log "waiting for another build of the base image to finish"
    CLIPPER_BASE_IMAGE_LOCK_HELD=1 exec flock -o "$LOCK" bash "$0" "$@"
fi

if [ "$FORCE" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists (use --force to rebuild)"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    bash "$(dirname "$0")/install-system-deps.sh" debootstrap
fi

ROOT="$(mktemp -d /tmp/clipper-base-XXXXXX)"
cleanup() { rm -rf "$ROOT"; }
trap cleanup EXIT

log "debootstrap $SUITE (minbase + $PACKAGES) into $ROOT from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" \
    | while IFS= read -r line; do echo "[build-base-image] $line" >&2; done

log "configuring apt sources and trimming caches"
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/tmp/*

log "importing the root filesystem as $IMAGE"
tar --numeric-owner -C "$ROOT" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'CMD ["python3"]' \
    --message "clipper base image: Debian $SUITE with python3 (debootstrap)" \
    - "$IMAGE" >/dev/null

log "done: $IMAGE ($(docker run --rm "$IMAGE" python3 --version))"
