"""`edgekit export`: the headline command."""

from __future__ import annotations

import click

from edgekit.cli.options import (
    db_option,
    io_option,
    json_option,
    labels_option,
    model_options,
    output_option,
    quantize_option,
    quantizer_option,
    weights_option,
    weights_request,
)
from edgekit.cli.output import console, print_json, progress_steps
from edgekit.config import DEFAULT_CALIBRATION_SAMPLES


@click.command()
@model_options
@labels_option()
@weights_option
@click.option(
    "--calibration",
    default=None,
    help="Folder of images for int8 calibration and verification (default: synthetic images).",
)
@click.option(
    "--calibration-samples",
    type=int,
    default=DEFAULT_CALIBRATION_SAMPLES,
    show_default=True,
    help="Images used to calibrate (the default is measured; fewer draw a warning).",
)
@click.option(
    "--max-drop",
    type=float,
    default=None,
    help="int8 top-1 budget in points: keep the worst layers in float until within it (needs labelled data).",
)
@click.option(
    "--format",
    "formats",
    default="tflite",
    show_default=True,
    help="tflite, or tflite,onnx / onnx: also write ONNX (float32 + int8 QDQ) checked with ONNX Runtime.",
)
@quantize_option
@quantizer_option
@io_option
@output_option()
@db_option
@json_option
def export(
    model,
    alpha,
    rho,
    resolution,
    classes,
    shortcut,
    labels_file,
    weights,
    calibration,
    calibration_samples,
    max_drop,
    formats,
    precisions,
    quantizer,
    io,
    output,
    db,
    as_json,
) -> None:
    """Build (or load --weights), quantize, verify and write a self-describing TFLite bundle.

    \b
    Example:  edgekit export --model mobilenet --alpha 0.5
    """
    from edgekit.bundle.manifest import read_labels
    from edgekit.config import ExportConfig
    from edgekit.errors import UsageError
    from edgekit.models import resolve_config

    labels = tuple(read_labels(labels_file)) if labels_file else ()
    if labels and classes is not None and classes != len(labels):
        raise UsageError(f"--classes {classes} disagrees with the {len(labels)} labels in {labels_file}")
    if labels:
        classes = len(labels)
    if calibration_samples < 1:
        raise UsageError(f"--calibration-samples must be at least 1; received {calibration_samples}")
    request = None
    if weights:  # the flags given explicitly are checked against what the weights hold
        request = weights_request(
            click.get_current_context(), model=model, alpha=alpha, rho=rho, resolution=resolution, classes=classes
        )
    cfg = ExportConfig(
        model=resolve_config(
            model, alpha=alpha, rho=rho, resolution=resolution, classes=classes, shortcut=shortcut
        ),
        precisions=precisions,
        io=io,
        weights=weights,
        calibration=calibration,
        calibration_samples=calibration_samples,
        labels=labels,
        output=output,
        quantizer=quantizer,
        weights_request=request,
    )
    from edgekit.pipeline.export import export_bundle

    with progress_steps("export", quiet=as_json) as step:
        out, manifest = export_bundle(cfg, progress=step, max_drop=max_drop, extras=_format_extras(formats, cfg))
    from edgekit.cli import recording

    print_json({"bundle": str(out), **manifest}) if as_json else _summary(out, manifest)
    recording.finish(
        [recording.record("export", {"bundle": str(out.resolve()), **manifest}, manifest=manifest, db=db)]
    )


def _format_extras(formats: str, cfg):
    """`--format`: the TFLite models are always written (devices run them); onnx adds ONNX files."""
    from edgekit.errors import UsageError

    items = {f.strip().lower() for f in formats.split(",") if f.strip()}
    if not items or items - {"tflite", "onnx"}:
        raise UsageError(f"--format must be tflite, onnx or tflite,onnx; received {formats!r}")
    if "onnx" not in items:
        return None
    from edgekit.pipeline.onnx_export import onnx_extras

    return onnx_extras(cfg.precisions)


def _summary(out, manifest: dict) -> None:
    from rich.table import Table

    c = console()
    m = manifest["model"]
    c.print(
        f"[bold green]bundle written[/] {out}  ({manifest['name']}: {m['params'] / 1e6:.2f}M params, "
        f"{m['macs'] / 1e6:.0f}M MACs, input {m['input_shape']})"
    )
    t = Table(show_header=True)
    for col in ("file", "precision", "quantizer", "size", "vs float32", "top-1 agreement", "max |Δ|", "input"):
        t.add_column(col)
    for e in manifest["models"]:
        v = e["verification"]
        i = e["io"]["input"]
        t.add_row(
            e["file"],
            e["precision"],
            e.get("quantizer", {}).get("backend", "–"),
            f"{e['size_bytes'] / 1e6:.2f} MB",
            f"{v['size_ratio_vs_float32']:.2f}×",
            f"{v['top1_agreement']:.0%}",
            f"{v['max_abs_diff']:.3g}",
            f"{i['dtype']} scale={i['scale']:.4g} zp={i['zero_point']}",
        )
    c.print(t)
    for e in manifest.get("onnx_models", []):  # --format onnx
        v = e["verification"]
        c.print(
            f"{e['file']}: {e['size_bytes'] / 1e6:.2f} MB, vs Keras on ONNX Runtime: top-1 agreement "
            f"{v['top1_agreement']:.0%}, max |Δ| {v['max_abs_diff']:.3g}"
        )
    cal = manifest["calibration"]
    if cal["synthetic"]:
        c.print(f"[yellow]note:[/] {cal['note']}")
    elif cal.get("warning"):
        c.print(f"[yellow]warning:[/] {cal['warning']}")
    if cal.get("skipped"):
        c.print(
            f"[yellow]skipped {len(cal['skipped'])} unreadable images:[/] {', '.join(cal['skipped'][:5])}"
        )
    for e in manifest["models"]:
        if e.get("accuracy"):
            _accuracy_lines(c, e["accuracy"])
    if any(e["precision"] == "int8" for e in manifest["models"]):
        # export times nothing, so this is the rule of thumb only; `edgekit profile` sets it against figures
        c.print(f"[bold]int8 speed on this CPU (rule of thumb):[/] {manifest['host']['int8_note']}", soft_wrap=True)
    click.echo(f"next: edgekit profile {out}")  # plain echo: never wrapped, so it can be copied


def _accuracy_lines(c, a: dict) -> None:
    """Float vs int8 top-1 and the --max-drop outcome (edgekit.pipeline.quantize)."""
    ci = a.get("drop_ci95_points")
    ci_text = f", 95 % paired interval of the drop [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""
    c.print(
        f"[bold]accuracy[/] on {a['n']} labelled images ({a['data']}): float {a['float_top1']:.2%}, "
        f"int8 {a['int8_top1']:.2%} ({0.0 - a['drop_points']:+.2f} points{ci_text}), "
        f"agreement {a['agreement']:.2%}"
    )
    b = a.get("max_drop")
    if not b:
        return
    if b.get("selective"):
        names = ", ".join(x["tensor_name"].split(";")[0] for x in b["float_layers"][:6])
        c.print(
            f"kept {len(b['float_layers'])} layer(s) in float: {names}; size "
            f"{b['full_int8']['size_bytes'] / 1e6:.2f} → {b['size_bytes'] / 1e6:.2f} MB, host latency "
            f"×{b['host_latency_change']:.2f}" + (f"; {b['io_note']}" if b.get("io_note") else "")
        )
    if b["budget_met"]:
        c.print(f"[green]within --max-drop {b['max_drop_points']}[/]: drop {b['drop_points']:.2f} points")
    else:
        c.print(f"[bold yellow]--max-drop {b['max_drop_points']} not met:[/] {b['note']}")
