"""Each report row beside the desktop float reference: ratios, the reference's own plot point, and
the one-line summary per device result. The arithmetic is edgekit.results.comparison's (one place)."""

from __future__ import annotations

from edgekit.results.comparison import Comparison, Reference, compare
from edgekit.results.records import Measurement


def compare_rows(rows: list[dict], blobs: dict, meas: dict[int, list[Measurement]]) -> None:
    """Each row beside its desktop reference, through edgekit.results.comparison (the one place)."""
    for r in rows:
        res = (blobs.get(r["reference_run"]) or {}).get("result") if r.get("reference_run") else None
        ips, batch = _throughput(r, meas)
        c = compare(
            Reference.from_json(res),
            device_p50_ms=None if r.get("emulated") else r["p50_ms"],  # emulated latency compares with nothing
            device_images_per_s=None if r.get("emulated") else ips,
            device_batch=batch,
            device_threads=r.get("threads"),
            top1=r["top1"],
        )
        r["vs_reference"] = c.to_dict() if c else None
        r["latency_ratio"] = c.latency_ratio if c else None
        r["throughput_ratio"] = c.throughput_ratio if c else None
        if c is not None and r.get("reference_agreement") is not None:
            r["vs_reference"]["agreement"] = r["reference_agreement"]  # measured image by image at eval time


def _throughput(r: dict, meas: dict[int, list[Measurement]]) -> tuple[float | None, int | None]:
    """images/s at the largest profiled batch, at the row's thread count and precision (like with like)."""
    ms = [
        m
        for m in meas.get(r.get("profile_run"), [])
        if m.images_per_s
        and m.threads == r.get("threads")
        and (not r["precision"] or m.precision in (None, r["precision"]))
    ]
    if not ms:
        return r.get("images_per_s"), r.get("batch")
    big = max(ms, key=lambda m: m.batch or 1)
    return big.images_per_s, big.batch or 1


def summary(rows: list[dict]) -> list[dict]:
    """One sentence per device result: "... on pi is 14× slower and 1.2 points less accurate than ..."."""
    out = []
    for r in rows:
        if not r.get("vs_reference"):
            continue
        who = f"{r['model']} {r['precision'] or ''}".strip() + f" on {r['device']}"
        text = Comparison.from_dict(r["vs_reference"]).sentence(who)
        if r.get("emulated"):
            text += " (emulated CPU: latency not compared)"
        out.append({"model": r["model"], "device": r["device"], "precision": r["precision"], "text": text})
    return out


def reference_points(models: list[dict]) -> list[dict]:
    """The desktop float reference as its own marked point on the accuracy-vs-latency plot."""
    pts = [
        {
            "label": f"{m['name']} float32 ({m['reference'].get('kind') or 'desktop reference'})",
            "latency_ms": m["reference"]["p50_ms"],
            "top1": m["reference"]["top1"],
            "front": False,
            "emulated": False,
            "reference": True,
        }
        for m in models
        if m.get("reference") and m["reference"].get("p50_ms") and m["reference"].get("top1") is not None
    ]
    return [{"device": "desktop reference", "reference": True, "points": pts}] if pts else []
