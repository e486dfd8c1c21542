"""A results database filled by real small runs: export, profile and evals of the tiny bundle, by the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

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


@pytest.fixture(scope="session")
def report_db(tmp_path_factory, tiny_bundle, digits_dir) -> Path:
    """export + `edgekit profile` (int8 and float32, 1 and 2 threads) + `edgekit eval` on the desktop and on `local`."""
    from edgekit.bundle.manifest import read_manifest
    from edgekit.results import store

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
    # the desktop eval (float Keras reference + host TFLite) and the device script's eval on `local`;
    # the tiny bundle's labels are class_0..2, the folders digit_0..2: name the outputs after the folders
    labels = db.parent / "labels.txt"
    labels.write_text("".join(f"{d.name}\n" for d in sorted(digits_dir.iterdir()) if d.is_dir()))
    data = ["--data", str(digits_dir), "--labels", str(labels), "--json"]
    run_cli("eval", str(tiny_bundle), *data, "--no-write", env=env)
    run_cli("eval", str(tiny_bundle), *data, "--device", "local", env=env)
    return db
