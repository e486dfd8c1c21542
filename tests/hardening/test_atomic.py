"""L1, L2: overwriting a bundle never leaves a moment without one (and a failed or killed overwrite
keeps the old one); stale temporary folders are cleaned; files and folders follow the umask, and
only the device inventory is 0600."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from edgekit.bundle import atomic
from tests.hardening.conftest import make_bundle


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


_WATCH = """
import os, sys
path, stop, n = sys.argv[1], sys.argv[2], 0
print("watching", flush=True)
while not os.path.exists(stop):
    for _ in range(1000):
        n += not os.path.isfile(path)
print(n)
"""


def test_overwrite_never_leaves_the_folder_without_a_manifest(tmp_path):
    """Another process polls manifest.json through 30 overwrites (the rename-aside-then-in window
    was caught hundreds of times this way)."""
    out = make_bundle(tmp_path / "b")
    stop = tmp_path.parent / f"{tmp_path.name}.stop"
    w = subprocess.Popen(
        [sys.executable, "-c", _WATCH, str(out / "manifest.json"), str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert w.stdout.readline().strip() == "watching"
        for i in range(30):
            make_bundle(out, name=f"v{i}")
    finally:
        stop.touch()
        missing = int(w.communicate(timeout=60)[0].strip())
        stop.unlink()
    assert missing == 0
    assert json.loads((out / "manifest.json").read_text())["name"] == "v29"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary folder left behind


def test_rename_aside_fallback_restores_the_old_bundle_on_failure(tmp_path, monkeypatch):
    out = make_bundle(tmp_path / "b", name="old")
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real = os.rename

    def failing(src, dst):
        if str(dst) == str(out) and ".tmp-" in str(src):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "rename", failing)
    with pytest.raises(OSError):
        make_bundle(out, name="new")
    monkeypatch.setattr(atomic.os, "rename", real)
    assert json.loads((out / "manifest.json").read_text())["name"] == "old"


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_killed_overwrite_is_repaired_by_the_next_export(tmp_path):
    """kill -9 between the two renames of the fallback: the old bundle sits aside, no bundle in place."""
    out = make_bundle(tmp_path / "b", name="old")
    pid = _dead_pid()
    aside = tmp_path / f".b.old-{pid}-abc123"
    os.rename(out, aside)
    stale = tmp_path / f".b.tmp-{pid}-xyz"
    stale.mkdir()
    (stale / "model.tflite").write_bytes(b"half")
    done = atomic.restore_or_clean(out)
    assert sorted(p.name for p in done) == sorted([aside.name, stale.name])
    assert json.loads((out / "manifest.json").read_text())["name"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_live_writers_temporary_folder_is_left_alone(tmp_path):
    out = tmp_path / "b"
    mine = atomic.temp_dir_beside(out)
    assert atomic.restore_or_clean(out) == [] and mine.is_dir()


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_bundle_files_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        b = make_bundle(tmp_path / "b")
        atomic.write_json_atomic(b / "reference.json", {"a": 1})
        report = atomic.write_text_atomic(tmp_path / "r" / "report.html", "<p>")
    finally:
        os.umask(old)
    assert _mode(b) == 0o777 & ~mask
    for p in (b / "manifest.json", b / "labels.txt", b / "tiny_int8.tflite", b / "reference.json", report):
        assert _mode(p) == 0o666 & ~mask, p


def test_inventory_stays_private(tmp_path):
    from edgekit.devices import inventory

    p = inventory.save({}, tmp_path / "devices.toml")
    assert _mode(p) == 0o600


def test_one_atomic_writer():
    """The three copies (manifest, reports, inventory) are gone: everything goes through bundle.atomic."""
    import edgekit

    root = os.path.dirname(edgekit.__file__)
    users = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            # weights/imagenet.py streams a download to a temp file (from main, issue 13): not a copy of these
            if f.endswith(".py") and f not in ("atomic.py", "imagenet.py"):
                text = open(os.path.join(dirpath, f), encoding="utf-8").read()
                if "mkstemp(" in text:
                    users.append(f)
    assert users == []
