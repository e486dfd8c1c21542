"""From runs in the store to the comparison a report shows (plain data, JSON-ready).

Rows join the newest eval and the newest profile of one (model, bundle, precision, device), so a
device's latency sits beside its accuracy and beside the desktop reference the eval recorded.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from edgekit.results.comparison import Reference
from edgekit.results.filters import RunFilter
from edgekit.results.pareto import best_within, is_emulated, pareto_front
from edgekit.results.records import Measurement, environment_of, headline
from edgekit.results.report.detail import chosen_run
from edgekit.results.report.versus import compare_rows, reference_points, summary
from edgekit.results.store import Store

REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ReportOptions:
    model: str | None = None
    device: str | None = None
    since: str | None = None
    run_id: int | None = None  # the eval whose confusion matrix and per-class accuracy are shown
    budget_ms: float | None = None
    title: str = "edgekit report"
    ids: tuple[int, ...] = field(default_factory=tuple)  # restrict to these runs (a sweep's)


def build_report(store: Store, opts: ReportOptions) -> dict:
    filt = RunFilter(model=opts.model, device=opts.device, since=opts.since, ids=opts.ids)
    runs = store.query(filt)  # newest first
    exports = [r for r in runs if r["kind"] == "export"]
    measured = [r for r in runs if r["kind"] in ("eval", "profile")]
    measured = _split_precisions(
        measured, store.measurements([r["id"] for r in measured if r["kind"] == "profile"])
    )
    rows, used = _rows(measured)
    blobs = store.results(sorted({*used, *(r["id"] for r in exports[:50])}))
    _mark_emulated(rows, blobs)
    meas = store.measurements([r["profile_run"] for r in rows if r.get("profile_run")])
    compare_rows(rows, blobs, meas)
    models = _models(rows, exports, runs, blobs)
    chosen = chosen_run(store, opts.run_id, [r for r in measured if r["kind"] == "eval"])
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "title": opts.title,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "db": str(store.path),
        "filters": {"model": opts.model, "device": opts.device, "since": opts.since},
        "counts": {
            k: sum(1 for r in runs if r["kind"] == k) for k in ("export", "eval", "profile", "camera")
        },
        "models": models,
        "latency": _latency(rows, meas),
        "scatter": _scatter(rows) + reference_points(models),
        "summary": summary(rows),
        "macs_latency": _macs_latency(rows),
        "grid": grid(rows),
        "pareto": _pareto_table(rows, opts.budget_ms),
        "chosen_run": chosen,
        "environments": _environments(runs, used | ({chosen["id"]} if chosen else set()), blobs, store),
    }


# --------------------------------------------------------------------------- rows

EMULATED_NOTE = "emulated CPU (qemu): latency not meaningful"


def _mark_emulated(rows: list[dict], blobs: dict) -> None:
    """Rows measured on an emulated device keep their numbers, flagged: shown greyed with a note,
    left out of the Pareto front, the budget pick, the α × resolution grid and latency vs MACs."""
    for r in rows:
        r["emulated"] = any(is_emulated(blobs.get(r[k])) for k in ("eval_run", "profile_run") if r.get(k))
        if r["emulated"]:
            r["latency_note"] = EMULATED_NOTE


def _split_precisions(measured: list[dict], meas: dict[int, list[Measurement]]) -> list[dict]:
    """A profile of a bundle with several precisions becomes one entry per precision (one table row each)."""

    out = []
    for r in measured:
        ms = meas.get(r["id"]) or []
        precs = list(dict.fromkeys(m.precision for m in ms if m.precision))
        if r["kind"] != "profile" or len(precs) < 2:
            out.append(r)
            continue
        for p in precs:
            h = headline([m for m in ms if m.precision == p], p) or Measurement(batch=None)
            out.append(
                {
                    **r,
                    "precision": p,
                    **{
                        k: getattr(h, k)
                        for k in ("threads", "batch", "p50_ms", "p90_ms", "p99_ms", "images_per_s")
                    },
                    "peak_rss_bytes": h.peak_rss_bytes or r.get("peak_rss_bytes"),
                    "size_bytes": h.model_size_bytes,
                }
            )
    return out


def _rows(measured: list[dict]) -> tuple[list[dict], set[int]]:
    groups: dict[tuple, dict] = {}
    for r in measured:  # newest first: the first seen of each kind wins
        key = (r["model_name"] or "?", r["bundle_id"] or "", r["precision"] or "", r["device"] or "local")
        g = groups.setdefault(key, {})
        g.setdefault(r["kind"], r)
    # The desktop reference of a bundle: its newest eval that measured the float model.
    refs: dict[tuple, dict] = {}
    for r in measured:
        if r["kind"] == "eval" and r.get("reference_top1") is not None:
            refs.setdefault((r["model_name"] or "?", r["bundle_id"] or ""), r)
            refs.setdefault((r["model_name"] or "?", None), r)
    rows, used = [], set()
    for (model, bid, precision, device), g in groups.items():
        ev, pr = g.get("eval"), g.get("profile")
        ref_run = (
            ev
            if ev and ev.get("reference_top1") is not None
            else refs.get((model, bid), refs.get((model, None)))
        )
        used |= {r["id"] for r in (ev, pr, ref_run) if r}
        src = pr or ev
        top1 = ev.get("top1") if ev else None
        ref = ref_run.get("reference_top1") if ref_run else None
        change = None
        if top1 is not None and ref is not None:
            change = round((top1 - ref) * 100, 3)  # percentage points, computed the same way for all
        elif ev and ev.get("top1_change") is not None:
            tc = ev["top1_change"]
            change = tc * 100 if abs(tc) <= 1 else tc
        rows.append(
            {
                "model": model,
                "bundle_id": bid or None,
                "precision": precision or None,
                "device": device,
                "interpreter": src.get("interpreter"),
                "interpreter_version": src.get("interpreter_version"),
                "threads": src.get("threads"),
                "batch": src.get("batch"),
                "top1": top1,
                "top5": ev.get("top5") if ev else None,
                "reference_top1": ref,
                "reference_top5": ref_run.get("reference_top5") if ref_run else None,
                "reference_run": ref_run["id"] if ref_run else None,
                "agreement": ev.get("agreement") if ev else None,
                "reference_agreement": ev.get("reference_agreement") if ev else None,
                "top1_change_points": change,
                "n_images": ev.get("n_images") if ev else None,
                "p50_ms": (pr or ev or {}).get("p50_ms"),
                "p90_ms": (pr or ev or {}).get("p90_ms"),
                "p99_ms": (pr or ev or {}).get("p99_ms"),
                "images_per_s": pr.get("images_per_s") if pr else None,
                "size_bytes": (pr or {}).get("size_bytes") or (ev or {}).get("size_bytes"),
                "peak_rss_bytes": pr.get("peak_rss_bytes") if pr else None,
                "throttled": bool((pr and pr.get("throttled")) or (ev and ev.get("throttled"))),
                "macs": src.get("macs"),
                "params": src.get("params"),
                "alpha": src.get("alpha"),
                "resolution": src.get("resolution"),
                "eval_run": ev["id"] if ev else None,
                "profile_run": pr["id"] if pr else None,
                "created_at": src.get("created_at"),
            }
        )
    rows.sort(key=lambda r: (r["model"], r["device"], r["precision"] or ""))
    return rows, used


def _models(rows: list[dict], exports: list[dict], runs: list[dict], blobs: dict) -> list[dict]:
    by_model: dict[str, dict] = {}
    for r in rows:
        m = by_model.setdefault(r["model"], {"name": r["model"], "rows": [], "reference": None})
        m["rows"].append(r)
        for k in ("alpha", "resolution", "macs", "params"):
            if m.get(k) is None and r.get(k) is not None:
                m[k] = r[k]
    for e in exports:
        m = by_model.get(e["model_name"] or "?")
        if m is None:
            continue
        for k in ("alpha", "resolution", "macs", "params"):
            if m.get(k) is None:
                m[k] = e.get(k)
        man = (blobs.get(e["id"]) or {}).get("manifest") or {}
        m.setdefault(
            "export", {"run": e["id"], "created_at": e["created_at"], "bundle": _bundle_path(blobs, e)}
        )
        if man and "verification" not in m:
            m["verification"] = {
                x.get("precision"): x.get("verification", {}).get("top1_agreement")
                for x in man.get("models", [])
            }
    for m in by_model.values():  # the desktop reference: the newest eval of this model that has one
        for r in sorted(m["rows"], key=lambda r: -(r.get("reference_run") or 0)):
            if r.get("reference_top1") is not None and r.get("reference_run"):
                res = (blobs.get(r["reference_run"]) or {}).get("result") or {}
                ref = res.get("reference") if isinstance(res.get("reference"), dict) else {}
                figures = Reference.from_json(res) or Reference()
                m["reference"] = {
                    "top1": r["reference_top1"],
                    "top5": r.get("reference_top5"),
                    "device": _device_str(ref.get("device")),
                    "n": ref.get("n"),
                    "run": r["reference_run"],
                    # speed: None in results recorded before edgekit timed the reference ("not measured")
                    "where": figures.where,
                    "kind": figures.kind,
                    "backend": figures.backend,
                    "precision": figures.precision,
                    "p50_ms": figures.speed.p50_ms,
                    "p90_ms": figures.speed.p90_ms,
                    "images_per_s": figures.speed.images_per_s,
                    "throughput_batch": figures.speed.throughput_batch,
                    "host_tflite_p50_ms": figures.host_speed.p50_ms,
                }
                break
    return sorted(by_model.values(), key=lambda m: m["name"])


def _bundle_path(blobs: dict, e: dict) -> str | None:
    res = (blobs.get(e["id"]) or {}).get("result") or {}
    return res.get("bundle") if isinstance(res, dict) else None


def _device_str(d) -> str | None:
    if isinstance(d, dict):
        return " ".join(str(v) for v in (d.get("name"), d.get("kind"), d.get("type")) if v) or None
    return None if d is None else str(d)


# --------------------------------------------------------------------------- plots' data


def _label(r: dict) -> str:
    return f"{r['model']} {r['precision'] or ''}".strip()


def _latency(rows: list[dict], meas: dict[int, list[Measurement]]) -> list[dict]:
    """Per device: one distribution per profiled setting (newest profile per model/precision)."""
    per_device: dict[str, list[dict]] = {}
    for r in rows:
        if not r.get("profile_run"):
            continue
        items = per_device.setdefault(r["device"], [])
        for m in meas.get(r["profile_run"], []):
            if m.p50_ms is None or (m.precision and r["precision"] and m.precision != r["precision"]):
                continue
            label = f"{r['model']} {m.precision or r['precision'] or ''} t{m.threads or '?'}"
            if (m.batch or 1) != 1:
                label += f" b{m.batch}"
            items.append(
                {
                    "label": label,
                    "min": m.min_ms,
                    "p50": m.p50_ms,
                    "p90": m.p90_ms,
                    "p99": m.p99_ms,
                    "max": m.max_ms,
                    "batch": m.batch,
                    "throttled": r["throttled"],
                    "emulated": bool(r.get("emulated")),
                    "run": r["profile_run"],
                }
            )
    return [
        {"device": d, "items": items[:40], "emulated": any(i["emulated"] for i in items)}
        for d, items in sorted(per_device.items())
    ]


def _scatter(rows: list[dict]) -> list[dict]:
    """Accuracy vs latency per device, Pareto front flagged."""
    out = []
    for device in sorted({r["device"] for r in rows}):
        pts = [
            {
                "label": _label(r),
                "latency_ms": r["p50_ms"],
                "top1": r["top1"],
                "row": i,
                "emulated": bool(r.get("emulated")),
            }
            for i, r in enumerate(rows)
            if r["device"] == device and r["p50_ms"] is not None and r["top1"] is not None
        ]
        real = [p for p in pts if not p["emulated"]]  # emulated latency competes with nothing
        front = {id(real[i]) for i in pareto_front(real)}
        for p in pts:
            p["front"] = id(p) in front
        if pts:
            out.append({"device": device, "points": pts})
    return out


def _macs_latency(rows: list[dict]) -> list[dict]:
    out = []
    for device in sorted({r["device"] for r in rows}):
        pts = [
            {"label": _label(r), "macs": r["macs"], "latency_ms": r["p50_ms"]}
            for r in rows
            if r["device"] == device
            and r.get("macs")
            and r.get("p50_ms") is not None
            and r.get("profile_run")
            and not r.get("emulated")
        ]
        if pts:
            out.append({"device": device, "points": pts})
    return out


def grid(rows: list[dict]) -> list[dict]:
    """Per device, the α × resolution table of the MobileNet paper (latency, accuracy, MACs, params)."""
    out = []
    for device in sorted({r["device"] for r in rows}):
        cells = [
            {
                k: r.get(k)
                for k in ("model", "precision", "alpha", "resolution", "p50_ms", "top1", "macs", "params")
            }
            for r in rows
            if r["device"] == device
            and r.get("alpha") is not None
            and r.get("resolution")
            and r.get("p50_ms")
            and not r.get("emulated")
        ]
        if len(cells) < 2:
            continue
        out.append(
            {
                "device": device,
                "alphas": sorted({c["alpha"] for c in cells}),
                "resolutions": sorted({c["resolution"] for c in cells}),
                "cells": cells,
            }
        )
    return out


def _pareto_table(rows: list[dict], budget_ms: float | None) -> list[dict]:
    """Per device: the Pareto-optimal rows and the most accurate within the budget."""
    out = []
    for s in _scatter(rows):
        front = sorted((p for p in s["points"] if p["front"]), key=lambda p: p["latency_ms"])
        best = best_within([p for p in s["points"] if not p["emulated"]], budget_ms)
        out.append(
            {
                "device": s["device"],
                "budget_ms": budget_ms,
                "excluded_emulated": [p["label"] for p in s["points"] if p["emulated"]],
                "front": [
                    {"label": p["label"], "latency_ms": p["latency_ms"], "top1": p["top1"]} for p in front
                ],
                "best_within_budget": (
                    {"label": best["label"], "latency_ms": best["latency_ms"], "top1": best["top1"]}
                    if best
                    else None
                ),
            }
        )
    return out


# --------------------------------------------------------------------------- environments


def _environments(runs: list[dict], ids: set[int], blobs: dict, store: Store) -> list[dict]:
    missing = [i for i in ids if i not in blobs]
    if missing:
        blobs = {**blobs, **store.results(missing)}
    out = []
    for r in runs:
        if r["id"] not in ids:
            continue
        b = blobs.get(r["id"]) or {}
        env = environment_of(b.get("result"))
        cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
        temp = env.get("temperature", env.get("temperature_c"))
        out.append(
            {
                "run": r["id"],
                "kind": r["kind"],
                "created_at": r["created_at"],
                "model": r["model_name"],
                "device": r["device"],
                "host": r["host"],
                "cpu": cpu.get("model") or (env.get("cpu") if isinstance(env.get("cpu"), str) else None),
                "cores": cpu.get("cores") or env.get("cores"),
                "machine": cpu.get("machine") or env.get("machine"),
                "governor": env.get("governor"),
                "os": env.get("os") if isinstance(env.get("os"), str) else _device_str(env.get("os")),
                "interpreter": " ".join(x for x in (r["interpreter"], r["interpreter_version"]) if x) or None,
                "xnnpack": env.get("xnnpack"),
                "temperature": temp,
                "temperature_c": r["temperature_c"],
                "throttled": bool(r["throttled"]),
                "throttling": env.get("throttling"),
                "emulated": is_emulated(b),
            }
        )
    return out
