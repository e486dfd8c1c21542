"""`edgekit report` from a database of real small runs, rendered in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgekit.results.pareto import best_within, pareto_front
from tests.conftest import run_cli
from tests.store.conftest import CHROMIUM_FLAGS, chromium


def test_pareto_front_and_budget_pick():
    pts = [
        {"latency_ms": 1.0, "top1": 0.60},
        {"latency_ms": 2.0, "top1": 0.70},
        {"latency_ms": 2.5, "top1": 0.65},  # slower and less accurate than the one before: dominated
        {"latency_ms": 4.0, "top1": 0.80},
        {"latency_ms": 4.0, "top1": 0.75},  # same latency, less accurate: dominated
    ]
    assert pareto_front(pts) == {0, 1, 3}
    assert best_within(pts, 3.0) == pts[1]
    assert best_within(pts, None) == pts[3]
    assert best_within(pts, 0.5) is None


@pytest.mark.tf
def test_report_json_from_real_runs(report_db):
    data = json.loads(run_cli("report", "--json", "--db", str(report_db), "--budget-ms", "1000").stdout)
    assert data["counts"] == {"export": 1, "eval": 2, "profile": 1, "camera": 0}
    (model,) = data["models"]
    assert model["name"] == "mobilenet_v1_025_32" and model["macs"] > 0
    assert model["reference"]["top1"] is not None and "CPU" in model["reference"]["device"]
    assert model["reference"]["p50_ms"] > 0 and model["reference"]["throughput_batch"] == 64  # timed
    rows = {(r["device"], r["precision"]): r for r in model["rows"]}
    # host: the desktop eval; local: the device script's eval + `edgekit profile` (both precisions)
    assert set(rows) == {("host", "int8"), ("local", "int8"), ("local", "float32")}
    local = rows[("local", "int8")]
    assert local["top1"] is not None and local["p50_ms"] > 0 and local["images_per_s"] > 0
    assert local["top1_change_points"] == pytest.approx(
        (local["top1"] - model["reference"]["top1"]) * 100, abs=0.01
    )
    assert local["size_bytes"] > 0 and local["peak_rss_bytes"] > 0
    assert local["latency_ratio"] == pytest.approx(local["p50_ms"] / model["reference"]["p50_ms"])
    assert local["vs_reference"]["reference_where"].startswith("CPU ")
    assert rows[("host", "int8")]["agreement"] is not None
    (lat,) = data["latency"]
    assert lat["device"] == "local" and len(lat["items"]) == 4  # 2 precisions x threads 1, 2
    assert all(i["min"] <= i["p50"] <= i["p90"] <= i["p99"] <= i["max"] for i in lat["items"])
    assert data["scatter"] and any(p["front"] for p in data["scatter"][0]["points"])
    assert data["pareto"][0]["best_within_budget"]["label"].startswith("mobilenet_v1_025_32")
    chosen = data["chosen_run"]
    assert chosen["per_class"] and len(chosen["labels"]) == 3
    assert {e["kind"] for e in data["environments"]} == {"eval", "profile"}


@pytest.mark.tf
def test_report_markdown(report_db):
    md = run_cli("report", "--format", "md", "--db", str(report_db)).stdout
    assert "### mobilenet_v1_025_32" in md and "desktop reference" in md
    assert re.search(r"^\| local \| int8 \| ai_edge_litert", md, re.M)
    assert "### Pareto front on local" in md and "### Environment" in md


@pytest.mark.tf
def test_report_filters_and_errors(report_db, tmp_path):
    nothing = json.loads(run_cli("report", "--json", "--db", str(report_db), "--device", "nowhere").stdout)
    assert nothing["models"] == []
    missing = run_cli(
        "report", "--db", str(tmp_path / "none.db"), "-o", str(tmp_path / "r.html"), check=False
    )
    assert missing.returncode == 3 and "no results database" in missing.stderr
    assert not (tmp_path / "r.html").exists()
    bad = run_cli("report", "--db", str(report_db), "--run", "1", "-o", str(tmp_path / "r.html"), check=False)
    assert bad.returncode == 2 and "run 1 (export) has no confusion matrix" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "r.html").exists()


def _pixels(png: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def _near(img: np.ndarray, hex_color: str, tol: int = 40) -> int:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img - rgb).sum(-1) < tol).sum())


@pytest.mark.tf
@pytest.mark.browser
def test_report_renders_in_chromium(report_db, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it with EDGEKIT_SYSTEM_DEPS=1)")
    html = tmp_path / "report.html"
    run_cli("report", "--db", str(report_db), "--budget-ms", "1000", "-o", str(html))
    text = html.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert "<script" not in text  # self-contained and static

    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    # the browser parsed every plot and table
    for plot in ("scatter", "latency", "per-class", "confusion"):
        assert f'data-plot="{plot}"' in dom, plot
    assert dom.count('class="point front"') >= 1 and 'class="pareto"' in dom
    assert dom.count('class="box"') == 4 and dom.count('class="bar"') == 3
    assert dom.count('class="cell"') == 3 * 4  # 3 true classes x (3 predicted + "other")
    assert 'class="results"' in dom and 'class="environment"' in dom and "desktop reference" in dom
    # each device against the desktop reference: the columns, the reference's own point, the sentence
    assert "× ref p50" in dom and "agr. ref" in dom and dom.count('class="point reference"') == 1
    summary = re.findall(r'<p class="summary">([^<]*)</p>', dom)
    assert any(s.startswith("mobilenet_v1_025_32 int8 on local is ") and "than the desktop CPU" in s for s in summary)

    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            *flags,
            f"--screenshot={shot}",
            "--window-size=1280,3000",
            "--hide-scrollbars",
            html.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    if os.environ.get("EDGEKIT_KEEP_SCREENSHOT"):  # to look at it: EDGEKIT_KEEP_SCREENSHOT=/tmp/report.png
        shutil.copy(shot, os.environ["EDGEKIT_KEEP_SCREENSHOT"])
    img = _pixels(shot)
    assert img.shape[:2] == (3000, 1280)
    # what a person sees: plot marks drawn in their colours, not just present in the markup
    assert _near(img, "#1f77b4", tol=80) > 80  # scatter points, legend dots, latency boxes
    assert _near(img, "#2ca02c", tol=60) > 1000  # per-class accuracy bars
    assert (img.sum(-1) < 200).sum() > 2000  # text and axes
    rows_with_ink = np.flatnonzero((img.sum(-1) < 600).any(axis=1))
    assert rows_with_ink.max() - rows_with_ink.min() > 1500  # the page is laid out top to bottom


def test_throttled_runs_are_flagged_in_html():
    from edgekit.results.report.render import to_html, to_markdown

    row = {
        "model": "m", "device": "pi", "precision": "int8", "interpreter": "tflite_runtime",
        "interpreter_version": "2.14.0", "threads": 4, "top1": None, "top5": None, "agreement": None,
        "top1_change_points": None, "p50_ms": 30.0, "p90_ms": 31.0, "p99_ms": 40.0, "images_per_s": 33.0,
        "size_bytes": 500_000, "peak_rss_bytes": None, "eval_run": None, "profile_run": 7, "throttled": True,
    }  # fmt: skip
    env = {
        "run": 7, "kind": "profile", "created_at": "2026-01-01T00:00:00+00:00", "model": "m", "device": "pi",
        "cpu": "Cortex-A72", "cores": 4, "governor": "ondemand", "interpreter": "tflite_runtime 2.14.0",
        "temperature": None, "temperature_c": 82.0, "throttled": True, "throttling": {"throttled": True},
    }  # fmt: skip
    data = {
        "title": "t", "generated_at": "now", "db": "x.db", "counts": {"profile": 1}, "filters": {},
        "models": [{"name": "m", "rows": [row], "reference": None}], "latency": [], "scatter": [],
        "macs_latency": [], "grid": [], "pareto": [], "chosen_run": None, "environments": [env],
    }  # fmt: skip
    html = to_html(data)
    assert html.count('class="flag"') == 2 and "82°C" in html
    assert "⚠ throttled" in to_markdown(data)


@pytest.mark.tf
def test_export_records_itself(tiny_bundle):
    """`edgekit export` (the tiny_bundle fixture ran it) recorded the bundle in EDGEKIT_DB."""
    from edgekit.bundle.manifest import bundle_id, read_manifest
    from edgekit.results.filters import RunFilter
    from edgekit.results.store import open_store

    bid = bundle_id(read_manifest(tiny_bundle))
    with open_store(os.environ["EDGEKIT_DB"], create=False) as s:
        runs = s.query(RunFilter(kind="export", bundle=bid))
    assert runs and runs[0]["model_name"] == "mobilenet_v1_025_32" and runs[0]["precision"] == "int8"
    assert runs[0]["macs"] > 0 and runs[0]["size_bytes"] > 0
