#!/usr/bin/env bash
# The main job end to end on embedded defaults: built-in data, this machine as the device.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
EK=.venv/bin/edgekit
OUT=${EDGEKIT_DEMO_OUT:-edgekit-out/demo}
mkdir -p "$OUT"
# Every export, eval and profile below is recorded in this SQLite file.
export EDGEKIT_DB=${EDGEKIT_DB:-$OUT/results.db}
$EK models
$EK export --model mobilenet --alpha 0.5 -o "$OUT/mobilenet_v1_050_224"
# Train briefly on the built-in MNIST digits (80 % part), export int8 calibrated on the run's training
# images (float vs int8 accuracy measured on its held-out split), then evaluate on the 20 % never seen.
rm -rf "$OUT/runs/mnist"
$EK train --model mobilenet --alpha 0.25 --resolution 64 --data builtin:mnist:train --epochs 5 --batch-size 16 --lr 3e-3 \
  -o "$OUT/runs/mnist"
$EK export --weights "$OUT/runs/mnist" --max-drop 1.0 -o "$OUT/mnist_int8"
$EK eval "$OUT/mnist_int8" --data builtin:mnist:test
# This machine as the device: the device scripts run in a subprocess exactly as on a Raspberry Pi.
$EK profile "$OUT/mnist_int8" --threads 1,2
$EK eval "$OUT/mnist_int8" --device local --data builtin:mnist:test
# Transfer learning: a pretrained MobileNet α 0.25 at 128 px, a new head for the photos' classes
# (stage 1 only: a few epochs). Keras' ImageNet weights when the cache or the network has them, else TF's
# ImageNet .tflite from ../shared, else from scratch (said so). Photos: ants/bees from ../shared, else digits.
SHARED=../shared
TFLITE=$SHARED/models/mobilenet_v1_0.25_128_quant.tflite
if [ -d "$SHARED/datasets/ants-bees/val" ]; then
  PHOTOS=(--data "$SHARED/datasets/ants-bees/train" --val-data "$SHARED/datasets/ants-bees/val")
  EVAL_DATA=$SHARED/datasets/ants-bees/val
else
  PHOTOS=(--data builtin:digits:train)
  EVAL_DATA=builtin:digits:test
fi
TR=(--epochs 6 --fine-tune none "${PHOTOS[@]}" -o "$OUT/runs/transfer")
rm -rf "$OUT/runs/transfer"
if $EK train --weights imagenet --model mobilenet --alpha 0.25 --resolution 128 "${TR[@]}"; then
  echo "demo: transfer learning from Keras' ImageNet weights (mobilenet_2_5_128_tf_no_top.h5)"
elif [ -f "$TFLITE" ]; then
  echo "demo: no Keras ImageNet weights here (above: why); transfer learning from $TFLITE instead"
  rm -rf "$OUT/runs/transfer"
  $EK train --weights "$TFLITE" "${TR[@]}"
else
  echo "demo: no pretrained weights here (no network or cache for imagenet, no ../shared): training from scratch"
  rm -rf "$OUT/runs/transfer"
  $EK train --model mobilenet --alpha 0.25 --resolution 128 --epochs 6 "${PHOTOS[@]}" -o "$OUT/runs/transfer"
fi
$EK export --weights "$OUT/runs/transfer" -o "$OUT/transfer_int8"
$EK eval "$OUT/transfer_int8" --device local --data "$EVAL_DATA"
# Results history and a self-contained HTML report (device beside the desktop reference).
$EK runs list
$EK report -o "$OUT/report.html"
echo "demo: done; open $OUT/report.html (results in $EDGEKIT_DB)"
