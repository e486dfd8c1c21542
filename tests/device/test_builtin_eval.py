"""`eval --device` on a built-in dataset: preprocessed on the desktop into an .npz, evaluated on the
device script, identical to the desktop's own evaluation of the same model."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def test_device_eval_on_builtin_digits_matches_the_desktop(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(i) for i in reversed(range(10))) + "\n")  # order differs from the data's
    bundle = tmp_path / "b"
    run_cli("export", "--model", "mobilenet", "--alpha", "0.25", "--resolution", "32", "--labels", str(labels),
            "--calibration", "builtin:digits:train", "--calibration-samples", "50", "-o", str(bundle))  # fmt: skip
    # the desktop eval first: it stores reference.json, which the device result is compared with
    desktop = json.loads(run_cli("eval", str(bundle), "--data", "builtin:digits:test", "--json").stdout)
    device = json.loads(
        run_cli("eval", str(bundle), "--device", "local", "--data", "builtin:digits:test", "--json").stdout
    )
    assert device["device_result"]["data"]["source"] == "builtin:digits:test"
    assert device["tflite"]["n"] == desktop["tflite"]["n"] > 300
    assert device["tflite"]["top1"] == pytest.approx(desktop["tflite"]["top1"], abs=1e-4)  # desktop rounds to 4 places
    assert device["agreement"] == 1.0
