"""The R deployer registers like every deployer; its bundles are checked in R itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from clipper_deployer_r import RDeployer, create_endpoint, deploy_r_model
from clipper_deployer_r.deployer import rclipper_library, write_r_bundle

from clipper_core.deployers.api import Bundle
from clipper_core.exceptions import DeployError
from clipper_core.runtime import load_predictor
from clipper_core.testing import DeployerRegistration
from clipper_core.types import InputType


class TestRRegistration(DeployerRegistration):
    deployer_class = RDeployer


def test_seeds_style_import_path() -> None:
    from clipper_admin.deployers import r as admin_r

    assert admin_r.deploy_r_model is deploy_r_model
    assert admin_r.create_endpoint is create_endpoint


def test_bundle_records_the_r_model(tmp_path: Path, save_r_model) -> None:
    rds = save_r_model("f <- function(inputs) vapply(inputs, sum, 0); sample <- c(1, 2)")
    write_r_bundle(tmp_path / "b", rds)
    bundle = Bundle.read(tmp_path / "b")
    assert bundle.deployer == "r"
    assert bundle.input_type is InputType.DOUBLES
    assert bundle.extra["input_class"] == "character"
    assert (tmp_path / "b" / "func.rds").read_bytes() == rds.read_bytes()
    argv, env = RDeployer().replica_command(bundle)
    assert argv[-1] == "Rclipper::serve_from_env()"
    assert env["R_LIBS"] == str(rclipper_library())
    assert Path(env["R_LIBS"], "Rclipper", "DESCRIPTION").is_file()
    with pytest.raises(Exception, match="served by Rscript"):
        load_predictor(tmp_path / "b")


def test_wrong_files_and_types_fail_at_deploy_time(tmp_path: Path, save_r_model) -> None:
    with pytest.raises(DeployError, match="is not a file"):
        write_r_bundle(tmp_path / "x", tmp_path / "missing.rds")
    (tmp_path / "junk.rds").write_bytes(b"not R data")
    with pytest.raises(DeployError, match="not a model saved by Rclipper::save_model"):
        write_r_bundle(tmp_path / "y", tmp_path / "junk.rds")
    rds = save_r_model("f <- function(inputs) toupper(unlist(inputs)); sample <- 'a'")
    with pytest.raises(DeployError, match="saved for strings inputs"):
        write_r_bundle(tmp_path / "z", rds, "doubles")
    numeric = save_r_model("f <- function(inputs) vapply(inputs, sum, 0); sample <- 1")
    assert write_r_bundle(tmp_path / "w", numeric, "floats").input_type is InputType.FLOATS
