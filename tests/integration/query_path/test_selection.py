"""Selection policies through a real frontend: several models per application, answers that
name their versions, stragglers, feedback, per-user state, state in SQLite and Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from clipper_core.testing.servers import RedisServer
from clipper_core.types import InputType
from tests.integration.query_path.conftest import Cluster, LegacyContainer, wait_for

DOUBLES = int(InputType.DOUBLES)


def constant(value: bytes, delay_s: float = 0.0) -> Callable[[list[bytes]], list[bytes]]:
    def predict(inputs: list[bytes]) -> list[bytes]:
        if delay_s:
            time.sleep(delay_s)
        return [value] * len(inputs)
    return predict


def selecting_app(cluster: Cluster, legacy_container: Callable[..., LegacyContainer],
                  app: str, models: dict[str, Callable[[list[bytes]], list[bytes]]],
                  policy: str, slo_micros: int = 2_000_000, **params: Any) -> None:
    """An app with ``policy`` and one legacy container per model, every model linked."""
    cluster.add_app(app, slo_micros=slo_micros)
    cluster.store.set_selection_policy(app, policy, orjson.dumps(params).decode())
    for name, predict in models.items():
        cluster.add_model(name)
        legacy_container(cluster.frontend.rpc_port, name, "1", DOUBLES, predict)
        cluster.wait_replicas(name, "1", 1)
        cluster.store.add_link(app, name)
    wanted = {f"{name}:1" for name in models}

    def routed() -> set[str]:
        route = cluster.frontend._routing.apps.get(app)  # type: ignore[union-attr]
        return set() if route is None else set(route.arms)

    wait_for(lambda: routed() == wanted, what="every model to be routed")


def test_default_policy_names_the_version_that_answered(
        make_cluster: Callable[..., Cluster], legacy_container: Callable[..., LegacyContainer],
) -> None:
    cluster = make_cluster()
    cluster.add_model("solo")
    cluster.add_app("solo", model="solo")
    legacy_container(cluster.frontend.rpc_port, "solo", "1", DOUBLES, constant(b"7"))
    cluster.wait_replicas("solo", "1", 1)
    response = wait_for(lambda: (r := cluster.post("/solo/predict", {"input": [1.0]})).json()[
        "default"] is False and r, what="an answer")
    assert response.headers["Clipper-Model-Versions"] == "solo:1"
    assert response.json() == {"query_id": response.json()["query_id"], "output": 7,
                               "default": False}  # the spec's body, unchanged


def test_exp4_ensemble_combines_three_models_and_says_which(
        make_cluster: Callable[..., Cluster], legacy_container: Callable[..., LegacyContainer],
) -> None:
    cluster = make_cluster()
    selecting_app(cluster, legacy_container, "ens",
                  {"a": constant(b"1"), "b": constant(b"1"), "c": constant(b"0")}, "exp4",
                  versions_in_body=True)
    response = cluster.post("/ens/predict", {"input_batch": [[1.0], [2.0]]})
    assert response.headers["Clipper-Model-Versions"] == "a:1,b:1,c:1"
    for answer in response.json()["batch_predictions"]:
        assert answer["output"] == 1 and answer["default"] is False
        assert answer["confidence"] == pytest.approx(2 / 3, abs=1e-6)
        assert sorted(answer["model_versions"]) == ["a:1", "b:1", "c:1"]
    for _ in range(20):  # model c is right every time: its weight grows
        assert cluster.post("/ens/update", {"uid": 0, "input": [3.0], "label": 0.0}).text == \
            "Feedback received? 1"
    stored = wait_for(lambda: (text := cluster.store.get_policy_states("ens").get("")) and
                      orjson.loads(text)["version"] == 20 and text,
                      what="all 20 feedbacks learned and stored")
    doc = orjson.loads(stored)
    losses = {arm: stats["loss"] for arm, stats in doc["state"]["arms"].items()}
    assert losses["c:1"] == 0.0 and losses["a:1"] > 5 and doc["version"] >= 1
    assert float(cluster.metric("app:ens:arm:c:1:mean_reward")["ratio"]) == 1.0
    assert float(cluster.metric("app:ens:arm:a:1:mean_reward")["ratio"]) == 0.0
    assert int(cluster.metric("app:ens:arm:b:1:num_feedback")["count"]) == 20
    assert int(cluster.metric("app:ens:arm:b:1:num_queries")["count"]) >= 2


def test_answer_at_the_slo_with_the_models_that_made_it(
        make_cluster: Callable[..., Cluster], legacy_container: Callable[..., LegacyContainer],
) -> None:
    cluster = make_cluster()
    cluster.add_app("strag", slo_micros=300_000)
    cluster.store.set_selection_policy("strag", "ensemble", "{}")
    for name, predict in (("fast1", constant(b"1")), ("fast2", constant(b"1")),
                          ("slow", constant(b"0", delay_s=1.0))):
        cluster.add_model(name)
        legacy_container(cluster.frontend.rpc_port, name, "1", DOUBLES, predict)
        cluster.wait_replicas(name, "1", 1)
        cluster.store.add_link("strag", name)
    # Until the last link is routed, the two fast models alone answer with confidence 1.
    wait_for(lambda: cluster.post("/strag/predict", {"input": [0.0]}).json().get(
        "confidence", 1.0) < 1.0, what="all three models to be routed")
    started = time.monotonic()
    response = cluster.post("/strag/predict", {"input": [9.0]})
    elapsed = time.monotonic() - started
    answer = response.json()
    assert answer["default"] is False and answer["output"] == 1
    assert answer["confidence"] == pytest.approx(2 / 3, abs=1e-6)  # one of three missed it
    assert response.headers["Clipper-Model-Versions"] == "fast1:1,fast2:1"
    assert elapsed < 0.9


def test_per_user_state_routes_each_user_to_their_best_model(
        make_cluster: Callable[..., Cluster], legacy_container: Callable[..., LegacyContainer],
) -> None:
    cluster = make_cluster()
    selecting_app(cluster, legacy_container, "pers", {"ones": constant(b"1"),
                                                     "zeros": constant(b"0")},
                  "thompson", per_user=True, seed=3)
    for _ in range(40):  # user 1 wants 1s, user 2 wants 0s
        cluster.post("/pers/update", {"uid": 1, "input": [1.0], "label": 1.0})
        cluster.post("/pers/update", {"uid": 2, "input": [1.0], "label": 0.0})
    def learned() -> dict[str, float]:
        return {key: sum(s["n"] for s in orjson.loads(v)["state"]["arms"].values())
                for key, v in cluster.store.get_policy_states("pers").items()}

    try:
        wait_for(lambda: learned() == {"1": 80, "2": 80}, what="both users' states stored")
    except AssertionError:
        raise AssertionError(f"learned: {learned()}") from None

    def served(uid: int) -> list[str]:
        return [cluster.post("/pers/predict", {"input": [float(i)], "uid": uid}).headers[
            "Clipper-Model-Versions"] for i in range(30)]

    assert served(1).count("ones:1") >= 27
    assert served(2).count("zeros:1") >= 27


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_state_is_shared_by_frontends_on_redis_and_survives_a_restart(
        redis_server: RedisServer, make_cluster: Callable[..., Cluster],
        legacy_container: Callable[..., LegacyContainer],
) -> None:
    """(The Redis server is requested first so that it outlives the frontends.)"""
    first = make_cluster(store_url=redis_server.url, frontend_id="first")
    second = make_cluster(store_url=redis_server.url, frontend_id="second")
    selecting_app(first, legacy_container, "shared", {"good": constant(b"1"),
                                                     "bad": constant(b"0")}, "exp3")
    for name, predict in (("good", constant(b"1")), ("bad", constant(b"0"))):
        legacy_container(second.frontend.rpc_port, name, "1", DOUBLES, predict)

    def state_of(cluster: Cluster) -> Any:
        kept = cluster.frontend._routing._selectors.get("shared")  # type: ignore[union-attr]
        return None if kept is None else (kept[1].states.versions.get(""),
                                          kept[1].states.states.get(""))

    for _ in range(30):
        first.post("/shared/update", {"uid": 0, "input": [1.0], "label": 1.0})
    wait_for(lambda: state_of(first)[0] == 30, what="the first frontend to learn")
    wait_for(lambda: state_of(second) == state_of(first), what="the second frontend to follow")
    learned = state_of(first)
    assert learned[1]["arms"]["good:1"]["log_weight"] > 0
    third = make_cluster(store_url=redis_server.url, frontend_id="third")  # a restart
    assert state_of(third) == learned
