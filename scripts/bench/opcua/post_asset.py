#!/usr/bin/env python3
"""Create an Asset through a running `edgeplane run`'s REST API (used by opcua.sh with
ASSET_FROM=api): sets up the first portal user, which signs in, then POSTs the manifest
with the session cookie and CSRF token. Waits up to 60 s for the HTTP listener.
Usage: post_asset.py HOST:PORT MANIFEST_FILE
"""

import json
import sys
import time
import urllib.error
import urllib.request

addr, manifest = sys.argv[1], sys.argv[2]
base = f"http://{addr}/api/v1"
creds = json.dumps({"user": "bench", "password": "bench-password-1"}).encode()
deadline = time.time() + 60
last = None
while True:
    try:
        req = urllib.request.Request(f"{base}/setup", data=creds, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as resp:
            cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
            csrf = json.load(resp)["csrf"]
        break
    except (urllib.error.URLError, ConnectionError) as e:
        # HTTPError (a URLError) too: the API answers 503 until the registry is up.
        last = e.read()[:300] if isinstance(e, urllib.error.HTTPError) else e
        if time.time() > deadline:
            sys.exit(f"no REST API at {addr}: {last!r}")
        time.sleep(0.2)
with open(manifest, "rb") as f:
    body = f.read()
req = urllib.request.Request(f"{base}/assets", data=body, method="POST",
                             headers={"Cookie": cookie, "X-CSRF-Token": csrf,
                                      "Content-Type": "application/yaml"})
try:
    with urllib.request.urlopen(req) as resp:
        status = resp.status
except urllib.error.HTTPError as e:
    sys.exit(f"creating the asset failed: {e.code} {e.read()[:500]!r}")
print(f"asset created through the REST API ({status})", file=sys.stderr)
