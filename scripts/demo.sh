#!/usr/bin/env bash
# The main job end to end on embedded defaults: built-in data, this machine as the device.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
EK=.venv/bin/edgekit
OUT=${EDGEKIT_DEMO_OUT:-edgekit-out/demo}
mkdir -p "$OUT"
$EK models
$EK export --model mobilenet --alpha 0.5 -o "$OUT/mobilenet_v1_050_224"
