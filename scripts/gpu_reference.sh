#!/usr/bin/env bash
# The float reference of a bundle on an NVIDIA GPU machine, with Keras on torch and/or jax.
#
# Made for the GPU machines we can get: PyTorch and JAX with CUDA, Python 3.12, no TensorFlow, no
# network. Everything travels in one folder that `pack` fills on the desktop:
#
#   1. desktop (edgekit + TensorFlow):
#        bash scripts/gpu_reference.sh pack BUNDLE DATA OUT
#      writes OUT/{float_model.keras, inputs.npz, cpu_reference.npz, cpu_reference.json,
#      keras_reference.py, gpu_reference.sh}: DATA preprocessed as the bundle says, and the CPU
#      reference's outputs on it (Keras on TensorFlow, float32).
#   2. the Keras wheel and its small dependencies, for the GPU machine's Python (3.12 here):
#        .venv/bin/pip download "keras==$(.venv/bin/python -c 'import keras; print(keras.__version__)')" \
#          absl-py namex optree h5py rich packaging markdown-it-py mdurl pygments \
#          --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d OUT/wheels
#   3. copy OUT to the GPU machine, then:
#        bash OUT/gpu_reference.sh run OUT [torch,jax]
#      installs keras from OUT/wheels into a venv that sees the system torch/jax (only when keras is
#      missing), runs the model on each backend (batch-1 latency p50/p90 after warm-up, batch-64
#      throughput), checks its outputs against the CPU reference, writes OUT/results/BACKEND.json and
#      prints one line per backend. Exit 0 when every backend that ran matched; 5 when one did not.
#      A backend that is not installed is skipped with its reason. Well under 5 minutes.
#
# It also runs on a CPU-only machine (the figures are then labelled CPU): that is how it is tested.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
STEP_TIMEOUT=${EDGEKIT_GPU_STEP_TIMEOUT:-120}  # seconds per backend: the whole run stays under 5 min

usage() { sed -n '2,23p' "$0" >&2; exit 2; }

pack() {
  local bundle=$1 data=$2 out=$3
  [ -f "$bundle/manifest.json" ] || { echo "error: $bundle is not an edgekit bundle (no manifest.json)" >&2; exit 3; }
  mkdir -p "$out"
  "$PY" - "$bundle" "$data" "$out" <<'EOF'
import shutil, sys
from pathlib import Path
from edgekit.bundle.manifest import primary_model, read_manifest
from edgekit.devices.jobs import pack_builtin_npz, pack_eval_npz
from edgekit.devices.resolve import ModelRef
from edgekit.data.datasets import is_builtin
bundle, data, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
m = read_manifest(bundle)
keras = bundle / m.get("float_model", "float_model.keras")
if not keras.is_file():
    sys.exit(f"error: {bundle} has no float model ({keras.name}); export keeps it unless told not to")
labels = [ln.strip() for ln in (bundle / "labels.txt").read_text().splitlines() if ln.strip()]
if is_builtin(data):
    ref = ModelRef(bundle / primary_model(m)["file"], None, bundle, m, True)
    pack_builtin_npz(data, ref, out / "inputs.npz")
else:
    pack_eval_npz(data, m["preprocessing"], labels, out / "inputs.npz")
shutil.copy(keras, out / "float_model.keras")
EOF
  cp "$HERE/../edgekit/pipeline/keras_reference.py" "$out/keras_reference.py" 2>/dev/null \
    || "$PY" -c 'import shutil, sys, edgekit.pipeline.keras_reference as k; shutil.copy(k.__file__, sys.argv[1])' "$out/keras_reference.py"
  cp "$0" "$out/gpu_reference.sh"
  (cd "$out" && KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 "$PY" keras_reference.py --model float_model.keras \
     --inputs inputs.npz --out cpu_reference.npz > cpu_reference.json)
  echo "packed: $out ($(du -sh "$out" | cut -f1)); now add OUT/wheels (see the top of this script) and copy it"
}

ensure_keras() {
  local dir=$1
  if "$PY" -c 'import keras' 2>/dev/null; then return; fi
  [ -d "$dir/wheels" ] || { echo "error: keras is not installed and $dir/wheels is missing (see step 2)" >&2; exit 8; }
  if [ ! -x "$dir/.venv/bin/python" ]; then
    "$PY" -m venv --system-site-packages "$dir/.venv"  # sees the machine's torch and jax
    "$dir/.venv/bin/python" -m pip install -q --no-index --find-links "$dir/wheels" keras
  fi
  PY=$dir/.venv/bin/python
}

run() {
  local dir=$1 backends=${2:-torch,jax} status=0
  for f in float_model.keras inputs.npz cpu_reference.npz keras_reference.py; do
    [ -f "$dir/$f" ] || { echo "error: $dir/$f is missing: make the folder with \`pack\` first" >&2; exit 3; }
  done
  ensure_keras "$dir"
  mkdir -p "$dir/results"
  for b in ${backends//,/ }; do
    if ! "$PY" -c "import $b" 2>/dev/null; then
      echo "$b: skipped: the $b backend is not installed (no module named '$b')"
      continue
    fi
    local rc=0
    (cd "$dir" && KERAS_BACKEND=$b timeout "$STEP_TIMEOUT" "$PY" keras_reference.py --model float_model.keras \
       --inputs inputs.npz --expect cpu_reference.npz --batch 64 > "results/$b.json" 2> "results/$b.err") || rc=$?
    if [ "$rc" -eq 124 ]; then
      echo "$b: failed: no result within ${STEP_TIMEOUT} s (EDGEKIT_GPU_STEP_TIMEOUT)"
      status=6; continue
    fi
    if [ "$rc" -ne 0 ] && [ ! -s "$dir/results/$b.json" ]; then
      echo "$b: failed (exit $rc): $(grep -m1 '^error: ' "$dir/results/$b.err" || tail -n1 "$dir/results/$b.err")"
      status=$rc; continue
    fi
    [ "$rc" -eq 0 ] || status=$rc
    "$PY" - "$dir/results/$b.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
dev, lat, thr, c = d["device"], d["latency_ms"], d["throughput"], d["check"]
print(f"{d['backend']}: {dev['type']} {dev['name']} ({d['precision']}; keras {d['versions']['keras']}, "
      f"{d['backend']} {d['versions'].get(d['backend'])}): batch 1 p50 {lat['p50']:.3f} ms p90 {lat['p90']:.3f} ms; "
      f"batch {thr['batch']} {thr['images_per_s']:.0f} images/s; vs CPU reference: max |diff| "
      f"{c['max_abs_diff']:.2g}, top-1 agreement {c['top1_agreement']:.2%} -> {'match' if c['ok'] else 'MISMATCH'}")
EOF
  done
  exit "$status"
}

case "${1:-}" in
  pack) [ $# -eq 4 ] || usage; pack "$2" "$3" "$4" ;;
  run) [ $# -ge 2 ] || usage; run "$2" "${3:-torch,jax}" ;;
  *) usage ;;
esac
