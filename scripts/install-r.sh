#!/usr/bin/env bash
# Installs R and the R packages Rclipper uses, from Debian (CRAN is not needed); does nothing
# when they are present. Used by the `r` nox session; replica images install the same packages.
set -euo pipefail
exec bash "$(dirname "$0")/install-system-deps.sh" r-base-core r-cran-pbdzmq r-cran-jsonlite \
    r-cran-codetools r-cran-curl r-cran-testthat r-cran-roxygen2
