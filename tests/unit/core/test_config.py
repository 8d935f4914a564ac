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
