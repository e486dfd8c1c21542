"""M4, L5, M8: a data folder with a dangling symlink, an unreadable file, a named pipe called *.jpg or a
decompression bomb: skipped with a reason by the desktop (eval, export's calibration) and by the
device script alike, never a traceback, a hang or gigabytes of memory; never shipped to a device."""

from __future__ import annotations

import io
import os
import shutil
import tarfile

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.hardening.conftest import make_bundle, write_images


def jpeg_bomb(path, side: int = 20000):
    """A small real JPEG whose frame header says side x side pixels: a decoder allocates for all of them."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = 2
    while data[i + 1] not in (0xC0, 0xC2):  # walk the segments to the frame header
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    data[i + 5 : i + 9] = side.to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))
    return path


@pytest.fixture()
def hostile(tmp_path):
    """Real images plus a dangling symlink, a FIFO and a bomb, all named like images."""
    root = write_images(tmp_path / "data", per_class=2)
    (root / "class_0" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(root / "class_1" / "pipe.jpg")
    jpeg_bomb(root / "class_2" / "bomb.jpg")
    return root


def test_edgelib_reads_only_regular_small_files(hostile):
    from edgekit.device_scripts import edgelib

    with pytest.raises(edgelib.ImageReadError, match="cannot read"):
        edgelib.decode_image(str(hostile / "class_0" / "gone.jpg"))
    with pytest.raises(edgelib.ImageReadError, match="not a regular file"):
        edgelib.decode_image(str(hostile / "class_1" / "pipe.jpg"))  # returns at once: no hang
    with pytest.raises(edgelib.ImageReadError, match="20000 x 20000 pixels.*Mpx cap"):
        edgelib.decode_image(str(hostile / "class_2" / "bomb.jpg"))
    assert edgelib.decode_image(str(hostile / "class_0" / "0.png")).shape == (24, 24, 3)


def test_pixel_cap_comes_from_the_environment(tmp_path, monkeypatch):
    from PIL import Image

    from edgekit.device_scripts import edgelib

    p = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(p)
    assert edgelib.decode_image(str(p)).shape == (300, 400, 3)
    monkeypatch.setenv("EDGEKIT_MAX_IMAGE_PIXELS", "100000")
    with pytest.raises(edgelib.ImageReadError, match="400 x 300 pixels"):
        edgelib.decode_image(str(p))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_header_sizes_match_the_decoder(tmp_path, fmt):
    from PIL import Image

    from edgekit.device_scripts import edgelib

    p = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(np.zeros((37, 53, 3), np.uint8)).save(p, fmt)
    assert edgelib.image_dimensions(p.read_bytes()) == (53, 37)


def test_desktop_eval_skips_them_with_a_warning(tmp_path, hostile):
    b = make_bundle(tmp_path / "b")
    proc = run_cli("eval", str(b), "--data", str(hostile), "--no-write", "--json", check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    doc = json.loads(proc.stdout)
    assert doc["data"]["n"] == 6
    assert sorted(os.path.basename(s) for s in doc["data"]["skipped"]) == ["bomb.jpg", "gone.jpg", "pipe.jpg"]


def test_device_script_skips_them_with_reasons(tmp_path, hostile):
    from tests.device.conftest import last_json, run_script

    b = make_bundle(tmp_path / "b")
    doc = last_json(
        run_script("eval_images.py", "--model", str(b / "tiny_int8.tflite"), "--data", str(hostile), "--json").stdout
    )
    reasons = {os.path.basename(s["path"]): s["reason"] for s in doc["skipped"]}
    assert set(reasons) == {"bomb.jpg", "gone.jpg", "pipe.jpg"} and doc["n"] == 6
    assert "Mpx cap" in reasons["bomb.jpg"] and "regular file" in reasons["pipe.jpg"]


def test_calibration_folder_skips_them(hostile):
    from edgekit.data.datasets import load_calibration

    prep = {"size": [16, 16], "mean": [0.0] * 3, "std": [1.0] * 3}
    batch = load_calibration(str(hostile), prep, limit=100)
    assert batch.x.shape[0] == 6 and len(batch.skipped) == 3


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file: PermissionError cannot happen")
def test_unreadable_file_is_skipped(tmp_path):
    from edgekit.device_scripts import edgelib

    root = write_images(tmp_path / "d", per_class=1)
    p = root / "class_0" / "0.png"
    p.chmod(0)
    with pytest.raises(edgelib.ImageReadError, match="cannot read"):
        edgelib.decode_image(str(p))


def test_images_over_the_cap_and_special_files_are_not_shipped(tmp_path, hostile):
    """eval --device on an SSH device tars the data folder: only regular images under the cap go."""
    from edgekit.devices.staging import inputs_tar

    with inputs_tar([hostile], "/remote/in") as (buf, mapping, skipped):
        names = tarfile.open(fileobj=buf).getnames()
    assert not any(n.endswith(("bomb.jpg", "pipe.jpg", "gone.jpg")) for n in names), names
    assert sum(n.endswith(".png") for n in names) == 6
    assert sorted(os.path.basename(s) for s, _ in skipped) == ["bomb.jpg", "gone.jpg", "pipe.jpg"]
    assert shutil.which("tar")
