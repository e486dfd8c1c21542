"""Colours and crops: each capture back end declares its byte order and the model gets RGB (a fake
Picamera2 that follows picamera2's documented formats delivers a red-over-blue scene); the desktop,
eval_images.py and the camera script preprocess one image identically (resize, and centre crop)."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.device.conftest import SCRIPTS, last_json
from tests.device.livehelpers import MODEL, PHOTOS, Script, conn, read_parts

FAKE = Path(__file__).parent / "fake_picamera2"
EXPECTED = {"RGB888": "BGR", "BGR888": "RGB", "XRGB8888": "BGRX", "XBGR8888": "RGBX"}

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"the shared real model is not at {MODEL}")


@pytest.fixture
def camera_script(monkeypatch):
    """classify_camera.py imported from device_scripts, with the fake picamera2 importable."""
    monkeypatch.syspath_prepend(str(FAKE))
    monkeypatch.syspath_prepend(str(SCRIPTS))
    for name in ("picamera2", "classify_camera", "pixels"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import classify_camera

    yield classify_camera
    sys.modules.pop("picamera2", None)


def _rgb_halves(x: np.ndarray) -> tuple:
    """(top-half colour, bottom-half colour) of an HxWx3 RGB image, away from the boundary."""
    h = x.shape[0]
    return tuple(np.median(x[: h // 3], axis=(0, 1))), tuple(np.median(x[-h // 3 :], axis=(0, 1)))


@pytest.mark.parametrize("fmt", sorted(EXPECTED))
def test_picamera2_red_reaches_the_model_as_red(camera_script, fmt):
    cc = camera_script
    args = cc.parse_args(["--model", str(MODEL), "--picamera2", "--picamera2-format", fmt, "--width", "64",
                          "--height", "48"])  # fmt: skip
    ctx = cc.edgelib.open_model(str(MODEL))
    prepare = cc.make_prepare(ctx, EXPECTED[fmt])
    source, info = cc.open_source(args, prepare)
    try:
        _, frame, _ = source.next()
    finally:
        source.stop()
    assert info["byte_order"] == EXPECTED[fmt] and info["format"] == fmt
    # this model's input is the raw pixel (uint8, no metadata: q = p), so the tensor is the picture
    assert ctx.prep["source"] == "guessed" and ctx.model.input["dtype"] == np.uint8
    x = prepare(frame)[0]
    top, bottom = _rgb_halves(x)
    assert top == (255, 0, 0) and bottom == (0, 0, 255), (fmt, top, bottom)


def test_byte_orders_convert_once():
    sys.path.insert(0, str(SCRIPTS))
    import pixels

    rgb = np.array([[[255, 0, 0], [0, 128, 255]]], np.uint8)
    assert (pixels.to_rgb(rgb[..., ::-1].copy(), "BGR") == rgb).all()
    assert pixels.to_rgb(rgb, "RGB") is rgb  # nothing to do: no copy
    bgra = np.concatenate([rgb[..., ::-1], np.full((1, 2, 1), 255, np.uint8)], -1)
    assert (pixels.to_rgb(bgra, "BGRX") == rgb).all() and (pixels.to_bgr(bgra, "BGRX") == rgb[..., ::-1]).all()
    assert (pixels.to_bgr(rgb, "RGB") == rgb[..., ::-1]).all()
    assert pixels.to_rgb(np.zeros((2, 3), np.uint8), "GRAY").shape == (2, 3, 3)
    with pytest.raises(ValueError, match="unknown byte order"):
        pixels.to_rgb(rgb, "YUV")


def test_picamera2_colours_through_the_script_and_the_live_view(tmp_path):
    """The real script with the fake camera: the model's view served to the browser is red over blue."""
    import cv2

    s = Script("--picamera2", "--width", "160", "--height", "120", "--serve", "127.0.0.1:0",
               env={"PYTHONPATH": str(FAKE)})  # fmt: skip
    url = s.wait_url()
    try:
        views = {}
        for view in ("model", "camera"):
            c = conn(url)
            c.request("GET", f"/stream.mjpg?view={view}")
            bgr = cv2.imdecode(np.frombuffer(read_parts(c.getresponse(), 1)[0], np.uint8), cv2.IMREAD_COLOR)
            c.close()
            views[view] = bgr[:, bgr.shape[1] // 2 :, ::-1]  # the right half: no overlay text there
    finally:
        s.proc.send_signal(signal.SIGINT)
        rc, out, err = s.finish()
    assert rc == 0, err
    for view, rgb in views.items():
        top, bottom = _rgb_halves(rgb)
        assert top[0] > 200 and max(top[1:]) < 50, (view, top)  # red, within JPEG's error
        assert bottom[2] > 200 and max(bottom[:2]) < 50, (view, bottom)
    doc = last_json(out)
    assert doc["source"]["byte_order"] == "BGR" and doc["source"]["format"] == "RGB888"
    assert doc["end_reason"] == "interrupted" and doc["frames"] >= 1


@pytest.mark.parametrize("crop", ["none", "center"])
def test_desktop_eval_and_camera_preprocess_alike(camera_script, tmp_path, crop):
    """One photo through the desktop's loader, eval_images.py's and the camera script's preprocessing:
    the same model input, bit for bit, for a bundle whose manifest says resize or centre crop."""
    import cv2

    from edgekit.data import datasets as data

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copy(MODEL, bundle / MODEL.name)
    prep = {"size": [128, 128], "mean": [128.0] * 3, "std": [128.0] * 3, "color": "RGB", "resize": "bilinear"}
    if crop != "none":
        prep["crop"] = crop
    manifest = {"schema_version": 1, "models": [{"file": MODEL.name, "precision": "int8"}], "preprocessing": prep}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    folder = tmp_path / "photos" / "bees"
    folder.mkdir(parents=True)
    photo = sorted((PHOTOS / "bees").glob("*.jpg"))[0]
    shutil.copy(photo, folder / photo.name)

    cc = camera_script
    ctx = cc.edgelib.open_model(str(bundle / MODEL.name))
    assert ctx.prep_source == "manifest" and ctx.prep.get("crop", "none") == crop
    desktop = ctx.model.quantize_input(data.decode(data.open_dataset(folder.parent), prep).x[:1])
    eval_images = cc.edgelib.prepare_image(ctx, cc.edgelib.decode_image(str(folder / photo.name)))
    camera = cc.make_prepare(ctx, "BGR")(cv2.imread(str(folder / photo.name)))
    assert desktop.shape == (1, 128, 128, 3)
    assert np.array_equal(desktop, eval_images) and np.array_equal(eval_images, camera)
    # and the crop is what it says: a centre crop differs from squashing the whole photo
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    side = min(h, w)
    window = rgb[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    squash = cv2.resize(rgb.astype(np.float32), (128, 128), interpolation=cv2.INTER_LINEAR)
    cropped = cv2.resize(window.astype(np.float32), (128, 128), interpolation=cv2.INTER_LINEAR)
    expected = cropped if crop == "center" else squash
    assert np.abs(camera[0].astype(np.float32) - expected).max() <= 1.0
