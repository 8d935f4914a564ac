"""The replica's environment (spec §5.1), in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipper_core.runtime import RuntimeConfig, RuntimeConfigError
from clipper_core.types import InputType

REQUIRED = {"CLIPPER_MODEL_NAME": "m", "CLIPPER_MODEL_VERSION": "3"}


def test_defaults():
    cfg = RuntimeConfig.from_env(REQUIRED)
    assert (cfg.model_name, cfg.model_version) == ("m", "3")
    assert cfg.address == "tcp://127.0.0.1:7000"
    assert cfg.input_type is None  # the bundle's input type is used
    assert cfg.model_path == Path("/model")
    assert cfg.heartbeat_interval_s == 0.5
    assert cfg.activity_timeout_s == 3.0
    assert cfg.ready_file == Path("/model_is_ready.check")


def test_everything_set():
    cfg = RuntimeConfig.from_env({
        **REQUIRED, "CLIPPER_IP": "localhost", "CLIPPER_PORT": "7100",
        "CLIPPER_INPUT_TYPE": " Strs ", "CLIPPER_MODEL_PATH": "/b",
        "CLIPPER_HEARTBEAT_INTERVAL_S": "2", "CLIPPER_READY_FILE": "",
    })
    assert cfg.address == "tcp://127.0.0.1:7100"
    assert cfg.input_type is InputType.STRINGS
    assert cfg.model_path == Path("/b")
    assert cfg.activity_timeout_s == 10.0
    assert cfg.ready_file is None


@pytest.mark.parametrize(("env", "message"), [
    ({"CLIPPER_MODEL_VERSION": "1"}, "ERROR: CLIPPER_MODEL_NAME environment variable must be set"),
    ({"CLIPPER_MODEL_NAME": "m"}, "ERROR: CLIPPER_MODEL_VERSION environment variable must be set"),
    ({**REQUIRED, "CLIPPER_PORT": "x"}, "CLIPPER_PORT must be an integer, got 'x'"),
    ({**REQUIRED, "CLIPPER_PORT": "70000"}, "CLIPPER_PORT must be between 1 and 65535"),
    ({**REQUIRED, "CLIPPER_INPUT_TYPE": "tensor"}, "'tensor' is not a valid input type"),
    ({**REQUIRED, "CLIPPER_HEARTBEAT_INTERVAL_S": "0"}, "must be a positive number"),
    ({**REQUIRED, "CLIPPER_IP": "no-such-host.invalid"}, "could not be resolved"),
])
def test_bad_environment(env, message):
    with pytest.raises(RuntimeConfigError, match=message):
        RuntimeConfig.from_env(env)
