#!/usr/bin/env python3
"""An OTLP/HTTP metrics receiver for the tests: it decodes each POST /v1/metrics body with
the OpenTelemetry project's own protobuf definitions (PyPI opentelemetry-proto) through
protobuf's JSON mapping, which refuses unknown fields and wrong types, answers as a
collector does (200 with an ExportMetricsServiceResponse, 400 with the reason otherwise)
and prints each request it accepted as one line of canonical JSON.

Prints `READY <port>` once listening on 127.0.0.1 (an ephemeral port)."""

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/metrics" or self.headers.get("Content-Type") != "application/json":
            self.answer(404 if self.path != "/v1/metrics" else 415, b'{"message":"unexpected request"}')
            return
        request = metrics_service_pb2.ExportMetricsServiceRequest()
        try:
            json_format.Parse(body, request)
        except json_format.ParseError as e:
            print(f"REJECTED {e}", flush=True)
            self.answer(400, b'{"message":"bad request"}')
            return
        print(json_format.MessageToJson(request, indent=None), flush=True)
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
print(f"READY {server.server_address[1]}", flush=True)
server.serve_forever()
