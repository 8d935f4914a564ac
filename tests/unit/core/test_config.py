import pytest

from clipper_core.config import ClusterConfig
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


def test_an_endpoint_without_a_path_gets_the_traces_path():
    from clipper_core.tracing import traces_url

    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("https://c:4318/") == "https://c:4318/v1/traces"
    assert traces_url("http://c/otlp/v1/traces") == "http://c/otlp/v1/traces"
