"""The fuzz test's worker, run as `python -m tests.hardening.fuzz_harness SEED N OUT_DIR [BASE.tflite]`.

Writes the mutated models, then drives them through what the commands do in this process: the
batch probe (profile's and eval's guard), the desktop eval's load + predict + scores, and export's
and convert's verification. Prints one JSON summary line. Any exception that is not an EdgekitError
is printed as `UNEXPECTED name: Exception` (the test fails on it); a crash of this process is
caught by the test as a signal exit, with the last `trying` line naming the model.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import numpy as np

from edgekit.bundle import modelcheck
from edgekit.errors import EdgekitError
from tests.hardening.conftest import issue_repro, reshape_crash
from tests.hardening.mutate import mutations
from tests.hardening.tflite_build import classifier


def main(argv: list[str]) -> int:
    seed, n, out = int(argv[0]), int(argv[1]), Path(argv[2])
    base = Path(argv[3]).read_bytes() if len(argv) > 3 else classifier()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    # a mutation known to crash the interpreter goes first, so the probe's restart is always exercised
    known = ("known:issue_repro", issue_repro(base)) if len(argv) > 3 else ("known:reshape_crash", reshape_crash(base))
    for i, (name, data) in enumerate([known, *mutations(base, n - 1, seed)]):
        p = out / f"{i:04d}.tflite"
        p.write_bytes(data)
        paths.append((name, p))
    summary = {"models": len(paths), "refused": 0, "loaded": 0, "crashed_in_probe": 0, "unexpected": []}

    loaded = modelcheck.load_models([p for _, p in paths])  # structure check + probe + in-process load
    from edgekit.data.datasets import ImageBatch
    from edgekit.pipeline.export import verify

    for (name, p), res in zip(paths, loaded, strict=True):
        if isinstance(res, EdgekitError):
            summary["refused"] += 1
            summary["crashed_in_probe"] += "crashed the TFLite interpreter" in str(res)
            if "\n" in str(res):
                summary["unexpected"].append(f"{name}: two-line message")
            continue
        summary["loaded"] += 1
        print(f"trying {name}", flush=True)
        try:  # the desktop eval after loading: predict on images of the model's size, then verify
            h, w = res.input_size
            x = np.random.default_rng(0).uniform(0, 255, size=(2, h, w, res.input_shape[-1])).astype(np.float32)
            y = modelcheck.predict_checked(res, x, name)
            verify(y.reshape(len(x), -1), p.read_bytes(), ImageBatch(x, (), (), "fuzz"))
        except EdgekitError:
            pass
        except Exception as exc:
            summary["unexpected"].append(f"{name}: {exc.__class__.__name__}: {exc}")
            traceback.print_exc()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
