"""LitServe: ``feature_sum`` as a LitAPI on one worker."""

import sys

import litserve as ls


class FeatureSum(ls.LitAPI):
    def setup(self, device: str) -> None:
        pass

    def decode_request(self, request: dict) -> list[float]:
        return request["input"]

    def predict(self, x: list[float]) -> float:
        return sum(x)

    def encode_response(self, output: float) -> dict:
        return {"output": output}


if __name__ == "__main__":
    server = ls.LitServer(FeatureSum(api_path="/sum/predict"), accelerator="cpu",
                          workers_per_device=1, fast_queue=True)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False,
               log_level="warning")
