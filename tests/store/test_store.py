"""The results store on a real SQLite file: recording, reading back, concurrency, crashes, migrations."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import InputDataError, UsageError
from edgekit.results import store
from edgekit.results.filters import RunFilter
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]


def profile_result(p50: float = 2.0, threads=(1, 2), drift: bool = False) -> dict:
    """The shape `edgekit profile` records (jobs.record_profile): configurations + environment."""
    return {
        "schema_version": 1,
        "precision": "int8",
        "configurations": [
            {
                "precision": "int8",
                "threads": t,
                "batch": 1,
                "latency_ms": {
                    "p50": p50 / t,
                    "p90": p50 * 1.2 / t,
                    "p99": p50 * 1.5 / t,
                    "mean": p50 / t,
                    "std": 0.1,
                    "min": p50 * 0.9 / t,
                    "max": p50 * 2 / t,
                },  # fmt: skip
                "images_per_s": 1000 * t / p50,
                "peak_rss_bytes": 50_000_000,
                "model_size_bytes": 300_000,
                "drift_flag": drift,
            }
            for t in threads
        ],
        "environment": {"cpu": {"model": "Test CPU", "cores": 4}, "temperature_c": 51.5},
        "environment_after": {"temperature_c": 63.0},
        "runtime": {"name": "ai_edge_litert", "version": "2.3.0", "xnnpack": True},
    }


MANIFEST = {
    "schema_version": 1,
    "name": "mobilenet_v1_025_32",
    "model": {
        "family": "mobilenet_v1",
        "alpha": 0.25,
        "resolution": 32,
        "classes": 3,
        "params": 218_000,
        "macs": 830_000,
    },  # fmt: skip
    "num_classes": 3,
    "models": [
        {
            "file": "m_int8.tflite",
            "precision": "int8",
            "size_bytes": 313_000,
            "verification": {"top1_agreement": 0.97},
        }
    ],  # fmt: skip
    "files": {"m_int8.tflite": {"sha256": "ab" * 32, "size_bytes": 313_000}},
}
EVAL = {
    "tflite": {"top1": 0.9, "top5": 1.0, "n": 30, "runtime": "ai_edge_litert 2.3.0"},
    "reference": {"top1": 0.93, "top5": 1.0, "n": 30, "device": {"type": "CPU", "name": "x"}},
    "agreement": 0.96,
    "top1_change": -0.03,
}


# --------------------------------------------------------------------------- recording


def test_record_profile_eval_export_round_trip(tmp_path):
    db = tmp_path / "r.db"
    pid = store.record(
        "profile", profile_result(), manifest=MANIFEST, device={"name": "pi", "kind": "ssh"}, db=db
    )
    eid = store.record("eval", EVAL, manifest=MANIFEST, db=db)
    xid = store.record("export", {"bundle": "/b", **MANIFEST}, manifest=MANIFEST, db=db)
    assert (pid, eid, xid) == (1, 2, 3)
    with store.Store.open(db) as s:
        p = s.get(pid)
        assert p["device"] == "pi" and p["device_kind"] == "ssh"
        assert p["model_name"] == "mobilenet_v1_025_32" and p["alpha"] == 0.25 and p["resolution"] == 32
        assert p["bundle_id"] and len(p["bundle_id"]) == 64
        assert p["interpreter"] == "ai_edge_litert" and p["interpreter_version"] == "2.3.0"
        # headline: batch 1 of the main precision, the fastest thread count
        assert p["threads"] == 2 and p["p50_ms"] == pytest.approx(1.0)
        assert p["temperature_c"] == 63.0 and p["throttled"] == 0
        assert [m["threads"] for m in p["measurements"]] == [1, 2]
        assert p["measurements"][0]["p99_ms"] == pytest.approx(3.0)
        assert p["result"] == profile_result()  # the full JSON is kept as it came
        e = s.get(eid)
        assert e["device"] == "host"  # no device: the desktop's own evaluation
        assert (e["top1"], e["reference_top1"], e["agreement"], e["n_images"]) == (0.9, 0.93, 0.96, 30)
        assert e["interpreter"] == "ai_edge_litert" and e["interpreter_version"] == "2.3.0"
        x = s.get(xid)
        assert x["device"] is None and x["size_bytes"] == 313_000 and x["agreement"] == 0.97
        assert x["macs"] == 830_000 and x["precision"] == "int8"
        assert s.count() == {"profile": 1, "eval": 1, "export": 1}


def test_record_is_robust_to_missing_keys_and_numpy(tmp_path):
    db = tmp_path / "r.db"
    ids = [
        store.record("profile", {}, db=db),
        store.record("profile", {"configurations": []}, db=db),
        store.record(
            "profile", {"configurations": [{"threads": np.int64(4), "latency_ms": {"p50": np.float32(1.5)}}]}, db=db
        ),
        store.record("eval", {"tflite": {"top1": 87.5, "latency_ms": "odd"}}, manifest={"models": "odd"}, db=db),
        store.record("camera", {"latency_ms": {"p50": 3.0}, "fps": 30.0, "runtime": {"threads": 2}}, device={}, db=db),
    ]
    with store.Store.open(db) as s:
        runs = {r["id"]: r for r in s.query()}
    assert sorted(runs) == ids
    assert runs[ids[2]]["threads"] == 4 and runs[ids[2]]["p50_ms"] == 1.5
    assert runs[ids[3]]["top1"] == pytest.approx(0.875)  # a percentage is stored as a fraction
    # a camera result is its own setting: its FPS and its interpreter's threads
    assert runs[ids[4]]["p50_ms"] == 3.0 and runs[ids[4]]["batch"] == 1
    assert runs[ids[4]]["images_per_s"] == 30.0 and runs[ids[4]]["threads"] == 2


def test_throttling_and_drift_are_flagged(tmp_path):
    db = tmp_path / "r.db"
    drifting = store.record("profile", profile_result(drift=True), db=db)
    pi = profile_result()
    pi["environment"]["throttling"] = {"raw": "0x50005", "under_voltage": True, "throttled": True}
    throttled = store.record("profile", pi, db=db)
    clean = store.record("profile", profile_result(), db=db)
    with store.Store.open(db) as s:
        flags = {r["id"]: r["throttled"] for r in s.query()}
    assert flags == {drifting: 1, throttled: 1, clean: 0}


def test_bad_kind_and_recording_off(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="run kind must be one of"):
        store.record("train", {}, db=tmp_path / "r.db")
    monkeypatch.setenv("EDGEKIT_DB", "off")
    assert store.record("profile", {}) is None
    assert not (tmp_path / "r.db").exists()


def test_where_the_database_lives(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEKIT_DB", raising=False)
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    assert store.resolve_db_path() == tmp_path / "home" / "results.db"
    monkeypatch.setenv("EDGEKIT_DB", str(tmp_path / "env.db"))
    assert store.resolve_db_path() == tmp_path / "env.db"
    assert store.resolve_db_path(tmp_path / "flag.db") == tmp_path / "flag.db"  # --db wins
    monkeypatch.delenv("EDGEKIT_DB")
    monkeypatch.delenv("EDGEKIT_HOME")
    assert store.resolve_db_path().name == "results.db"  # the user data dir (platformdirs)


def test_filters(tmp_path):
    db = tmp_path / "r.db"
    store.record("profile", profile_result(), manifest=MANIFEST, device={"name": "pi"}, db=db)
    other = {**MANIFEST, "name": "resnet18", "model": {"family": "resnet18"}}
    store.record("profile", profile_result(), manifest=other, device={"name": "phone"}, db=db)
    with store.Store.open(db) as s:
        q = lambda **kw: [r["model_name"] for r in s.query(RunFilter(**kw))]  # noqa: E731
        assert q(model="mobilenet") == ["mobilenet_v1_025_32"]
        assert q(model="*_32") == ["mobilenet_v1_025_32"]
        assert q(device="phone,pi") == ["resnet18", "mobilenet_v1_025_32"]
        assert q(since="1h") == ["resnet18", "mobilenet_v1_025_32"]
        assert q(since="2999-01-01") == []
        assert q(kind="eval") == []
        with pytest.raises(UsageError, match="--since takes"):
            q(since="yesterday")
        with pytest.raises(UsageError, match="--kind"):
            q(kind="bogus")


# --------------------------------------------------------------------------- concurrency and crashes

WRITER = textwrap.dedent(
    """
    import sys, os
    sys.path.insert(0, {repo!r})
    from edgekit.results import store
    from tests.store.test_store import profile_result
    db, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for i in range(n):
        r = profile_result(p50=1.0 + worker + i / 1000, threads=(1, 2, 3, 4))
        r["writer"] = [worker, i]
        store.record("profile", r, device={{"name": f"dev{{worker}}"}}, db=db)
    """
)


def _spawn(script: str, *args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=REPO, **kw)


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as c:
        return c.execute("PRAGMA integrity_check").fetchone()[0]


def test_concurrent_writers_never_corrupt(tmp_path):
    db = tmp_path / "fleet.db"  # created by the racing writers themselves
    workers, n = 4, 25
    procs = [_spawn(WRITER.format(repo=str(REPO)), db, w, n) for w in range(workers)]
    for p in procs:
        assert p.wait(timeout=180) == 0
    assert _integrity(db) == "ok"
    with store.Store.open(db) as s:
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        runs = s.query()
        assert len(runs) == workers * n
        seen = {tuple(s.get(r["id"])["result"]["writer"]) for r in runs}
        assert seen == {(w, i) for w in range(workers) for i in range(n)}
        per_run = s.measurements([r["id"] for r in runs])
        assert all(len(m) == 4 for m in per_run.values())  # every run complete, none interleaved


HALF_WRITTEN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from edgekit.results import store
    from tests.store.test_store import profile_result
    s = store.Store.open(sys.argv[1])
    with s.transaction():
        s.insert_run("profile", profile_result(p50=99.0), device={{"name": "crashing"}})
        print("inside", flush=True)
        sys.stdin.read()  # wait here, mid-transaction, until killed
    """
)


def test_crash_mid_run_loses_only_that_run(tmp_path):
    db = tmp_path / "r.db"
    kept = store.record("profile", profile_result(), db=db)
    p = _spawn(
        HALF_WRITTEN.format(repo=str(REPO)), db, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "inside"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert _integrity(db) == "ok"
    with store.Store.open(db) as s:
        assert [r["id"] for r in s.query()] == [kept]
        assert s.conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 2
    # the killed writer's lock is gone: the next run is recorded at once
    assert store.record("profile", profile_result(), db=db) == kept + 1


def test_writer_killed_at_a_random_moment(tmp_path):
    db = tmp_path / "r.db"
    p = _spawn(WRITER.format(repo=str(REPO)), db, 0, 100000)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # let it write for a while
        if db.exists():
            with sqlite3.connect(db, timeout=30) as c:
                try:
                    if c.execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= 20:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert _integrity(db) == "ok"
    with store.Store.open(db) as s:
        runs = s.query()
        assert len(runs) >= 20
        assert all(len(m) == 4 for m in s.measurements([r["id"] for r in runs]).values())


# --------------------------------------------------------------------------- schema versions

# The version-1 layout exactly as released: files in the wild have it.
V1_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, created_at TEXT NOT NULL,
    edgekit_version TEXT, bundle_id TEXT, model_name TEXT, family TEXT, alpha REAL, resolution INTEGER,
    classes INTEGER, precision TEXT, device TEXT, interpreter TEXT, interpreter_version TEXT,
    threads INTEGER, batch INTEGER, p50_ms REAL, p90_ms REAL, p99_ms REAL, images_per_s REAL,
    top1 REAL, top5 REAL, result_json TEXT NOT NULL, manifest_json TEXT, device_json TEXT
);
CREATE INDEX runs_kind_time ON runs(kind, created_at);
PRAGMA user_version = 1;
"""


def test_migration_from_version_1(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:
        c.executescript(V1_SCHEMA)
        c.execute(
            "INSERT INTO runs (kind, created_at, model_name, device, p50_ms, result_json, manifest_json) "
            "VALUES ('profile', '2025-01-02T03:04:05+00:00', 'mobilenet_v1_025_32', 'pi', 1.0, ?, ?)",
            (json.dumps(profile_result(drift=True)), json.dumps(MANIFEST)),
        )
        c.execute(
            "INSERT INTO runs (kind, created_at, device, top1, result_json) VALUES ('eval', ?, 'pi', 0.9, ?)",
            ("2025-01-02T03:05:00+00:00", json.dumps(EVAL)),
        )
    with store.Store.open(db) as s:
        assert s.schema_version() == store.SCHEMA_VERSION == 3  # v1 -> v2 -> v3 (reference speed) in one open
        assert s.get(2)["reference_p50_ms"] is None  # an old eval: its reference was never timed
        old = s.get(1)
        assert old["created_at"] == "2025-01-02T03:04:05+00:00"  # kept as it was
        assert old["macs"] == 830_000 and old["throttled"] == 1 and old["temperature_c"] == 63.0  # backfilled
        assert len(old["measurements"]) == 2
        assert s.get(2)["reference_top1"] == 0.93 and s.get(2)["agreement"] == 0.96
    new = store.record("profile", profile_result(), db=db)
    assert new == 3 and _integrity(db) == "ok"


def test_newer_or_foreign_files_are_refused(tmp_path):
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as c:
        c.execute("PRAGMA user_version = 99")
    with pytest.raises(InputDataError, match="schema version 99"):
        store.Store.open(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputDataError, match="cannot use results database"):
        store.record("profile", {}, db=junk)
    assert junk.read_bytes() == b"this is not a database" * 100  # left as it was


# --------------------------------------------------------------------------- `edgekit runs`


def test_runs_cli(tmp_path):
    db = tmp_path / "r.db"
    store.record("profile", profile_result(), manifest=MANIFEST, device={"name": "pi"}, db=db)
    store.record("eval", EVAL, manifest=MANIFEST, db=db)
    env = {"EDGEKIT_DB": str(db)}  # the variable other commands use; no flag needed

    listed = json.loads(run_cli("runs", "list", "--json", env=env).stdout)
    assert [r["kind"] for r in listed["runs"]] == ["eval", "profile"]
    assert run_cli("runs", "list", "--device", "pi", env=env).stdout.count("mobilenet_v1_025_32") == 1

    shown = json.loads(run_cli("runs", "show", "1", "--json", "--db", str(db)).stdout)
    assert shown["result"]["configurations"][0]["threads"] == 1 and len(shown["measurements"]) == 2

    out = tmp_path / "runs.csv"
    run_cli("runs", "export", "--csv", "-o", str(out), env=env)
    import csv

    rows = list(csv.DictReader(out.open()))
    assert [r["kind"] for r in rows] == ["profile", "eval"] and rows[1]["top1"] == "0.9"
    per_setting = run_cli("runs", "export", "--csv", "--measurements", env=env).stdout.splitlines()
    assert len(per_setting) == 3 and per_setting[0].startswith("id,created_at")

    info = json.loads(run_cli("runs", "info", "--json", env=env).stdout)
    assert info["runs"] == {"eval": 1, "profile": 1} and info["db_schema_version"] == 3


def test_runs_cli_errors_are_one_line(tmp_path):
    missing = run_cli("runs", "list", "--db", str(tmp_path / "none.db"), check=False)
    assert missing.returncode == 3 and "no results database" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    db = tmp_path / "r.db"
    store.record("profile", {}, db=db)
    absent = run_cli("runs", "show", "42", "--db", str(db), check=False)
    assert absent.returncode == 3 and "no run with id 42" in absent.stderr
    bad = run_cli("runs", "list", "--since", "soon", "--db", str(db), check=False)
    assert bad.returncode == 2 and "--since takes" in bad.stderr


def test_runs_and_report_never_import_tensorflow(tmp_path):
    db = tmp_path / "r.db"
    store.record("profile", profile_result(), manifest=MANIFEST, device={"name": "pi"}, db=db)
    store.record("eval", EVAL, manifest=MANIFEST, db=db)
    script = textwrap.dedent(
        """
        import sys
        from edgekit.cli import cli
        for argv in (["runs", "list"], ["runs", "export", "--csv"], ["report", "-o", sys.argv[2]],
                     ["report", "--format", "md"], ["report", "--json"], ["sweep", "--help"]):
            cli.main(args=argv + (["--db", sys.argv[1]] if argv != ["sweep", "--help"] else []),
                     standalone_mode=False)
        heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(db), str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
