"""An OpenTelemetry collector for tests: it accepts OTLP/HTTP trace exports (``POST
/v1/traces``, protobuf, optionally gzipped) and keeps their spans as dicts. It needs the
``opentelemetry-proto`` package (the ``test`` extra)."""

from __future__ import annotations

import fcntl
import gzip
import socket
import struct
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

#: The ioctl that reads an interface's IPv4 address (``<linux/sockios.h>``).
_SIOCGIFADDR = 0x8915


def _docker_bridge_address() -> str:
    """This machine's IPv4 address on Docker's default bridge, read from the bridge's interface
    (the network's record may name no gateway: a newly installed engine's does not)."""
    from clipper_core.backends.docker import docker_client

    options = docker_client().networks.get("bridge").attrs["Options"] or {}
    interface = options.get("com.docker.network.bridge.name", "docker0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("256s", interface.encode()[:15])  # struct ifreq: the name first
        answer = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
    return socket.inet_ntoa(answer[20:24])


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint on a free port of ``host``, keeping every span it receives
    (``url`` names it at ``url_host``: another address of this machine, for a container)."""

    def __init__(self, host: str = "127.0.0.1", url_host: str | None = None) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.add(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{url_host or host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @classmethod
    def for_containers(cls) -> OtlpReceiver:
        """A receiver on every address of this machine, named by its address on Docker's
        default bridge, which containers (and the local Kubernetes cluster's pods) reach."""
        return cls("0.0.0.0", url_host=_docker_bridge_address())

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: getattr(a.value, a.value.WhichOneof("value"))
                                  for a in span.attributes}
                    with self.lock:
                        self.spans.append({
                            "name": span.name, "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                            "links": [link.span_id.hex() for link in span.links],
                            "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                            "status": span.status.code, "message": span.status.message,
                            "attributes": attributes, "resource": resource})

    def traces(self, app: str) -> dict[str, list[dict[str, Any]]]:
        """The spans of every trace whose request went to ``app``, by trace id."""
        with self.lock:
            spans = list(self.spans)
        by_trace = defaultdict(list)
        for span in spans:
            by_trace[span["trace"]].append(span)
        return {tid: s for tid, s in by_trace.items()
                if any(x["name"] == "clipper.receive" and x["attributes"].get("clipper.app") == app
                       for x in s)}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
