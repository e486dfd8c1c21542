"""Writing a bundle: the one writer export and convert share, and the manifest blocks they both fill.

Everything goes into a temporary folder beside the target, which is then swapped into place, so an
interrupted export never leaves half a bundle (and an existing bundle survives a failed one).
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgekit import __version__
from edgekit.bundle.manifest import LABELS, MANIFEST, file_entries, write_json_atomic
from edgekit.device_scripts import edgelib
from edgekit.errors import ModelFileError

FLOAT_MODEL = "float_model.keras"



def calibration_record(calib) -> dict:
    """The manifest's `calibration` block: where the representative images (an ImageBatch) came from,
    and a warning when there were fewer than the measured default."""
    from edgekit.config import DEFAULT_CALIBRATION_SAMPLES  # noqa: PLC0415

    n = int(calib.x.shape[0])
    warning = (
        {
            "warning": f"calibrated on {n} images, fewer than the {DEFAULT_CALIBRATION_SAMPLES} measured to "
            "be needed for stable int8 ranges on real photos (BENCHMARKS.md, bench_quant): int8 may lose more "
            "accuracy than it has to; pass --calibration with more images"
        }
        if n < DEFAULT_CALIBRATION_SAMPLES and not calib.synthetic
        else {}
    )
    return {
        "source": calib.source,
        "samples": n,
        "recommended_samples": DEFAULT_CALIBRATION_SAMPLES,
        **warning,
        "synthetic": calib.synthetic,
        "skipped": list(calib.skipped),
        "note": (
            "calibrated on synthetic images: int8 scales are guesses and accuracy figures are "
            "meaningless; pass --calibration DIR with real images"
            if calib.synthetic
            else "calibrated on real images"
        ),
    }



def host_record() -> dict:
    """The manifest's `host` block: the CPU that converted and verified, and what it means for int8."""
    cpu = edgelib.cpu_info()
    return {"cpu": cpu, "int8_note": edgelib.int8_speed_note(cpu)}



def io_details(data: bytes) -> dict:
    m = edgelib.Model(data)

    def one(d):
        scale, zp = d["quantization"]
        return {
            "name": d["name"],
            "dtype": np.dtype(d["dtype"]).name,
            "shape": [int(s) for s in d["shape"]],
            "scale": float(scale),
            "zero_point": int(zp),
        }

    return {"input": one(m.input), "output": one(m.output)}



def versions(tf) -> dict:
    import keras  # noqa: PLC0415

    out = {
        "edgekit": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        from importlib.metadata import version  # noqa: PLC0415

        out["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - optional
        pass
    return out



def write_bundle(
    out: Path, manifest: dict, entries: list[dict], model, labels, extra_files: dict | None = None
) -> None:
    """Write everything into a temporary folder, then swap it into place (also used by edgekit.pipeline.onnx).

    `model` may be None (no Keras float model); `extra_files` maps further file names to bytes.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / LABELS).write_text("\n".join(labels) + "\n", encoding="utf-8")
        for e in entries:
            (tmp / e["file"]).write_bytes(e["_data"])
        for fname, data in (extra_files or {}).items():
            (tmp / fname).write_bytes(data)
        if model is not None:
            model.save(tmp / FLOAT_MODEL)
        names = [LABELS, *([FLOAT_MODEL] if model is not None else []), *[e["file"] for e in entries]]
        names += list(extra_files or {})
        manifest["files"] = file_entries(tmp, names)
        write_json_atomic(tmp / MANIFEST, manifest)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise



def swap_into_place(tmp: Path, out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ModelFileError(f"output {out} exists and is not a folder", hint="choose another -o/--output")
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
