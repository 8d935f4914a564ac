"""Batches in and out of the wire form: inputs as numpy (spec §4.5), outputs as UTF-8 strings."""

from __future__ import annotations

from typing import Any

import numpy as np

from clipper_core.exceptions import ClipperError
from clipper_core.types import InputType

_DTYPES = {t: np.dtype(t.numpy_dtype) for t in InputType if t is not InputType.STRINGS}


class PredictionError(ClipperError):
    """A batch could not be decoded, or the model's result is not one output per input."""


def decode_inputs(input_type: InputType, sizes: list[int], data: bytes | memoryview) -> np.ndarray:
    """Turn the concatenated inputs of one batch into what the model receives.

    Numbers are views of ``data`` (no copy): a 2-D ``(n, len)`` array when every input has the
    same length, else a 1-D object array of 1-D arrays. Strings are a 1-D object array of
    ``bytes``.
    """
    n = len(sizes)
    buf = memoryview(data)
    if len(buf) != sum(sizes):
        msg = f"the request announces {sum(sizes)} bytes of inputs but carries {len(buf)}"
        raise PredictionError(msg)
    if input_type is InputType.STRINGS:
        strings = np.empty(n, dtype=object)
        offset = 0
        for i, size in enumerate(sizes):
            strings[i] = bytes(buf[offset:offset + size])
            offset += size
        return strings
    dtype = _DTYPES[input_type]
    item = dtype.itemsize
    first = sizes[0] if n else 0
    if sizes.count(first) == n:  # one 2-D array (also for an empty batch)
        if first % item:
            raise PredictionError(_misaligned(input_type, item, sizes))
        return np.frombuffer(buf, dtype=dtype).reshape(n, first // item)
    arrays = np.empty(n, dtype=object)
    offset = 0
    for i, size in enumerate(sizes):
        if size % item:
            raise PredictionError(_misaligned(input_type, item, sizes))
        arrays[i] = np.frombuffer(buf, dtype=dtype, count=size // item, offset=offset)
        offset += size
    return arrays


def _misaligned(input_type: InputType, item: int, sizes: list[int]) -> str:
    return (f"every {input_type.canonical} input must be a multiple of {item} bytes, "
            f"got input sizes {sizes}")


def encode_outputs(predictions: Any, expected: int) -> list[bytes]:
    """``str()`` and UTF-8 encode each output, after checking there is one per input."""
    scalar = isinstance(predictions, np.ndarray) and predictions.ndim == 0
    if scalar or not isinstance(predictions, list | tuple | np.ndarray):
        msg = (f"The model returned {type(predictions).__name__}; expected a list, tuple or "
               f"numpy array of {expected} outputs, one per input")
        raise PredictionError(msg)
    if len(predictions) != expected:
        msg = f"Expected model to return {expected} outputs, found {len(predictions)} outputs"
        raise PredictionError(msg)
    return [str(p).encode() for p in predictions]
