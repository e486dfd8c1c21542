"""`edgekit eval --device NAME`: accuracy measured by eval_images.py on a device (here: `local`).

The `eval` command (desktop evaluation) lives elsewhere and calls run_device_eval() when --device is
given; this module owns only the device path.
"""

from __future__ import annotations

from edgekit.devices.fleet import DEFAULT_PARALLEL


def run_device_eval(
    *, model: str, data: str, labels: str | None, device: str, threads: int, as_json: bool,
    all_devices: bool = False, parallel: int = DEFAULT_PARALLEL, limit: int | None = None, seed: int = 0,
    db: str | None = None,
) -> None:  # fmt: skip
    """Evaluate MODEL (a .tflite or a bundle's primary model) on DATA with the device script on DEVICE,
    compare with the desktop reference stored in the bundle when there is one, print, then record.

    `--limit/--seed` take the desktop eval's seeded sample; nothing is ever written into the bundle
    (reference.json is the desktop's), so `--no-write` holds by construction."""
    from edgekit.cli import recording
    from edgekit.cli.fleet import run_on_devices
    from edgekit.devices import jobs, resolve
    from edgekit.results.comparison import device_eval_fields

    (ref,) = resolve.resolve_models(model, all_precisions=False)

    def job(target, step):
        doc = jobs.evaluate(
            target, ref, data, labels=labels, threads=threads or None, progress=step, limit=limit, seed=seed
        )
        result = {
            "schema_version": 1,
            "device": doc["device"],
            "precision": doc["model"].get("precision"),
            "tflite": {k: doc[k] for k in ("top1", "top5", "n", "latency_ms", "runtime")},
            "threads": (doc.get("runtime") or {}).get("threads"),
            "batch": 1,  # eval_images.py times one image per invoke
            **device_eval_fields(ref.bundle, doc),
            "device_result": doc,
        }
        return result

    def record(result):
        return recording.record("eval", result, manifest=ref.manifest, device=result["device"], db=db)

    run_on_devices(
        device, all_devices, job, title="eval", as_json=as_json, show=_print, max_parallel=parallel,
        record=record,
    )


def _print(result: dict) -> None:
    from rich.markup import escape

    from edgekit.cli.output import console

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
    print_vs_reference(result.get("vs_reference"), result["device"]["name"])
    if "top1_change" in result:
        c.print(f"vs the host TFLite: top-1 change {result['top1_change'] * 100:+.2f} points")
    if "agreement" in result:
        c.print(f"top-1 agreement with the host TFLite: {result['agreement']:.2%}")
    if doc["data"].get("note"):
        c.print(f"[yellow]note:[/] {doc['data']['note']}")
    for s in doc["skipped"]:
        c.print(f"[yellow]skipped[/] {s['path']}: {s['reason']}")


def print_vs_reference(vs: dict | None, device: str) -> None:
    """The one line every device command prints: this device against the desktop float reference."""
    from rich.markup import escape

    from edgekit.cli.output import console
    from edgekit.results.comparison import Comparison

    if not vs:
        return
    cmp = Comparison.from_dict(vs)
    line = cmp.sentence(device)
    if cmp.agreement is not None:
        line += f"; top-1 agreement with it {cmp.agreement:.2%} on {cmp.matched_images} images"
    console().print(f"[bold]vs reference:[/] {escape(line)}", soft_wrap=True)
