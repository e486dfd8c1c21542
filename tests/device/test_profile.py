"""`edgekit profile` and profile_latency.py: per-configuration figures, precisions, bad models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from edgekit.device_scripts import edgelib
from edgekit.results import int8_speed
from tests.conftest import run_cli
from tests.device.conftest import int8_model, last_json, run_script

pytestmark = pytest.mark.tf  # the tiny bundle and the third-party models are made with TensorFlow

FAST = ("--runs", "5", "--warmup", "1", "--min-seconds", "0")


def test_profile_bundle_all_precisions(tiny_bundle):
    rows = json.loads(
        run_cli("profile", str(tiny_bundle), "--threads", "1,2", "--batch", "1,3", *FAST, "--json").stdout
    )
    assert len(rows) == 2 * 2 * 2  # precisions x threads x batch
    assert {r["precision"] for r in rows} == {"int8", "float32"}
    for r in rows:
        assert r["supported"] is True
        lat = r["latency_ms"]
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["std"] >= 0 and lat["mean"] > 0
        assert r["latency_per_image_ms"]["p50"] == pytest.approx(lat["p50"] / r["batch"])
        # throughput is images over the time actually spent invoking
        assert r["images_per_s"] == pytest.approx(r["batch"] * r["runs"] / r["duration_s"])
        assert r["runs"] >= 5 and r["init_ms"] > 0 and r["first_inference_ms"] > 0
        assert r["peak_rss_mb"] > 10 and r["model_size_bytes"] > 1000
        assert r["runtime"] == "ai_edge_litert" and r["device"] == "local" and r["xnnpack"] is True
    for key in {(r["threads"], r["batch"]) for r in rows}:
        same = [r for r in rows if (r["threads"], r["batch"]) == key]
        fastest = [r for r in same if r["fastest"]]
        assert len(fastest) == 1, key
        best = fastest[0]
        assert best["latency_ms"]["p50"] == min(r["latency_ms"]["p50"] for r in same)
        assert best["fastest_note"].startswith(f"{best['precision']} is fastest at threads={key[0]} batch={key[1]}")
        # the int8/float verdict states what these figures show, on whichever CPU runs the suite
        i8, f32 = (next(r["latency_ms"]["p50"] for r in same if r["precision"] == p) for p in ("int8", "float32"))
        assert best["fastest_note"].endswith(int8_speed.verdict(edgelib.cpu_info(), i8, f32))
        said = {"faster": f"int8 is {f32 / i8:.2f}x faster", "slower": f"int8 is {i8 / f32:.2f}x slower",
                "same": "about the same time"}[int8_speed.measured(i8, f32)]  # fmt: skip
        assert said in best["fastest_note"]


def test_profile_text_output_names_the_fastest(tiny_bundle):
    out = run_cli("profile", str(tiny_bundle), *FAST).stdout
    assert "fastest (*)" in out and "int8" in out and "float32" in out and "p50" in out


def test_script_document_and_real_image_input(tiny_bundle, digits_dir):
    doc = last_json(
        run_script("profile_latency.py", "--model", str(int8_model(tiny_bundle)), "--input", str(digits_dir),
                   "--batch", "4", *FAST, "--json").stdout
    )  # fmt: skip
    assert doc["schema_version"] == 1 and doc["kind"] == "profile"
    assert doc["settings"]["input"] == "images" and doc["settings"]["images"] == 36
    env = doc["environment"]
    assert env["cpu"]["cores"] >= 1 and "simd" in env["cpu"] and env["python"] and env["os"]
    assert "temperature_c" in env and "temperature_c" in doc["environment_after"]
    assert doc["model"]["precision"] == "int8" and doc["model"]["input"]["dtype"] == "int8"
    assert doc["runtime"]["xnnpack"] is True
    (row,) = doc["configurations"]
    assert row["batch"] == 4 and "latency_trend" in row and isinstance(row["drift_flag"], bool)


def test_runs_are_never_cut_by_the_cap(bare_model):
    """--runs is a promise ("at least"): a --max-runs below it does not cut the measurement short."""
    doc = last_json(
        run_script("profile_latency.py", "--model", str(bare_model), "--runs", "40", "--max-runs", "10",
                   "--warmup", "0", "--min-seconds", "0", "--json").stdout
    )  # fmt: skip
    (row,) = doc["configurations"]
    assert row["runs"] == 40, row


def test_min_seconds_keeps_timing(bare_model):
    doc = last_json(
        run_script("profile_latency.py", "--model", str(bare_model), "--runs", "1", "--warmup", "0",
                   "--min-seconds", "0.3", "--json").stdout
    )  # fmt: skip
    row = doc["configurations"][0]
    assert row["runs"] > 1 and row["duration_s"] >= 0.25  # ran until the minimum duration, not 1 run


def test_no_xnnpack_is_reported(bare_model):
    doc = last_json(
        run_script("profile_latency.py", "--model", str(bare_model), "--no-xnnpack", *FAST, "--json").stdout
    )
    assert doc["runtime"]["xnnpack"] is False


def test_bare_tflite_uses_embedded_metadata(bare_model):
    rows = json.loads(run_cli("profile", str(bare_model), *FAST, "--json").stdout)
    assert len(rows) == 1 and rows[0]["precision"] == "int8" and "fastest_note" not in rows[0]


def test_fixed_batch_model_says_so(tf_models):
    rows = json.loads(
        run_cli("profile", str(tf_models["uint8_fixed"]), "--batch", "1,4", *FAST, "--json").stdout
    )
    ok, bad = rows
    assert ok["supported"] is True and ok["batch"] == 1
    assert bad["supported"] is False and "cannot take batch 4" in bad["error"]


@pytest.mark.parametrize(
    ("maker", "code", "message"),
    [
        (lambda p, m: p.write_bytes(b"hello, I am not a model at all"), 4, "not a TFLite flatbuffer"),
        (lambda p, m: p.write_bytes(m.read_bytes()[:4000]), 4, "truncated"),
        (lambda p, m: p.write_bytes(b""), 4, "too small"),
    ],
    ids=["not-tflite", "truncated", "empty"],
)
def test_bad_model_files(tmp_path, bare_model, maker, code, message):
    bad = tmp_path / "bad.tflite"
    maker(bad, bare_model)
    for cmd in (("profile", str(bad)), ("camera", str(bad), "--source", "x.avi")):
        proc = run_cli(*cmd, check=False)
        assert proc.returncode == code, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    # the device script on its own says the same
    proc = run_script("profile_latency.py", "--model", str(bad), check=False)
    assert proc.returncode == 4 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_not_an_image_classifier(tf_models):
    proc = run_cli("profile", str(tf_models["tabular"]), check=False)
    assert (
        proc.returncode == 4 and "not an image classifier" in proc.stderr and "Traceback" not in proc.stderr
    )


@pytest.mark.slow
def test_a_model_whose_invoke_fails(tf_models, digits_dir, digit_video):
    model = str(tf_models["fails_at_invoke"])
    for proc in (
        run_cli("profile", model, check=False),
        run_script("profile_latency.py", "--model", model, check=False),
        run_script("eval_images.py", "--model", model, "--data", str(digits_dir), check=False),
        run_script("classify_camera.py", "--model", model, "--source", str(digit_video), check=False),
    ):
        assert proc.returncode == 4, proc.stderr
        assert "invoke failed" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupted_models_never_kill_the_cli(tmp_path, bare_model):
    """Bytes flipped all over a real model: each run ends with a result or one clear line, never a crash."""
    import numpy as np

    data = bytearray(bare_model.read_bytes())
    rng = np.random.default_rng(7)
    n_flat = len(data) - 2000  # leave the appended metadata zip alone; damage the flatbuffer
    for i in range(4):
        bad = bytearray(data)
        start = int(rng.integers(8, n_flat - 64))
        bad[start : start + 64] = rng.integers(0, 256, size=64, dtype=np.uint8).tobytes()
        path = tmp_path / f"corrupt{i}.tflite"
        path.write_bytes(bytes(bad))
        proc = run_cli("profile", str(path), *FAST, "--json", check=False)
        assert "Traceback" not in proc.stderr
        # which bytes were hit decides the outcome, and each outcome has one form: damaged weights
        # still run (a result), a damaged structure is a model error (4), a crash in the probe a
        # device error (6); always with one line saying so
        if proc.returncode == 0:
            rows = json.loads(proc.stdout)
            assert len(rows) == 1 and rows[0]["precision"] == "int8" and "supported" in rows[0]
        else:
            assert proc.returncode in (4, 6), proc.stderr
            assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_usage_errors(tiny_bundle, tmp_path):
    cases = [
        (("profile", str(tiny_bundle), "--device", "pi"), 2, "edgekit devices add"),
        (("profile", str(tiny_bundle), "--threads", "0"), 2, "--threads"),
        (("profile", str(tiny_bundle), "--batch", "x"), 2, "--batch"),
        (("profile", str(tiny_bundle), "--input", str(tmp_path / "nope")), 2, "--input"),
        (("profile", str(tmp_path / "missing.tflite")), 3, "does not exist"),
    ]
    for args, code, text in cases:
        proc = run_cli(*args, check=False)
        assert proc.returncode == code, (args, proc.stderr)
        assert text in proc.stderr and "Traceback" not in proc.stderr


def test_changed_bundle_file_is_probed_not_trusted(tiny_bundle, tmp_path):
    """A bundle whose model no longer matches its checksum is loaded in a subprocess probe first."""
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    model = int8_model(copy)
    model.write_bytes(b"garbage" * 10)
    proc = run_cli("profile", str(copy), check=False)
    assert proc.returncode == 4 and "not a TFLite flatbuffer" in proc.stderr


def test_device_commands_do_not_import_tensorflow(tiny_bundle):
    code = (
        "import sys\nfrom edgekit.cli import main\n"
        f"try:\n    main(['profile', {str(tiny_bundle)!r}, '--runs', '2', '--min-seconds', '0', '--json'])\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "print('TF', 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "TF False False"


def test_device_warnings_are_shown_verbatim(bare_model, digits_dir, tmp_path):
    """A warning streamed from the device (here: an unreadable image named with brackets) reaches the
    user as text, never parsed as markup."""
    folder = tmp_path / "imgs"
    shutil.copytree(digits_dir, folder)
    (folder / "digit_0" / "[bold]bad.png").write_bytes(b"not a png")
    proc = run_cli("profile", str(bare_model), "--input", str(folder), *FAST)
    assert "[bold]bad.png" in proc.stderr and "Traceback" not in proc.stderr
