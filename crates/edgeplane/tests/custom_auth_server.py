"""A custom authentication server (Azure IoT Operations API 0.5.0) for auth_custom.rs.

Usage: custom_auth_server.py CERT KEY CLIENT_CA REQUEST_LOG

Serves HTTPS on 127.0.0.1 (an ephemeral port, printed as the first line of stdout), asks for
a client certificate signed by CLIENT_CA, and answers POST /?api-version=0.5.0 by user name:
  deny-*    403 {"reason": 134, "message": ...}
  ban-*     403 {"reason": 138, "message": ...}
  old-*     422 {"supportedVersions": ["9.9.9"]}
  expire-*  200 with an expiry 2 seconds from now
  other     200 {"attributes": {"group": "line1"}}
A request without the X-Test-Key header or with another api-version gets 400 / 422.
Every request (headers, query, body) is appended to REQUEST_LOG as one JSON line.
"""

import datetime
import http.server
import json
import ssl
import sys
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        with open(sys.argv[4], "a") as log:
            log.write(json.dumps({
                "path": url.path,
                "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": raw.decode("utf-8", "replace"),
            }) + "\n")
        if query.get("api-version") != ["0.5.0"]:
            return self.answer(422, {"supportedVersions": ["0.5.0"]})
        if self.headers.get("X-Test-Key") != "header-value":
            return self.answer(400, {"error": "missing header"})
        body = json.loads(raw)
        user = body.get("username") or ""
        if user.startswith("deny-"):
            return self.answer(403, {"reason": 134, "message": "denied by the test server"})
        if user.startswith("ban-"):
            return self.answer(403, {"reason": 138, "message": "banned by the test server"})
        if user.startswith("old-"):
            return self.answer(422, {"supportedVersions": ["9.9.9"]})
        if user.startswith("expire-"):
            at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
            return self.answer(200, {"expiry": at.isoformat(), "attributes": {"group": "line1"}})
        return self.answer(200, {"attributes": {"group": "line1"}})


def main():
    cert, key, client_ca = sys.argv[1:4]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
