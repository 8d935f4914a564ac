"""Ray Serve: ``feature_sum`` as a deployment: ``python ray_serve.py PORT plain|batch TEMP_DIR``
(``batch``: with ``@serve.batch``); access log off."""

import signal
import sys

import ray
from ray import serve
from starlette.requests import Request

PORT = int(sys.argv[1])
BATCHED = sys.argv[2] == "batch"


@serve.deployment(num_replicas=1, max_ongoing_requests=256)
class FeatureSum:
    async def __call__(self, request: Request) -> dict:
        return {"output": sum((await request.json())["input"])}


@serve.deployment(num_replicas=1, max_ongoing_requests=256)
class FeatureSumBatched:
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.001)
    async def predict(self, inputs: list[list[float]]) -> list[float]:
        return [sum(x) for x in inputs]

    async def __call__(self, request: Request) -> dict:
        return {"output": await self.predict((await request.json())["input"])}


def stop(*_: object) -> None:
    serve.shutdown()
    ray.shutdown()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
ray.init(num_cpus=1, include_dashboard=False, _temp_dir=sys.argv[3])
serve.start(http_options={"host": "127.0.0.1", "port": PORT},
            logging_config={"enable_access_log": False})
serve.run((FeatureSumBatched if BATCHED else FeatureSum).bind(), route_prefix="/sum/predict")
signal.pause()
