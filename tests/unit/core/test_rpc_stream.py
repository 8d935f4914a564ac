"""The Unix-socket framing of RPC messages (clipper_core.rpc.stream)."""

from __future__ import annotations

import struct

import pytest

from clipper_core.rpc import stream


def test_messages_survive_any_chunking() -> None:
    messages = [[b"", b"\x02\x00\x00\x00"], [b"", b"x" * 70_000, b""], [b"only"]]
    wire = b"".join(stream.encode(m) for m in messages)
    for chunk in (1, 3, 4096, len(wire)):
        decoder = stream.Decoder()
        got = []
        for i in range(0, len(wire), chunk):
            got.extend(decoder.feed(wire[i:i + chunk]))
        assert got == messages


def test_an_oversized_message_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(stream.StreamError, match="at most"):
        stream.Decoder().feed(struct.pack("<I", stream.MAX_MESSAGE_BYTES + 1))


@pytest.mark.parametrize("body", [b"\x01\x00", struct.pack("<I", 9) + b"abc"])
def test_a_frame_that_overruns_its_message_is_refused(body: bytes) -> None:
    with pytest.raises(stream.StreamError):
        stream.Decoder().feed(struct.pack("<I", len(body)) + body)


def test_abstract_addresses_start_with_a_zero_byte() -> None:
    assert stream.socket_address("@clipper-rpc-7000") == b"\0clipper-rpc-7000"
    assert stream.socket_address("/run/clipper.sock") == "/run/clipper.sock"
