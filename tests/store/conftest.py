"""A results database filled by real small runs: export, profile and evals of the tiny bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def desktop_eval(bundle: Path, data: Path) -> dict:
    """Float Keras model vs host int8 TFLite on the same real images (the desktop eval's figures)."""
    import keras

    from edgekit.data import load_folder
    from edgekit.device_scripts import edgelib
    from edgekit.manifest import primary_model, read_manifest

    manifest = read_manifest(bundle)
    batch = load_folder(data, manifest["preprocessing"])
    classes = sorted({Path(p).parent.name for p in batch.paths})
    y = np.array([classes.index(Path(p).parent.name) for p in batch.paths])
    ref_out = keras.models.load_model(bundle / "float_model.keras", compile=False).predict(batch.x, verbose=0)
    q = edgelib.Model.from_file(str(bundle / primary_model(manifest)["file"]))
    q_out = q.predict(batch.x)
    labels = (bundle / "labels.txt").read_text().split()

    def scores(out: np.ndarray) -> dict:
        pred = out.argmax(-1)
        conf = np.zeros((len(labels), len(labels)), int)
        for t, p in zip(y, pred, strict=True):
            conf[t, p] += 1
        return {
            "top1": float(np.mean(pred == y)),
            "top5": 1.0,  # three classes: always within the top five
            "n": int(y.size),
            "per_class": {labels[c]: float(conf[c, c] / conf[c].sum()) for c in range(len(labels))},
            "confusion": {"labels": labels, "matrix": conf.tolist()},
        }

    ref, tfl = scores(ref_out), scores(q_out)
    return {
        "schema_version": 1,
        "bundle": str(bundle),
        "reference": {**ref, "device": {"type": "CPU", "name": edgelib.cpu_info()["model"]}},
        "tflite": {**tfl, "runtime": f"{q.runtime} {q.runtime_version}"},
        "agreement": float(np.mean(ref_out.argmax(-1) == q_out.argmax(-1))),
        "top1_change": tfl["top1"] - ref["top1"],
    }


@pytest.fixture(scope="session")
def report_db(tmp_path_factory, tiny_bundle, digits_dir) -> Path:
    """export + `edgekit profile` (int8 and float32, 1 and 2 threads) + desktop eval + device eval."""
    from edgekit import store
    from edgekit.manifest import read_manifest

    db = tmp_path_factory.mktemp("report") / "results.db"
    env = {"EDGEKIT_DB": str(db)}
    manifest = read_manifest(tiny_bundle)
    store.record("export", {"bundle": str(tiny_bundle), **manifest}, manifest=manifest, db=db)
    run_cli(
        "profile",
        str(tiny_bundle),
        "--threads",
        "1,2",
        "--runs",
        "20",
        "--min-seconds",
        "0.05",
        "--json",
        env=env,
    )
    store.record("eval", desktop_eval(tiny_bundle, digits_dir), manifest=manifest, db=db)
    # the device script's own eval, on this machine as the device (what `edgekit eval --device local` runs)
    from edgekit import runner

    target = runner.resolve_device("local")
    (ref,) = runner.resolve_models(str(tiny_bundle), all_precisions=False)
    doc = runner.evaluate(target, ref, str(digits_dir), threads=1)
    result = {
        "schema_version": 1,
        "device": doc["device"],
        "precision": doc["model"].get("precision"),
        "tflite": {k: doc[k] for k in ("top1", "top5", "n", "latency_ms", "runtime")},
        "device_result": doc,
    }
    store.record("eval", json.loads(json.dumps(result)), manifest=manifest, device=doc["device"], db=db)
    return db
