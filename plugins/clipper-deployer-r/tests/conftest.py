"""Helpers of the R deployer's tests: R code run with this plugin's Rclipper."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from clipper_deployer_r.deployer import rclipper_library, rscript

RunR = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def run_r() -> RunR:
    """``run_r(code, *args)``: run R code in a fresh Rscript with Rclipper; fail on errors."""
    def run(code: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        # Read the environment per call: a Docker fixture sets CLIPPER_BASE_IMAGE while it lives.
        env = {**os.environ, "R_LIBS": str(rclipper_library()), "CLIPPER_PYTHON": sys.executable}
        proc = subprocess.run([rscript(), "--vanilla", "-e", code, *args], env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        assert proc.returncode == 0, f"R failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    return run


@pytest.fixture(scope="session")
def save_r_model(run_r: RunR, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``save_r_model(code)``: R code defining ``f`` and ``sample``, saved as an .rds."""

    def save(code: str) -> Path:
        path = tmp_path_factory.mktemp("rmodel") / "model.rds"
        run_r(f"{code}\nRclipper::save_model(f, sample, commandArgs(TRUE)[1])", str(path))
        return path

    return save
