"""The device scripts are standalone: Python 3.9 syntax, no edgekit/TensorFlow/click/rich imports, and
they run in a fresh venv that holds only numpy + ai-edge-litert (+ OpenCV headless)."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest

from tests.device.conftest import DEVICE_LIBRARIES, DEVICE_SCRIPTS, SCRIPTS, int8_model, last_json, run_script

ALLOWED_THIRD_PARTY = {"numpy", "cv2", "PIL", "ai_edge_litert", "tflite_runtime", "picamera2"} | {
    n.removesuffix(".py") for n in DEVICE_LIBRARIES}  # the scripts' own siblings
FORBIDDEN = {"edgekit", "tensorflow", "click", "rich", "keras"}


def _imports(tree: ast.AST):
    """(module, enclosing function name or None) for every import in a module."""
    out = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Import):
                out.extend((a.name.split(".")[0], func) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.append((child.module.split(".")[0], func))
            visit(child, f)

    visit(tree, None)
    return out


@pytest.mark.parametrize("name", [*DEVICE_SCRIPTS, *DEVICE_LIBRARIES])
def test_imports_and_syntax_fit_a_device(name):
    source = (SCRIPTS / name).read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 9))  # no match/case, no 3.10+ grammar
    assert "from __future__ import annotations" in source, "annotations must not be evaluated on 3.9"
    stdlib = set(sys.stdlib_module_names)
    for module, func in _imports(tree):
        if module in stdlib or module == "__future__":
            continue
        if module == "tensorflow":
            # only as the interpreter of last resort, inside the runtime selection (ek_runtime)
            assert name == "ek_runtime.py" and func in ("import_interpreter", "_op_resolver"), (name, func)
            continue
        assert module not in FORBIDDEN, f"{name} imports {module}"
        assert module in ALLOWED_THIRD_PARTY, f"{name} imports {module}, which a device may not have"


@pytest.mark.slow
def test_fresh_venv_has_no_desktop_packages(device_venv, tmp_path):
    for module in ("edgekit", "tensorflow", "click", "rich"):
        proc = subprocess.run(
            [str(device_venv), "-c", f"import {module}"], capture_output=True, text=True, cwd=tmp_path
        )
        assert proc.returncode != 0, f"{module} is importable in the device venv"


@pytest.mark.slow
@pytest.mark.tf
def test_profile_runs_in_device_venv(device_venv, tiny_bundle, copied_scripts):
    proc = run_script(
        "profile_latency.py", "--model", str(int8_model(tiny_bundle)), "--runs", "5", "--warmup", "1",
        "--min-seconds", "0", "--batch", "1,2", "--json", python=str(device_venv), folder=copied_scripts,
    )  # fmt: skip
    doc = last_json(proc.stdout)
    assert doc["kind"] == "profile" and doc["runtime"]["name"] == "ai_edge_litert"
    assert [c["batch"] for c in doc["configurations"]] == [1, 2]
    assert doc["environment"]["python"].startswith(
        subprocess.run([str(device_venv), "-c", "import platform; print(platform.python_version())"],
                       capture_output=True, text=True).stdout.strip()
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.tf
def test_eval_runs_in_device_venv(device_venv, tiny_bundle, digits_dir, copied_scripts):
    proc = run_script(
        "eval_images.py", "--model", str(int8_model(tiny_bundle)), "--data", str(digits_dir), "--json",
        python=str(device_venv), folder=copied_scripts,
    )  # fmt: skip
    doc = last_json(proc.stdout)
    assert doc["n"] == 36 and doc["skipped"] == []


@pytest.mark.slow
@pytest.mark.tf
def test_camera_runs_in_device_venv(device_venv, tiny_bundle, digit_video, copied_scripts):
    proc = run_script(
        "classify_camera.py", "--model", str(int8_model(tiny_bundle)), "--source", str(digit_video),
        "--max-frames", "12", "--headless", "--serve", "127.0.0.1:0", "--json", python=str(device_venv),
        folder=copied_scripts,
    )  # fmt: skip
    doc = last_json(proc.stdout)
    assert doc["frames"] == 12 and doc["end_reason"] == "max_frames"
    assert doc["live_view"]["port"] > 0  # the live view (stdlib + OpenCV) runs there too


@pytest.mark.slow
@pytest.mark.tf
def test_npz_eval_needs_no_image_decoder(device_venv, tiny_bundle, digits_dir, tmp_path):
    """A device without OpenCV and Pillow still evaluates the desktop's preprocessed inputs."""
    from edgekit.bundle.manifest import read_labels, read_manifest
    from edgekit.devices.jobs import pack_eval_npz

    manifest = read_manifest(tiny_bundle)
    labels = read_labels(tiny_bundle / "labels.txt")
    npz = pack_eval_npz(digits_dir, manifest["preprocessing"], labels, tmp_path / "eval.npz")
    assert np.load(npz)["x"].shape == (36, 32, 32, 3)
    blocker = (
        "import sys, runpy; sys.modules['cv2'] = None; sys.modules['PIL'] = None; "
        f"sys.argv = [{str(SCRIPTS / 'eval_images.py')!r}, '--model', {str(int8_model(tiny_bundle))!r}, "
        f"'--data', {str(npz)!r}, '--json']; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run(
        [str(device_venv), "-c", blocker], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    doc = last_json(proc.stdout)
    assert doc["data"]["kind"] == "npz" and len(doc["predictions"]) == 36


@pytest.mark.tf  # the device venv is built from this venv's OpenCV and LiteRT
def test_live_view_runs_where_desktop_packages_cannot_be_imported(tmp_path):
    """classify_camera.py --serve (liveview.py, pixels.py) with edgekit, TensorFlow and click blocked."""
    from tests.device.livehelpers import LABELS, MODEL, write_photo_video

    if not MODEL.is_file():
        pytest.skip(f"the shared real model is not at {MODEL}")
    video = write_photo_video(tmp_path / "clip.avi", 20)
    blocker = (
        "import sys, runpy\nfor m in ('edgekit', 'tensorflow', 'click', 'rich', 'keras'): sys.modules[m] = None\n"
        f"sys.argv = [{str(SCRIPTS / 'classify_camera.py')!r}, '--model', {str(MODEL)!r}, '--labels', "
        f"{str(LABELS)!r}, '--source', {str(video)!r}, '--serve', '127.0.0.1:0', '--headless', '--json']\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = last_json(proc.stdout)
    assert doc["frames"] == 20 and doc["live_view"]["encoded_frames"] == 0
