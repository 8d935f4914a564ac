import struct

import pytest

from clipper_core.rpc import protocol as p


def test_new_container_message_matches_the_spec_frames():
    frames = p.new_container_message("sum-model", "1", 3, 3)
    assert frames == [b"", struct.pack("<I", 0), b"sum-model", b"1", b"3", struct.pack("<I", 3)]
    mtype, rest = p.parse_container_message(frames)
    assert mtype == p.MSG_NEW_CONTAINER
    assert p.parse_new_container(rest) == ("sum-model", "1", 3, 3, None)


def test_the_replica_secret_is_an_optional_last_frame():
    frames = p.new_container_message("m", "1", 3, 4, "s3cret")
    assert frames == [*p.new_container_message("m", "1", 3, 4), b"s3cret"]
    assert p.parse_new_container(frames[2:]) == ("m", "1", 3, 4, b"s3cret")
    assert p.parse_new_container([*frames[2:-1], b""])[4] is None


def test_new_container_without_version_frame_reports_zero():
    frames = [b"", struct.pack("<I", 0), b"m", b"1", b"3"]
    assert p.parse_new_container(p.parse_container_message(frames)[1])[3] == 0


def test_v3_predict_request_is_byte_exact():
    inputs = [struct.pack("<3d", 1.1, 2.2, 3.3), struct.pack("<3d", 4.4, 5.5, 6.6)]
    frames = p.predict_request(3, 7, 3, inputs)
    assert frames[:6] == [b"", struct.pack("<I", 3), struct.pack("<I", 1), struct.pack("<I", 7),
                          struct.pack("<I", 0), struct.pack("<Q", 32)]
    assert frames[6] == struct.pack("<4Q", 3, 2, 24, 24)
    assert frames[7:] == inputs
    version, mtype, rest = p.parse_frontend_message(frames)
    assert (version, mtype) == (3, p.MSG_CONTAINER_CONTENT)
    msg_id, itype, sizes, data = p.parse_predict_request(rest, 3)
    assert (msg_id, itype, sizes, data) == (struct.pack("<I", 7), 3, [24, 24], inputs)


@pytest.mark.parametrize("version", [3, 4])
def test_response_round_trip(version):
    outputs = [b"6.6", b"", "é".encode()]
    frames = p.response_message(struct.pack("<I", 9), outputs, version)
    assert frames[4] == struct.pack("<4Q", 3, 3, 0, 2)
    assert len(frames) == (6 if version == 4 else 8)
    mtype, rest = p.parse_container_message(frames)
    assert mtype == p.MSG_CONTAINER_CONTENT
    assert p.parse_response(rest, version) == (9, outputs)


def test_v4_request_concatenates_inputs():
    frames = p.predict_request(4, 1, 4, [b"ab", b"cde"])
    _, _, rest = p.parse_frontend_message(frames)
    assert p.parse_predict_request(rest, 4)[3] == b"abcde"


def test_error_and_heartbeat_messages():
    mtype, rest = p.parse_container_message(p.error_message(struct.pack("<I", 5), "boom"))
    assert mtype == p.MSG_ERROR and p.parse_error(rest) == (5, "boom")
    assert p.heartbeat_reply(3, 1) == [b"", struct.pack("<I", 3), struct.pack("<I", 2), struct.pack("<I", 1)]


def test_malformed_messages_raise_protocol_error():
    with pytest.raises(p.ProtocolError):
        p.parse_container_message([b""])
    with pytest.raises(p.ProtocolError):
        p.parse_response([struct.pack("<I", 1), b"", struct.pack("<2Q", 3, 1)], 3)
