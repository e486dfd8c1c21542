"""M2, M3: manifest.json is checked against its schema on read (one line, exit 4), every size from a
file is bounded, and every file name it holds stays inside the bundle (no absolute path, no `..`,
no symbolic link), on the desktop and in deploy."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from edgekit.errors import ExitCode, ModelFileError
from tests.conftest import run_cli
from tests.hardening.conftest import assert_one_line_error, edit_manifest, make_bundle

SHA = "0" * 64


def _set(key, value):
    def change(m):
        m[key] = value
        return m

    return change


def _model(key, value):
    def change(m):
        m["models"][0][key] = value
        return m

    return change


def _drop_model_key(key):
    def change(m):
        del m["models"][0][key]
        return m

    return change


def _prep(key, value):
    def change(m):
        m["preprocessing"][key] = value
        return m

    return change


def _file_entry(entry):
    def change(m):
        m["files"]["tiny_int8.tflite"] = entry
        return m

    return change


def _no(key):
    def change(m):
        del m[key]
        return m

    return change


# 21 malformed manifests from the issue (and their close relatives): each one line, exit 4.
CASES = {
    "a list": lambda m: [m],
    "a string": lambda m: "manifest",
    "a number": lambda m: 1,
    "files null": _set("files", None),
    "files a list": _set("files", ["tiny_int8.tflite"]),
    "file entry without sha256": _file_entry({"size_bytes": 3}),
    "file entry not an object": _file_entry("abc"),
    "sha256 not hex": _file_entry({"sha256": "z" * 64}),
    "model entry without file": _drop_model_key("file"),
    "model entry not an object": _set("models", ["tiny_int8.tflite"]),
    "models empty": _set("models", []),
    "models null": _set("models", None),
    "schema_version alone": lambda m: {"schema_version": 1},
    "no preprocessing": _no("preprocessing"),
    "preprocessing a list": _set("preprocessing", [16, 16]),
    "size [0, -3]": _prep("size", [0, -3]),
    "size [100000, 100000]": _prep("size", [100000, 100000]),
    "size of three": _prep("size", [16, 16, 3]),
    "std 0": _prep("std", [0, 0, 0]),
    "mean NaN": _prep("mean", ["nan", 0, 0]),
    "num_classes -1": _set("num_classes", -1),
    "model file not listed": _model("file", "other.tflite"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_manifest_is_one_line(tmp_path, name):
    from edgekit.bundle.manifest import read_manifest

    b = make_bundle(tmp_path / "b")
    edit_manifest(b, CASES[name])
    with pytest.raises(ModelFileError) as err:
        read_manifest(b)
    assert "\n" not in str(err.value) and str(b) in str(err.value)


def test_malformed_manifests_through_the_cli(tmp_path, images):
    """What a user sees: eval, profile and deploy print one line and exit 4 (no traceback)."""
    for i, name in enumerate(("a list", "files null", "size [100000, 100000]", "no preprocessing")):
        b = make_bundle(tmp_path / f"b{i}")
        edit_manifest(b, CASES[name])
        assert_one_line_error(run_cli("eval", str(b), "--data", str(images), check=False), 4)
    assert_one_line_error(run_cli("profile", str(b), check=False), 4)


def test_not_json_and_not_utf8(tmp_path):
    from edgekit.bundle.manifest import read_manifest

    b = make_bundle(tmp_path / "b")
    (b / "manifest.json").write_bytes(b"\xff\xfe{not json")
    with pytest.raises(ModelFileError):
        read_manifest(b)


def test_non_utf8_labels_in_a_bundle(tmp_path, images):
    b = make_bundle(tmp_path / "b")
    data = "caf\xe9\nb\nc\n".encode("latin-1")
    (b / "labels.txt").write_bytes(data)
    edit_manifest(b, lambda m: {**m, "files": {**m["files"], "labels.txt": {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}}})  # fmt: skip
    assert_one_line_error(run_cli("eval", str(b), "--data", str(images), check=False), 4, "UTF-8")


# --------------------------------------------------------------------------- confinement (M2)


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.txt", "a/../../x", "./labels.txt", "", "a\\b"])
def test_file_names_must_stay_inside_the_bundle(tmp_path, name):
    from edgekit.bundle.manifest import read_manifest

    b = make_bundle(tmp_path / "b")
    for key in ("files", "labels_file", "float_model", "models"):
        def change(m, key=key):
            if key == "files":
                m["files"][name] = {"sha256": SHA, "size_bytes": 1}
            elif key == "models":
                m["models"][0]["file"] = name
                m["files"][name] = {"sha256": SHA, "size_bytes": 1}
            else:
                m[key] = name
            return m

        fresh = make_bundle(tmp_path / f"{key}{abs(hash(name))}")
        edit_manifest(fresh, change)
        with pytest.raises(ModelFileError, match="inside the bundle|file name"):
            read_manifest(fresh)
    assert read_manifest(b)["files"]  # the untouched bundle still reads


def test_deploy_never_sends_a_file_from_outside_the_bundle(tmp_path):
    """The issue's repro: /etc/passwd with its own sha256 in `files` passed verification and was sent."""
    from edgekit.devices.deploy import plan

    b = make_bundle(tmp_path / "b")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the device\n")
    sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    edit_manifest(b, lambda m: {**m, "files": {**m["files"], str(secret): {"sha256": sha, "size_bytes": 19}}})
    with pytest.raises(ModelFileError, match="inside the bundle"):
        plan(b)
    rel = os.path.relpath(secret, b)  # ../secret.txt
    edit_manifest(b, lambda m: {**m, "files": {k: v for k, v in m["files"].items() if k != str(secret)} | {rel: {"sha256": sha, "size_bytes": 19}}})  # fmt: skip
    with pytest.raises(ModelFileError, match="inside the bundle"):
        plan(b)


def test_symlinked_files_are_refused(tmp_path, images):
    from edgekit.devices.deploy import plan

    b = make_bundle(tmp_path / "b")
    outside = tmp_path / "labels-elsewhere.txt"
    outside.write_bytes((b / "labels.txt").read_bytes())  # same content, same sha256
    (b / "labels.txt").unlink()
    (b / "labels.txt").symlink_to(outside)
    with pytest.raises(ModelFileError, match="symbolic link"):
        plan(b)
    assert_one_line_error(run_cli("eval", str(b), "--data", str(images), check=False), 4, "symbolic link")


def test_device_script_keeps_the_labels_file_inside_the_bundle(tmp_path, images):
    """eval_images.py on the device reads labels_file from the manifest: an absolute one is refused."""
    from tests.device.conftest import run_script

    b = make_bundle(tmp_path / "b")
    edit_manifest(b, _set("labels_file", str(tmp_path / "x.txt")))
    (tmp_path / "x.txt").write_text("a\nb\nc\n")
    proc = run_script("eval_images.py", "--model", str(b / "tiny_int8.tflite"), "--data", str(images), check=False)
    assert proc.returncode == int(ExitCode.MODEL) and "inside the bundle" in proc.stderr, proc.stderr


def test_exported_manifest_passes(tmp_path):
    from edgekit.bundle.manifest import read_manifest, validate

    b = make_bundle(tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    assert validate(m, b) == m and read_manifest(b) == m
