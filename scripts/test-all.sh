#!/usr/bin/env bash
# Runs every test of the project. Installs what it needs (Debian packages, Docker engine, nox),
# and is safe to run twice. Extra arguments go to nox (e.g. `-s tests`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
python3 -m pip install -q --disable-pip-version-check 'nox>=2024.10' 'ruff>=0.6'
python3 -m nox "$@"
