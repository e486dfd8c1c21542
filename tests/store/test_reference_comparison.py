"""Device results against the desktop reference: the one comparison, the database, the report."""

from __future__ import annotations

import json
import sqlite3

import pytest

from edgekit.results import store as S
from edgekit.results.comparison import Reference, compare, for_device_eval
from edgekit.results.records import RunRecord
from edgekit.results.report import render_report
from edgekit.results.report.compare import ReportOptions, build_report

MANIFEST = {
    "name": "mobilenet_v1_025_32",
    "model": {"family": "mobilenet_v1", "alpha": 0.25, "resolution": 32, "classes": 3},
    "models": [{"precision": "int8", "file": "model_int8.tflite"}],
    "files": {"model_int8.tflite": {"sha256": "ab" * 32, "size_bytes": 1000}},  # the bundle's id comes from these
}
GPU = {"type": "GPU", "name": "NVIDIA H200"}


def _desktop_eval(latency: bool) -> dict:
    """A desktop eval as `edgekit eval` records it; `latency=False`: as edgekit did before it timed the reference."""
    ref = {"top1": 0.9, "top5": 1.0, "n": 36, "model": "float_model.keras", "device": GPU if latency else
           {"type": "CPU", "name": "Old CPU"}}  # fmt: skip
    host = {"top1": 0.88, "top5": 1.0, "n": 36, "model": "model_int8.tflite", "runtime": "ai_edge_litert 2.1.0"}
    if latency:
        ref |= {"backend": "torch", "precision": "float32", "latency_ms": {"p50": 2.0, "p90": 2.5, "batch": 1},
                "throughput": {"batch": 64, "images_per_s": 4000.0}}  # fmt: skip
        host |= {"latency_ms": {"p50": 1.0, "p90": 1.2, "batch": 1}, "throughput": {"batch": 64, "images_per_s": 900.0}}
    return {"schema_version": 1, "kind": "bundle", "reference": ref, "tflite": host,
            "agreement": 0.97, "top1_change": -0.02}  # fmt: skip


PI = {"name": "pi", "kind": "ssh"}
PI_PROFILE = {
    "schema_version": 1, "precision": "int8", "device": PI,
    "configurations": [
        {"precision": "int8", "threads": 4, "batch": 1, "latency_ms": {"p50": 28.0, "p90": 30.0}, "images_per_s": 35.0},
        {"precision": "int8", "threads": 4, "batch": 8, "latency_ms": {"p50": 200.0, "p90": 210.0}, "images_per_s": 40.0},
    ],
}  # fmt: skip
PI_EVAL = {
    "schema_version": 1, "device": PI, "precision": "int8", "top1_change": -0.0,
    "tflite": {"top1": 0.888, "top5": 1.0, "n": 36, "latency_ms": {"p50": 29.0, "p90": 31.0, "p99": 35.0}},
}  # fmt: skip


def test_the_sentence_and_the_ratios():
    ref = Reference.from_json(_desktop_eval(latency=True))
    c = compare(ref, device_p50_ms=28.0, device_images_per_s=40.0, device_batch=8, top1=0.888)
    assert c.latency_ratio == pytest.approx(14.0) and c.latency_ratio_host_tflite == pytest.approx(28.0)
    assert c.throughput_ratio == pytest.approx(100.0)  # 4000 vs 40 images/s
    assert c.top1_change_points == pytest.approx(-1.2)
    assert c.sentence("pi") == (
        "pi is 14× slower and 1.2 points less accurate than the desktop GPU (NVIDIA H200, Keras/torch): "
        "28 vs 2 ms per image at batch 1"
    )
    at_batch_1 = compare(ref, device_p50_ms=28.0, device_images_per_s=35.0, device_batch=1)
    assert at_batch_1.throughput_ratio is None  # batch-1 images/s is no throughput to set against batch 64
    faster = compare(ref, device_p50_ms=1.0, top1=0.9)
    assert faster.sentence("gpu-box").startswith("gpu-box is 2.0× faster than the desktop GPU") and "at the same top-1" in faster.sentence("gpu-box")


def test_old_reference_json_without_latency_says_not_measured(tmp_path):
    (tmp_path / "reference.json").write_text(json.dumps({
        **_desktop_eval(latency=False),
        "reference": {**_desktop_eval(latency=False)["reference"],
                      "predictions": [{"path": f"d/{i}.png", "label": 0, "pred": i % 2} for i in range(4)]},
    }))  # fmt: skip
    doc = {"top1": 0.5, "latency_ms": {"p50": 3.0}, "runtime": {"threads": 2},
           "predictions": [{"path": f"/x/{i}.png", "pred": 0} for i in range(4)]}  # fmt: skip
    c = for_device_eval(tmp_path, doc)
    assert c.latency_ratio is None and c.reference_p50_ms is None and c.device_threads == 2
    assert c.agreement == 0.5 and c.matched_images == 4 and c.top1_change_points == pytest.approx(-40.0)
    assert "reference latency not measured" in c.sentence("pi") and "not measured" in c.notes[0]
    assert for_device_eval(tmp_path / "nowhere", doc) is None


def _insert_old(conn: sqlite3.Connection, kind: str, result: dict, device: dict | None) -> None:
    cols = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    values = RunRecord.from_result(kind, result, MANIFEST, device).columns()
    values.update(kind=kind, created_at="2026-01-01T00:00:00+00:00", result_json=json.dumps(result),
                  manifest_json=json.dumps(MANIFEST), device_json=json.dumps(device) if device else None)  # fmt: skip
    names = [k for k in values if k in cols]
    conn.execute(f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                 [values[k] for k in names])  # fmt: skip


def test_an_old_database_migrates_and_renders_not_measured(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    S._migrate_v1(conn)  # the released steps, as edgekit left the file before reference latency
    S._migrate_v2(conn)
    conn.execute("PRAGMA user_version = 2")
    _insert_old(conn, "eval", _desktop_eval(latency=False), None)
    _insert_old(conn, "eval", PI_EVAL, PI)
    conn.close()
    with S.Store.open(path) as st:
        assert st.schema_version() == S.SCHEMA_VERSION
        data = build_report(st, ReportOptions())
    (model,) = data["models"]
    assert model["reference"]["top1"] == 0.9 and model["reference"]["p50_ms"] is None
    pi = next(r for r in model["rows"] if r["device"] == "pi")
    assert pi["top1_change_points"] == pytest.approx(-1.2) and pi["latency_ratio"] is None
    html, md = render_report(data, "html"), render_report(data, "md")
    ref_row = next(ln for ln in md.splitlines() if ln.startswith("| desktop reference"))
    assert "not measured" in ref_row and "not measured" in html
    assert any("pi" in s["text"] and "reference latency not measured" in s["text"] for s in data["summary"])


def test_report_compares_each_device_with_the_reference(tmp_path):
    db = tmp_path / "r.db"
    S.record("eval", _desktop_eval(latency=True), manifest=MANIFEST, db=db)
    S.record("profile", PI_PROFILE, manifest=MANIFEST, device=PI, db=db)
    S.record("eval", PI_EVAL, manifest=MANIFEST, device=PI, db=db)
    with S.open_store(db, create=False) as st:
        data = build_report(st, ReportOptions())
    (model,) = data["models"]
    ref = model["reference"]
    assert (ref["p50_ms"], ref["images_per_s"], ref["throughput_batch"]) == (2.0, 4000.0, 64)
    assert ref["where"] == "GPU NVIDIA H200 (Keras/torch)"
    pi = next(r for r in model["rows"] if r["device"] == "pi")
    assert pi["latency_ratio"] == pytest.approx(14.0)  # the profile's batch-1 p50 over the reference's
    assert pi["throughput_ratio"] == pytest.approx(100.0)  # batch 8 on the Pi against batch 64
    (line,) = [s["text"] for s in data["summary"] if s["device"] == "pi"]
    assert line.startswith("mobilenet_v1_025_32 int8 on pi is 14× slower and 1.2 points less accurate than the desktop GPU")
    ref_pts = [p for s in data["scatter"] for p in s["points"] if p.get("reference")]
    assert len(ref_pts) == 1 and ref_pts[0]["latency_ms"] == 2.0 and ref_pts[0]["top1"] == 0.9
    html = render_report(data, "html")
    assert 'class="point reference"' in html and "× ref p50" in html and 'class="summary"' in html
    md = render_report(data, "md")
    assert "14× slower" in md and "| desktop reference" in md
