#!/usr/bin/env bash
# Prepare a fresh machine to run and try Edgeplane: the Mosquitto command-line clients to
# talk to it, then a release build. (Rust comes from rustup; everything else from Cargo.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked -p edgeplane
