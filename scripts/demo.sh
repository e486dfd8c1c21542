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
# Train briefly on the built-in MNIST digits (80 % part), export int8 calibrated on the run's training
# images (float vs int8 accuracy measured on its held-out split), then evaluate on the 20 % never seen.
rm -rf "$OUT/runs/mnist"
$EK train --model mobilenet --alpha 0.25 --resolution 64 --data builtin:mnist:train --epochs 5 --batch-size 16 --lr 3e-3 \
  -o "$OUT/runs/mnist"
$EK export --weights "$OUT/runs/mnist" --max-drop 1.0 -o "$OUT/mnist_int8"
$EK eval "$OUT/mnist_int8" --data builtin:mnist:test
