"""NVIDIA Triton through PyTriton: ``feature_sum`` behind tritonserver's dynamic batcher."""

import sys

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

PORT = int(sys.argv[1])


@batch
def infer(input: np.ndarray) -> dict:  # input: the tensor.s name
    return {"output": input.sum(axis=1, keepdims=True)}


config = TritonConfig(http_address="127.0.0.1", http_port=PORT, allow_grpc=False,
                      allow_metrics=False)
with Triton(config=config) as triton:
    triton.bind(model_name="sum", infer_func=infer,
                inputs=[Tensor(name="input", dtype=np.float64, shape=(-1,))],
                outputs=[Tensor(name="output", dtype=np.float64, shape=(1,))],
                config=ModelConfig(max_batch_size=64,
                                   batcher=DynamicBatcher(max_queue_delay_microseconds=100)))
    triton.serve()
