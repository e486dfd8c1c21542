"""`edgekit eval --device NAME`: accuracy measured by eval_images.py on a device (here: `local`).

The `eval` command (desktop evaluation) lives elsewhere and calls run_device_eval() when --device is
given; this module owns only the device path.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.devices.fleet import DEFAULT_PARALLEL


def run_device_eval(
    *, model: str, data: str, labels: str | None, device: str, threads: int, as_json: bool,
    all_devices: bool = False, parallel: int = DEFAULT_PARALLEL,
) -> None:  # fmt: skip
    """Evaluate MODEL (a .tflite or a bundle's primary model) on DATA with the device script on DEVICE,
    compare with the desktop reference stored in the bundle when there is one, record and print."""
    from edgekit.cli.fleet import run_on_devices  # noqa: PLC0415
    from edgekit.devices import jobs, resolve  # noqa: PLC0415
    from edgekit.results import store  # noqa: PLC0415

    (ref,) = resolve.resolve_models(model, all_precisions=False)

    def job(target, step):
        doc = jobs.evaluate(target, ref, data, labels=labels, threads=threads or None, progress=step)
        result = {
            "schema_version": 1,
            "device": doc["device"],
            "precision": doc["model"].get("precision"),
            "tflite": {k: doc[k] for k in ("top1", "top5", "n", "latency_ms", "runtime")},
            **_vs_reference(ref.bundle, doc),
            "device_result": doc,
        }
        store.record("eval", result, manifest=ref.manifest, device=doc["device"])
        return result

    run_on_devices(
        device, all_devices, job, title="eval", as_json=as_json, show=_print, max_parallel=parallel
    )


def _vs_reference(bundle: Path | None, doc: dict) -> dict:
    """Device vs the desktop's host-TFLite figures in bundle/reference.json (written by `edgekit eval`)."""
    if bundle is None or not (bundle / "reference.json").is_file():
        return {}
    try:
        ref = json.loads((bundle / "reference.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    host = ref.get("tflite") if isinstance(ref.get("tflite"), dict) else {}
    out: dict = {"reference": ref.get("reference"), "host_tflite": host or None}
    if isinstance(host.get("top1"), (int, float)) and doc["top1"] is not None:
        out["top1_change"] = doc["top1"] - host["top1"]
    host_p50 = (host.get("latency_ms") or {}).get("p50")  # present when the reference recorded host latency
    dev_p50 = (doc.get("latency_ms") or {}).get("p50")
    if isinstance(host_p50, (int, float)) and host_p50 > 0 and isinstance(dev_p50, (int, float)):
        out["latency_ratio"] = dev_p50 / host_p50  # device / desktop, per image
    preds = host.get("predictions")
    if isinstance(preds, list) and preds:
        by_name = {Path(str(p.get("path", ""))).name: p.get("pred") for p in preds if isinstance(p, dict)}
        same = [
            by_name[Path(p["path"]).name] == p["pred"]
            for p in doc["predictions"]
            if Path(p["path"]).name in by_name
        ]
        if same:
            out["agreement"] = sum(same) / len(same)
    return out


def _print(result: dict) -> None:
    from rich.markup import escape  # noqa: PLC0415

    from edgekit.cli.output import console  # noqa: PLC0415

    c = console()
    doc = result["device_result"]
    t = result["tflite"]
    c.print(
        f"[bold]{doc['model']['file']}[/] on [bold]{result['device']['name']}[/] "
        f"({t['runtime']['name']} {t['runtime']['version']}), {doc['data']['kind']} {doc['data']['source']}"
    )
    if t["top1"] is not None:
        c.print(f"top-1 {t['top1']:.2%}  top-5 {t['top5']:.2%}  on {t['n']} labelled images")
    else:
        c.print(f"{len(doc['predictions'])} images predicted (no labels)")
    lat = t["latency_ms"]
    c.print(f"latency per image p50 {lat['p50']:.3f} ms  p90 {lat['p90']:.3f} ms  p99 {lat['p99']:.3f} ms")
    note = result.get("latency_note") or doc.get("latency_note")
    if note:
        c.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if "top1_change" in result:
        c.print(f"vs desktop TFLite: top-1 change {result['top1_change'] * 100:+.2f} points")
    if "latency_ratio" in result:
        c.print(f"latency vs the desktop: {result['latency_ratio']:.2f}x")
    if "agreement" in result:
        c.print(f"top-1 agreement with the desktop: {result['agreement']:.2%}")
    if doc["data"].get("note"):
        c.print(f"[yellow]note:[/] {doc['data']['note']}")
    for s in doc["skipped"]:
        c.print(f"[yellow]skipped[/] {s['path']}: {s['reason']}")
