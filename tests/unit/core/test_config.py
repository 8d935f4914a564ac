import json
import stat

import pytest

from clipper_core.config import (
    ClusterConfig,
    is_loopback,
    load_secrets,
    redact_url,
    tracing_environment,
)
from clipper_core.exceptions import ValidationError


def test_round_trip_through_a_file(tmp_path):
    config = ClusterConfig(cluster_name="c1", query_port=4000, roles=("query",))
    path = tmp_path / "cluster.json"
    config.write(path)
    assert ClusterConfig.from_file(path) == config


def test_from_env_converts_types():
    config = ClusterConfig.from_env({
        "CLIPPER_QUERY_PORT": "1400", "CLIPPER_ROLES": "management",
        "CLIPPER_REPLICA_TIMEOUT_S": "2.5", "CLIPPER_STORE_URL": "redis://r:6379/0",
    })
    assert config.query_port == 1400
    assert config.roles == ("management",)
    assert config.replica_timeout_s == 2.5
    assert config.store_url == "redis://r:6379/0"


def test_unknown_keys_and_roles_are_named():
    with pytest.raises(ValidationError, match="querry_port"):
        ClusterConfig.from_mapping({"querry_port": 1})
    with pytest.raises(ValidationError, match="'web'"):
        ClusterConfig(roles=("web",))


def test_tracing_is_off_unless_an_otlp_http_endpoint_is_set(monkeypatch):
    monkeypatch.delenv("CLIPPER_TRACING_ENDPOINT", raising=False)
    assert ClusterConfig().tracing_endpoint is None
    assert ClusterConfig.from_env({"CLIPPER_TRACING_ENDPOINT": ""}).tracing_endpoint is None
    monkeypatch.setenv("CLIPPER_TRACING_ENDPOINT", "http://collector:4318")
    assert ClusterConfig().tracing_endpoint == "http://collector:4318"
    with pytest.raises(ValidationError, match="OTLP/HTTP URL"):
        ClusterConfig(tracing_endpoint="collector:4317")
    assert ClusterConfig().tracing_sample_ratio == 1.0
    monkeypatch.setenv("CLIPPER_TRACING_SAMPLE_RATIO", "0.25")
    assert ClusterConfig().tracing_sample_ratio == 0.25
    for bad in ("often", 1.5, -0.1):
        with pytest.raises(ValidationError, match="from 0 to 1"):
            ClusterConfig(tracing_sample_ratio=bad)



def test_containers_get_the_checked_tracing_settings_of_the_environment(monkeypatch):
    for name in ("CLIPPER_TRACING_ENDPOINT", "CLIPPER_TRACING_SAMPLE_RATIO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("CLIPPER_CACHE_SIZE", "1")  # not a tracing setting
    assert tracing_environment() == {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    monkeypatch.setenv("CLIPPER_TRACING_ENDPOINT", "http://172.17.0.1:4318")
    assert tracing_environment()["CLIPPER_TRACING_ENDPOINT"] == "http://172.17.0.1:4318"
    monkeypatch.setenv("CLIPPER_TRACING_ENDPOINT", "172.17.0.1:4318")
    with pytest.raises(ValidationError, match="OTLP/HTTP URL"):
        tracing_environment()

def test_an_endpoint_without_a_path_gets_the_traces_path():
    from clipper_core.tracing import traces_url

    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("https://c:4318/") == "https://c:4318/v1/traces"
    assert traces_url("http://c/otlp/v1/traces") == "http://c/otlp/v1/traces"


def test_secrets_are_generated_once_with_mode_0600(tmp_path):
    path = tmp_path / "dir" / "secrets.json"
    assert load_secrets(path) == {}
    first = load_secrets(path, create=True)
    assert sorted(first) == ["management_token", "redis_password", "replica_secret"]
    assert len(set(first.values())) == 3 and all(len(v) >= 40 for v in first.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secrets(path, create=True) == first


def test_a_config_reads_its_unset_secrets_from_its_secrets_file(tmp_path):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"management_token": "tok-123", "replica_secret": "r"}))
    path = tmp_path / "cluster.json"
    ClusterConfig(secrets_file=str(secrets)).write(path)
    config = ClusterConfig.from_file(path)
    assert (config.management_token, config.replica_secret) == ("tok-123", "r")
    assert "tok-123" not in path.read_text()
    env = {"CLIPPER_SECRETS_FILE": str(secrets), "CLIPPER_MANAGEMENT_TOKEN": "own",
           "CLIPPER_REQUIRE_MANAGEMENT_TOKEN": "true", "CLIPPER_ADMIT_LEGACY_REPLICAS": "0"}
    config = ClusterConfig.from_env(env)
    assert (config.management_token, config.replica_secret) == ("own", "r")
    assert config.require_management_token is True and config.admit_legacy_replicas is False
    secrets.write_text("{not json")
    with pytest.raises(ValidationError, match="Cannot read the cluster's secrets"):
        ClusterConfig.from_file(path)


def test_loopback_and_redaction():
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.0.2.2", "example.com", "", "::"]))
    assert redact_url("redis://:pw@redis-1:6379/0") == "redis://:***@redis-1:6379/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
