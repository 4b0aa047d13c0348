#!/usr/bin/env bash
# Run every test of the workspace: unit, conformance (real sockets), interop with
# mosquitto_pub/sub and paho-mqtt, and the binary's CLI tests. Installs what they need first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --locked --no-fail-fast "$@"
# The conformance suite again with the durable store under every broker.
EDGEPLANE_TEST_DURABLE=1 cargo test --locked -p edgeplane-tests --test conformance "$@"
