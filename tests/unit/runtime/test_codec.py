"""Decoding batches into numpy (spec §4.5) and encoding model outputs, in process."""

from __future__ import annotations

import numpy as np
import pytest

from clipper_core.runtime import PredictionError, decode_inputs, encode_outputs
from clipper_core.types import InputType


def test_equal_lengths_are_one_2d_view_of_the_buffer():
    data = bytearray(np.arange(6, dtype="f8").tobytes())
    batch = decode_inputs(InputType.DOUBLES, [24, 24], data)
    assert batch.shape == (2, 3) and batch.dtype == np.float64
    assert batch.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    data[:8] = np.float64(42).tobytes()  # a view, not a copy
    assert batch[0, 0] == 42


@pytest.mark.parametrize(("input_type", "dtype"), [
    (InputType.BYTES, "int8"), (InputType.INTEGERS, "int32"),
    (InputType.FLOATS, "float32"), (InputType.DOUBLES, "float64"),
])
def test_unequal_lengths_are_an_object_array_of_views(input_type, dtype):
    rows = [np.arange(1, dtype=dtype), np.arange(3, dtype=dtype), np.arange(0, dtype=dtype)]
    data = b"".join(r.tobytes() for r in rows)
    batch = decode_inputs(input_type, [r.nbytes for r in rows], data)
    assert batch.dtype == object and batch.shape == (3,)
    for got, want in zip(batch, rows, strict=True):
        assert got.dtype == np.dtype(dtype)
        assert got.tolist() == want.tolist()


def test_bytes_are_signed():
    assert decode_inputs(InputType.BYTES, [2], b"\x7f\x80").tolist() == [[127, -128]]


def test_strings_are_bytes_objects():
    batch = decode_inputs(InputType.STRINGS, [2, 0, 3], b"hiabc")
    assert batch.dtype == object and batch.shape == (3,)
    assert list(batch) == [b"hi", b"", b"abc"]


def test_empty_batch_and_empty_inputs():
    assert decode_inputs(InputType.FLOATS, [], b"").shape == (0, 0)
    assert decode_inputs(InputType.FLOATS, [0, 0], b"").shape == (2, 0)


def test_sizes_must_match_the_data_and_the_element_size():
    with pytest.raises(PredictionError, match="announces 16 bytes of inputs but carries 8"):
        decode_inputs(InputType.DOUBLES, [8, 8], b"\0" * 8)
    with pytest.raises(PredictionError, match="multiple of 4 bytes"):
        decode_inputs(InputType.INTEGERS, [3, 3], b"\0" * 6)
    with pytest.raises(PredictionError, match="multiple of 4 bytes"):
        decode_inputs(InputType.INTEGERS, [4, 3], b"\0" * 7)


def test_outputs_are_str_converted_and_utf8_encoded():
    assert encode_outputs([1, "é", None], 3) == [b"1", "é".encode(), b"None"]
    assert encode_outputs(np.array([0.5, 2.0], dtype="f4"), 2) == [b"0.5", b"2.0"]
    assert encode_outputs(("a",), 1) == [b"a"]


@pytest.mark.parametrize(("result", "message"), [
    ([1], "Expected model to return 2 outputs, found 1 outputs"),
    ("ab", "The model returned str; expected a list, tuple or numpy array of 2 outputs"),
    (np.float64(1.0), "The model returned float64"),
    (np.array(3), "The model returned ndarray"),
    (None, "The model returned NoneType"),
])
def test_wrong_results_are_rejected(result, message):
    with pytest.raises(PredictionError, match=message):
        encode_outputs(result, 2)
