#!/usr/bin/env python3
"""An OTLP/HTTP receiver for the tests: it decodes each POST /v1/metrics and /v1/traces
body with the OpenTelemetry project's own protobuf definitions (PyPI opentelemetry-proto)
through protobuf's JSON mapping, which refuses unknown fields and wrong types, answers as a
collector does (200 with an empty Export*ServiceResponse, 400 with the reason otherwise)
and prints each request it accepted as one line of canonical JSON.

OTLP/JSON writes trace and span ids in hex where protobuf's JSON mapping expects base64
(the OTLP specification's one deviation): as a collector does, the ids are converted before
decoding, and must then be 16 (trace) and 8 (span) bytes; the printed line has them in hex
again.

`otlp_receiver.py [--tls CERT KEY]`: with --tls it serves HTTPS with that certificate.
Prints `READY <port>` once listening on 127.0.0.1 (an ephemeral port)."""

import base64
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def spans_of(request):
    for resource in request.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            yield from scope.get("spans", [])


def hex_ids_to_base64(request):
    for span in spans_of(request):
        for field, size in ID_FIELDS.items():
            if field in span:
                raw = bytes.fromhex(span[field])
                if len(raw) != size:
                    raise ValueError(f"{field} {span[field]!r} is not {size} bytes")
                span[field] = base64.b64encode(raw).decode()


def base64_ids_to_hex(request):
    for span in spans_of(request):
        for field in ID_FIELDS:
            if field in span:
                span[field] = base64.b64decode(span[field]).hex()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        kinds = {
            "/v1/metrics": metrics_service_pb2.ExportMetricsServiceRequest,
            "/v1/traces": trace_service_pb2.ExportTraceServiceRequest,
        }
        if self.path not in kinds or self.headers.get("Content-Type") != "application/json":
            self.answer(404 if self.path not in kinds else 415, b'{"message":"unexpected request"}')
            return
        request = kinds[self.path]()
        try:
            if self.path == "/v1/traces":
                parsed = json.loads(body)
                hex_ids_to_base64(parsed)
                body = json.dumps(parsed)
            json_format.Parse(body, request)
        except (json_format.ParseError, ValueError) as e:
            print(f"REJECTED {e}", flush=True)
            self.answer(400, b'{"message":"bad request"}')
            return
        out = json_format.MessageToDict(request)
        if self.path == "/v1/traces":
            base64_ids_to_hex(out)
        print(json.dumps(out, separators=(",", ":")), flush=True)
        self.answer(200, b"{}")

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) == 4 and sys.argv[1] == "--tls":
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"READY {server.server_address[1]}", flush=True)
server.serve_forever()
