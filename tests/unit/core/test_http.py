import asyncio

import pytest
import uvloop

from clipper_core.frontend.http import HttpServer


def handler(request, responder):
    if request.path == b"/later":
        asyncio.get_running_loop().call_later(0.05, responder.send, 200, b'{"later":true}')
    elif request.path == b"/boom":
        raise RuntimeError("handler bug")
    else:
        responder.send(200, b'{"path":"%s","body":%d,"query":"%s"}'
                       % (request.path, len(request.body), request.query or b""))


async def _exchange(payload, server_kwargs=None, wait=0.3, close=False):
    server = HttpServer(handler, **(server_kwargs or {}))
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(payload)
        await writer.drain()
        if close:
            return await asyncio.wait_for(reader.read(), timeout=5)
        await asyncio.sleep(wait)
        data = await reader.read(65536)
        writer.close()
        return data
    finally:
        await server.stop()


def run(coro):
    return uvloop.run(coro)


def test_pipelined_responses_keep_request_order():
    data = run(_exchange(b"GET /later HTTP/1.1\r\n\r\n"
                         b"POST /now?x=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"))
    first = data.index(b'{"later":true}')
    second = data.index(b'{"path":"/now","body":3,"query":"x=1"}')
    assert first < second
    assert data.count(b"HTTP/1.1 200 OK") == 2


def test_body_over_the_limit_gets_413_and_close():
    data = run(_exchange(b"POST /a HTTP/1.1\r\nContent-Length: 500\r\n\r\n" + b"x" * 500,
                         {"max_body_bytes": 100}, close=True))
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"limit of 100 bytes" in data
    assert b"Connection: close" in data


def test_malformed_request_gets_400():
    data = run(_exchange(b"NOT AN HTTP REQUEST\r\n\r\n", close=True))
    assert data.startswith(b"HTTP/1.1 400 ")


def test_handler_exception_is_a_500_not_a_dropped_connection():
    data = run(_exchange(b"GET /boom HTTP/1.1\r\n\r\n"))
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"An unexpected error occurred!" in data


def test_http10_without_keep_alive_closes():
    data = run(_exchange(b"GET /x HTTP/1.0\r\n\r\n", close=True))
    assert b"Connection: close" in data and data.endswith(b'"query":""}')


@pytest.mark.timeout(20)
def test_slow_client_gets_408():
    data = run(_exchange(b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nab",
                         {"request_timeout_s": 0.5}, close=True))
    assert data.startswith(b"HTTP/1.1 408 ")
