"""BentoML: ``feature_sum`` as a service API; run with ``bentoml serve`` (see bench.peers)."""

import bentoml


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class FeatureSum:
    @bentoml.api(route="/sum/predict")
    async def predict(self, input: list[float]) -> dict:  # input: the JSON field
        return {"output": sum(input)}
