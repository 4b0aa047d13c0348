#!/usr/bin/env bash
# Install what Edgeplane's tests talk to, if missing: Debian's Mosquitto (broker and
# mosquitto_pub/sub clients), Debian's Prometheus (server and promtool, for the metrics
# tests), OpenSSL headers for the Azure IoT Operations SDK crates the state store tests use,
# Python paho-mqtt 2.x, and Python asyncua (an OPC UA server for the connector tests).
# Idempotent; quiet when all is there.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v mosquitto >/dev/null || ! command -v mosquitto_sub >/dev/null; then
  echo "installing mosquitto and mosquitto-clients (Debian packages)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
fi

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "installing prometheus (Debian package: server and promtool)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if ! command -v pkg-config >/dev/null || ! pkg-config --exists openssl; then
  echo "installing pkg-config and libssl-dev (Debian packages, for the SDK crates' openssl-sys)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq pkg-config libssl-dev >/dev/null
fi

if ! python3 -c 'import paho.mqtt, sys; sys.exit(0 if paho.mqtt.__version__ >= "2" else 1)' 2>/dev/null; then
  echo "installing paho-mqtt 2.x (PyPI)"
  python3 -m pip install --quiet 'paho-mqtt>=2,<3'
fi

if ! python3 -c 'import asyncua' 2>/dev/null; then
  echo "installing asyncua (PyPI; an independent OPC UA server for the connector's interop tests)"
  python3 -m pip install --quiet 'asyncua>=1.1,<3'
fi

if ! python3 -c 'import pyarrow.parquet' 2>/dev/null; then
  echo "installing pyarrow (PyPI; an independent Parquet reader for the dataflow file tests)"
  python3 -m pip install --quiet 'pyarrow>=15'
fi

if ! python3 -c 'from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2' 2>/dev/null; then
  echo "installing opentelemetry-proto (PyPI; the OpenTelemetry definitions the OTLP export test decodes with)"
  python3 -m pip install --quiet 'opentelemetry-proto>=1.20,<2'
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "installing chromium and chromium-driver (Debian packages, for the portal's browser tests)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
