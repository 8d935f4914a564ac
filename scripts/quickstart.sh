#!/usr/bin/env bash
# The quickstart on the embedded default (no Docker, no Redis): a cluster on localhost with the
# app "hello-world" answering on http://localhost:1337/hello-world/predict. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
.venv/bin/clipper quickstart "$@"
