"""`edgekit deploy` over real SSH: content-addressed folders, checksums, atomic switch, failures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.bundle.atomic import write_json_atomic
from edgekit.bundle.manifest import read_manifest, sha256_file
from tests.conftest import run_cli

from .proxy import CuttingProxy
from .sshd import SSHServer

pytestmark = [pytest.mark.ssh, pytest.mark.tf]


def variant_bundle(src: Path, dst: Path, labels: list[str]) -> Path:
    """A second, different bundle made cheaply: same models, other labels.txt, manifest updated."""
    shutil.copytree(src, dst)
    (dst / "labels.txt").write_text("\n".join(labels) + "\n")
    m = read_manifest(dst)
    m["files"]["labels.txt"] = {
        "sha256": sha256_file(dst / "labels.txt"),
        "size_bytes": (dst / "labels.txt").stat().st_size,
    }
    write_json_atomic(dst / "manifest.json", m)
    return dst


def deploy(ek_env, bundle, device="pi", check=True):
    proc = run_cli("deploy", str(bundle), "--device", device, "--json", env=ek_env, check=check)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else None)


def test_deploy_redeploy_and_switch(sshd, add_device, ek_env, tiny_bundle, tmp_path):
    wd = tmp_path / "pi's work dir"
    add_device("pi", sshd, workdir=wd)
    _, out = deploy(ek_env, tiny_bundle)
    first = out["devices"][0]["result"]
    assert first["transferred_bytes"] > 0 and not first["skipped"]
    root = Path(first["root"])
    assert root.parent == wd and (wd / "current").resolve() == root.resolve()
    assert (root / "bundle" / "manifest.json").is_file() and not (
        root / "bundle" / "float_model.keras"
    ).exists()
    assert (root / "device_scripts" / "edgelib.py").is_file()
    # the checksums file the device verified is there and still verifies
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=root).returncode == 0
    stamp = root.stat().st_mtime_ns
    _, again = deploy(ek_env, tiny_bundle)
    again = again["devices"][0]["result"]
    assert again["skipped"] and again["transferred_bytes"] == 0 and again["root"] == first["root"]
    assert root.stat().st_mtime_ns == stamp
    # another bundle gets its own folder; `current` follows; the old one stays for a quick switch back
    other = variant_bundle(tiny_bundle, tmp_path / "other", ["zero", "one", "two"])
    _, out = deploy(ek_env, other)
    second = Path(out["devices"][0]["result"]["root"])
    assert second != root and (wd / "current").resolve() == second.resolve() and root.is_dir()
    assert (second / "bundle" / "labels.txt").read_text().split() == ["zero", "one", "two"]
    _, back = deploy(ek_env, tiny_bundle)
    assert back["devices"][0]["result"]["skipped"] and (wd / "current").resolve() == root.resolve()


def test_bare_tflite_is_wrapped(sshd, add_device, ek_env, tiny_bundle, tmp_path):
    add_device("pi", sshd, workdir=tmp_path / "wd")
    model = next(tiny_bundle.glob("*_int8.tflite"))
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(model, lone / model.name)
    _, out = deploy(ek_env, lone / model.name)
    root = Path(out["devices"][0]["result"]["root"])
    m = json.loads((root / "bundle" / "manifest.json").read_text())
    assert m["models"][0]["file"] == model.name and m["num_classes"] == 3
    assert (root / "bundle" / "labels.txt").is_file()  # taken from the metadata embedded in the model


def test_damaged_bundle_is_refused_before_connecting(add_device, sshd, ek_env, tiny_bundle, tmp_path):
    add_device("pi", sshd, workdir=tmp_path / "wd")
    bad = tmp_path / "bad"
    shutil.copytree(tiny_bundle, bad)
    model = next(bad.glob("*_int8.tflite"))
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    model.write_bytes(bytes(data))
    proc, _ = deploy(ek_env, bad, check=False)
    assert proc.returncode == 5 and model.name in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "wd").exists()


def test_connection_dropped_mid_deploy_keeps_the_previous(
    user_key, add_device, ek_env, tiny_bundle, tmp_path
):
    server = SSHServer(tmp_path / "srv", user_key.with_suffix(".pub"))
    server.root.mkdir()
    server.start()
    proxy = CuttingProxy(server.port)
    try:
        wd = tmp_path / "wd"
        server_addr = server.address
        server.port = proxy.port  # the device entry points at the relay
        add_device("pi", server, workdir=wd)
        server.port = int(server_addr.rsplit(":", 1)[1])
        _, out = deploy(ek_env, tiny_bundle)
        good = Path(out["devices"][0]["result"]["root"])
        other = variant_bundle(tiny_bundle, tmp_path / "other", ["a", "b", "c"])
        proxy.cut_after = 300_000  # well into the ~1.3 MB transfer
        proc, _ = deploy(ek_env, other, check=False)
        assert proxy.cuts == 1
        assert proc.returncode == 6, proc.stderr
        assert "deploy to pi was cut short" in proc.stderr and "connection dropped" in proc.stderr
        assert "previous deployment stays current" in proc.stderr
        assert "Traceback" not in proc.stderr
        # the previous deployment is intact and still current, and it still runs
        assert (wd / "current").resolve() == good.resolve()
        assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=good).returncode == 0
        assert sorted(p.name for p in wd.iterdir() if not p.name.startswith(".")) == sorted(
            ["current", good.name]
        )
        model = next((wd / "current" / "bundle").glob("*_int8.tflite"))
        run = subprocess.run(
            [
                sys.executable,
                str(wd / "current" / "device_scripts" / "profile_latency.py"),
                "--model",
                str(model),
                "--runs",
                "3",
                "--warmup",
                "1",
                "--min-seconds",
                "0",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        # with the network back, the same deploy completes
        proxy.cut_after = None
        _, out = deploy(ek_env, other)
        assert (
            (wd / "current").resolve()
            == Path(out["devices"][0]["result"]["root"]).resolve()
            != good.resolve()
        )
    finally:
        proxy.close()
        server.stop()
