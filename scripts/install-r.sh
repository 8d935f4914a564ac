#!/usr/bin/env bash
# Installs R and the R packages Rclipper uses, from Debian (CRAN is not needed); does nothing
# when they are present. Used by the `r` nox session; replica images install the same packages.
set -euo pipefail
packages=(r-base-core r-cran-pbdzmq r-cran-jsonlite r-cran-codetools r-cran-curl
          r-cran-testthat r-cran-roxygen2)
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
