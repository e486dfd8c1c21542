"""Writing a bundle: the one writer export and convert share, and the manifest blocks they both fill.

Everything goes into a temporary folder beside the target, which is then swapped into place
(edgekit.bundle.atomic), so an interrupted export never leaves half a bundle, an existing bundle
survives a failed one, and a reader never finds the folder without its manifest.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import numpy as np

from edgekit import __version__
from edgekit.bundle.atomic import replace_dir, restore_or_clean, temp_dir_beside, write_json_atomic
from edgekit.bundle.manifest import LABELS, MANIFEST, file_entries
from edgekit.device_scripts import edgelib

FLOAT_MODEL = "float_model.keras"



def calibration_record(calib) -> dict:
    """The manifest's `calibration` block: where the representative images (an ImageBatch) came from,
    and a warning when there were fewer than the measured default."""
    from edgekit.config import DEFAULT_CALIBRATION_SAMPLES

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
    from edgekit.bundle.modelcheck import load_model

    m = load_model(data, name="the converted model")

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
    import keras

    out = {
        "edgekit": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        from importlib.metadata import version

        out["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:
        pass
    return out



def write_bundle(
    out: Path, manifest: dict, entries: list[dict], model, labels, extra_files: dict | None = None
) -> None:
    """Write everything into a temporary folder, then swap it into place (also used by edgekit.pipeline.onnx).

    `model` may be None (no Keras float model); `extra_files` maps further file names to bytes.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    restore_or_clean(out)  # what an export killed earlier left beside `out`
    tmp = temp_dir_beside(out)
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
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
