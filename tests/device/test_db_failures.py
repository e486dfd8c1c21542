"""Issue 15, M7: a results database that fails never throws a finished measurement away.

Each command prints its result first, then records it; a database that refuses the record (not
SQLite, newer schema, /dev/full, a dangling symlink, an immutable file) is a one-line warning, exit
code 10, and the result kept as JSON under EDGEKIT_HOME/unrecorded/, from which `edgekit runs
import` records it later. Real SQLite files, real CLI processes.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.tf  # the tiny bundle is made with TensorFlow

NOT_RECORDED = 10
FAST = ("--runs", "3", "--warmup", "1", "--min-seconds", "0")
KINDS = ["not_sqlite", "newer_schema", "dev_full", "dangling_symlink", "immutable"]


def make_broken_db(kind: str, tmp_path: Path, request) -> str:
    if kind == "dev_full":
        return "/dev/full"
    p = tmp_path / "results.db"
    if kind == "not_sqlite":
        p.write_text("my notes, certainly not a database\n" * 20)
    elif kind == "newer_schema":
        conn = sqlite3.connect(p)
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY)")
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
        conn.close()
    elif kind == "dangling_symlink":
        p.symlink_to(tmp_path / "gone" / "results.db")
    elif kind == "immutable":
        from edgekit.results import store

        with store.Store.open(p):
            pass
        if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i needs root and a file system that supports it")
        request.addfinalizer(lambda: subprocess.run(["chattr", "-i", str(p)], capture_output=True))
    return str(p)


def kept_result(proc, kind: str, home: Path) -> dict:
    """The run printed its result, warned once, exited 10 and kept the result in a file."""
    assert proc.returncode == NOT_RECORDED, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1, proc.stderr
    m = re.search(r"kept in (\S+\.json)", warnings[0])
    assert m and "not recorded" in warnings[0], warnings[0]
    path = Path(m.group(1))
    assert path.parent == home / "unrecorded"
    doc = json.loads(path.read_text())
    assert doc["kind"] == kind and doc["schema_version"] == 1 and doc["error"]
    return {**doc, "path": str(path)}


@pytest.fixture(scope="module")
def named_digits(tmp_path_factory, digits_dir) -> Path:
    """The digits in folders named like the tiny bundle's labels (class_0..2), as the desktop eval wants."""
    import shutil

    root = tmp_path_factory.mktemp("named")
    for i, d in enumerate(sorted(p for p in digits_dir.iterdir() if p.is_dir())):
        shutil.copytree(d, root / f"class_{i}")
    return root


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "ekhome"
    h.mkdir()
    return h


@pytest.mark.parametrize("kind", KINDS)
def test_every_broken_database_keeps_the_result(kind, tmp_path, home, request, monkeypatch):
    """The store level, for each way a database fails: the run is kept in a file, then imported."""
    from edgekit.results.unrecorded import import_kept, record_or_keep
    from tests.store.test_store import MANIFEST, profile_result

    monkeypatch.setenv("EDGEKIT_HOME", str(home))
    db = make_broken_db(kind, tmp_path, request)
    out = record_or_keep("profile", profile_result(), manifest=MANIFEST, device={"name": "pi"}, db=db)
    assert not out.ok and out.run_id is None and out.error and Path(out.kept).parent == home / "unrecorded"
    kept = json.loads(Path(out.kept).read_text())
    assert kept["result"] == profile_result() and kept["manifest"] == MANIFEST and kept["db"] == db
    good = tmp_path / "good.db"
    run_id = import_kept(out.kept, good)
    assert not Path(out.kept).exists()
    conn = sqlite3.connect(good)
    assert conn.execute("SELECT id, kind, device, created_at FROM runs").fetchall() == [
        (run_id, "profile", "pi", kept["created_at"])
    ]


def test_profile_prints_then_keeps_the_result(tiny_bundle, tmp_path, home, request):
    """`profile --db` (it had no such option): exit 3 with empty stdout became the JSON, a warning, 10."""
    db = make_broken_db("not_sqlite", tmp_path, request)
    env = {"EDGEKIT_HOME": str(home)}
    proc = run_cli("profile", str(tiny_bundle), *FAST, "--db", db, "--json", env=env, check=False)
    rows = json.loads(proc.stdout)  # the measurement reached stdout whole
    assert rows and all(r["latency_ms"]["p50"] > 0 for r in rows)
    doc = kept_result(proc, "profile", home)
    assert [c["latency_ms"] for c in doc["result"]["configurations"]] == [r["latency_ms"] for r in rows]
    # the kept file records later, into a working database
    good = tmp_path / "good.db"
    run_cli("runs", "import", doc["path"], "--db", str(good), env=env)
    listed = json.loads(run_cli("runs", "list", "--db", str(good), "--json", env=env).stdout)["runs"]
    assert [r["kind"] for r in listed] == ["profile"] and listed[0]["p50_ms"] > 0
    assert not Path(doc["path"]).exists()  # imported: no longer pending


def test_camera_keeps_its_result(tiny_bundle, digit_video, tmp_path, home, request):
    db = make_broken_db("dangling_symlink", tmp_path, request)
    proc = run_cli(
        "camera", str(tiny_bundle), "--source", str(digit_video), "--max-frames", "8", "--db", db, "--json",
        env={"EDGEKIT_HOME": str(home)}, check=False,
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    assert doc["frames"] == 8
    assert kept_result(proc, "camera", home)["result"]["frames"] == 8


def test_eval_on_a_device_keeps_its_result(tiny_bundle, digits_dir, tmp_path, home, request):
    db = make_broken_db("newer_schema", tmp_path, request)
    proc = run_cli(
        "eval", str(tiny_bundle), "--data", str(digits_dir), "--device", "local", "--json",
        env={"EDGEKIT_DB": db, "EDGEKIT_HOME": str(home)}, check=False,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    assert result["tflite"]["n"] == 36
    assert kept_result(proc, "eval", home)["result"]["tflite"]["n"] == 36


def test_eval_on_a_device_honours_db_limit_seed_no_write(tiny_bundle, digits_dir, tmp_path, home):
    """--db, --limit, --seed and --no-write reach `eval --device` (they were accepted and ignored)."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = sorted(p.name for p in bundle.iterdir())
    db = tmp_path / "device.db"
    env = {"EDGEKIT_HOME": str(home), "EDGEKIT_DB": str(tmp_path / "default.db")}

    def device_eval(seed: int) -> dict:
        proc = run_cli(
            "eval", str(bundle), "--data", str(digits_dir), "--device", "local", "--limit", "7",
            "--seed", str(seed), "--no-write", "--db", str(db), "--json", env=env,
        )  # fmt: skip
        return json.loads(proc.stdout)

    a, b, c = device_eval(1), device_eval(1), device_eval(2)
    paths = [sorted(Path(p["path"]).name for p in r["device_result"]["predictions"]) for r in (a, b, c)]
    assert a["tflite"]["n"] == 7 and len(paths[0]) == 7
    assert paths[0] == paths[1] != paths[2]  # seeded: the same sample again, another with another seed
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs WHERE kind='eval'").fetchone()[0] == 3
    assert not Path(env["EDGEKIT_DB"]).exists()
    assert sorted(p.name for p in bundle.iterdir()) == before  # nothing written into the bundle


@pytest.mark.slow
def test_desktop_eval_warns_and_exits_non_zero(tiny_bundle, named_digits, tmp_path, home, request):
    """Desktop eval used to exit 0 and mention the failure only inside its JSON."""
    db = make_broken_db("dev_full", tmp_path, request)
    proc = run_cli(
        "eval", str(tiny_bundle), "--data", str(named_digits), "--no-write", "--json",
        env={"EDGEKIT_DB": db, "EDGEKIT_HOME": str(home)}, check=False,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    assert result["tflite"]["top1"] >= 0
    assert kept_result(proc, "eval", home)["result"]["tflite"]["top1"] == result["tflite"]["top1"]


@pytest.mark.slow
def test_export_keeps_its_record(digits_dir, tmp_path, home, request):
    from tests.conftest import TINY_MODEL

    db = make_broken_db("not_sqlite", tmp_path, request)
    out = tmp_path / "bundle"
    proc = run_cli(
        "export", *TINY_MODEL, "--calibration", str(digits_dir), "--calibration-samples", "8",
        "-o", str(out), "--db", db, "--json", env={"EDGEKIT_HOME": str(home)}, check=False,
    )  # fmt: skip
    printed = json.loads(proc.stdout)
    assert (out / "manifest.json").is_file() and printed["bundle"] == str(out)
    assert kept_result(proc, "export", home)["manifest"]["name"] == printed["name"]


def test_sweep_refuses_a_broken_database_before_measuring(tmp_path, home, request):
    """A sweep resumes from the database, so it checks it can write before the first export."""
    db = make_broken_db("not_sqlite", tmp_path, request)
    proc = run_cli(
        "sweep", "--latency-only", "--alpha", "0.25", "--resolution", "32", "--db", db,
        "-o", str(tmp_path / "sweep"), env={"EDGEKIT_HOME": str(home)}, check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "results database" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sweep").exists() or not any((tmp_path / "sweep").iterdir())
