"""The weights cache: one download per file, complete or nothing. Served by a real HTTP server on
127.0.0.1 (a stand-in mirror via EDGEKIT_WEIGHTS_URL): no test reaches the internet."""

from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edgekit.errors import ModelFileError


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    root = tmp_path / "mirror"
    root.mkdir()
    hits: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("EDGEKIT_WEIGHTS_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setenv("EDGEKIT_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    yield root, hits
    server.shutdown()


def test_downloaded_once_then_served_from_the_cache(mirror, tmp_path):
    from edgekit.pipeline.weights import imagenet

    root, hits = mirror
    payload = b"weights" * 1000
    (root / "mobilenet_2_5_128_tf_no_top.h5").write_bytes(payload)
    pub = imagenet.mobilenet_file(0.25, 128, top=False)
    steps: list[str] = []
    first = imagenet.fetch(pub, steps.append)
    assert first == tmp_path / "cache" / pub.file and first.read_bytes() == payload
    assert steps == [f"downloading {pub.file}"] and len(hits) == 1
    assert imagenet.fetch(pub) == first and len(hits) == 1  # the second time from the cache
    assert sorted(p.name for p in first.parent.iterdir()) == [pub.file]  # no temporary file left


def test_a_file_whose_hash_disagrees_with_its_name_is_not_kept(mirror, tmp_path):
    from edgekit.pipeline.weights import imagenet

    root, _ = mirror
    (root / "resnet18-f37072fd.pth").write_bytes(b"not the real file")
    assert not hashlib.sha256(b"not the real file").hexdigest().startswith("f37072fd")
    with pytest.raises(ModelFileError, match=r"cannot download resnet18-f37072fd.pth .*sha256"):
        imagenet.fetch(imagenet.torchvision_file("resnet18"))
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())


def test_a_missing_file_on_the_server_is_one_line_naming_it(mirror):
    from edgekit.pipeline.weights import imagenet

    pub = imagenet.mobilenet_file(1.0, 224)
    with pytest.raises(ModelFileError) as e:
        imagenet.fetch(pub)
    msg = str(e.value)
    assert "\n" not in msg and pub.url in msg and f"--weights PATH/{pub.file}" in msg
    assert not Path(imagenet.cache_dir() / pub.file).exists()
