"""Images under the original's names, as its scripts and admin tests use them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clipper_admin import ClipperConnection, __registry__, __version__
from clipper_admin.deployers import python as python_deployer
from clipper_core.backends.docker_images import CLOSURE_ALIASES, image_tag

pytestmark = pytest.mark.docker

NOOP = f"{__registry__}/noop-container:{__version__}"


def test_images_build_makes_the_original_images(docker_engine: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clipper_core.cli", "images", "build", "noop-container",
         *CLOSURE_ALIASES], capture_output=True, text=True, timeout=900, check=True)
    assert f"noop-container: {NOOP}" in result.stdout
    closure = docker_engine.images.get(image_tag("python-closure", "clipper/base:bookworm"))
    for alias in CLOSURE_ALIASES:
        assert f"{alias}: clipper/{alias}:{__version__}" in result.stdout
        assert docker_engine.images.get(f"clipper/{alias}:{__version__}").id == closure.id


def test_noop_container_answers_1_0_to_every_input(shared_conn: ClipperConnection, dh: Any,
                                                   tmp_path: Path) -> None:
    conn = shared_conn
    conn.register_application("noop-doubles", "doubles", "DEFAULT", 5_000_000)
    conn.deploy_model("noop", "v1", "doubles", NOOP)
    conn.link_model_to_app("noop-doubles", "noop")
    assert dh.wait_for_prediction(conn, "noop-doubles", {"input": [1.0, 2.0]})["output"] == 1.0
    # The original's admin tests build on it with model data that it ignores.
    fake_model_data = tmp_path / "fake-model-data"
    fake_model_data.mkdir()
    (fake_model_data / "weights.txt").write_text("ignored\n")
    conn.build_and_deploy_model("noop-built", "v1", "strings", str(fake_model_data), NOOP)
    conn.register_application("noop-strings", "strings", "DEFAULT", 5_000_000)
    conn.link_model_to_app("noop-strings", "noop-built")
    answer = dh.wait_for_prediction(conn, "noop-strings", {"input_batch": ["a", "bc"]})
    assert [p["output"] for p in answer["batch_predictions"]] == [1.0, 1.0]
    conn.stop_models(["noop", "noop-built"])


def test_closure_base_images_of_the_original_run_python_closures(
        shared_conn: ClipperConnection, dh: Any) -> None:
    base_image = f"{__registry__}/python36-closure-container:{__version__}"
    python_deployer.create_endpoint(shared_conn, "closure36", "doubles",
                                    lambda xs: [str(sum(x)) for x in xs], base_image=base_image)
    assert dh.wait_for_prediction(shared_conn, "closure36", {"input": [1.5, 2.0]})[
        "output"] == 3.5
    assert shared_conn.cm.docker_client.images.get(base_image).id
    shared_conn.stop_models(["closure36"])
