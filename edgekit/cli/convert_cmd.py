"""`edgekit convert model.onnx`: an ONNX image classifier becomes the same bundle `export` writes."""

from __future__ import annotations

import click

from edgekit.cli.options import io_option, json_option, labels_option, output_option, quantize_option
from edgekit.cli.output import console, print_json, progress_steps


def _floats(ctx, param, value):
    if value is None:
        return None
    try:
        items = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"comma-separated numbers expected; received {value!r}") from None
    if len(items) not in (1, 3):
        raise click.BadParameter(f"1 or 3 numbers expected; received {value!r}")
    return items


@click.command()
@click.argument("onnx_file", required=False, type=click.Path())
@click.option("--calibration", default=None, help="Folder of images for int8 calibration and verification.")
@click.option("--calibration-samples", type=int, default=100, show_default=True, help="Images used.")
@quantize_option
@io_option
@labels_option()
@click.option(
    "--mean",
    callback=_floats,
    default=None,
    help="Per-channel mean in pixel units (0-255), e.g. 123.675,116.28,103.53 for torchvision. [127.5]",
)
@click.option(
    "--std",
    callback=_floats,
    default=None,
    help="Per-channel std in pixel units, e.g. 58.395,57.12,57.375 for torchvision. [127.5]",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "edgekit", "onnx2tf", "onnx-tf"]),
    default="auto",
    show_default=True,
    help="ONNX->TFLite back end; auto = edgekit's own importer, onnx2tf for operators it lacks.",
)
@click.option("--name", default=None, help="Model name for files (default: the ONNX file name).")
@click.option(
    "--backends", "show_backends", is_flag=True, help="List back ends and why each can or cannot run."
)
@click.option(
    "--install-backend",
    type=click.Choice(["onnx2tf"]),
    default=None,
    help="Create onnx2tf's isolated environment (~2.6 GB download) and exit.",
)
@output_option()
@json_option
def convert(
    onnx_file,
    calibration,
    calibration_samples,
    precisions,
    io,
    labels_file,
    mean,
    std,
    backend,
    name,
    show_backends,
    install_backend,
    output,
    as_json,
) -> None:
    """Convert an ONNX image classifier (NCHW or NHWC) into a verified TFLite bundle.

    \b
    Example:  edgekit convert resnet18.onnx --calibration imgs/ --mean 123.675,116.28,103.53 \\
                  --std 58.395,57.12,57.375 --quantize int8,float32 -o bundle/
    """
    from edgekit.errors import UsageError

    if show_backends:
        from edgekit.converters.onnx_tflite import backend_status

        _print_backends(backend_status(), as_json)
        return
    if install_backend:
        from edgekit.pipeline.onnx import install_backend as install

        with progress_steps("install", quiet=as_json) as step:
            info = install(install_backend, step)
        print_json(info) if as_json else console().print(
            f"[green]installed[/] {info['backend']} in {info['path']}"
        )
        return
    if not onnx_file:
        raise UsageError("missing ONNX_FILE", hint="edgekit convert model.onnx [--calibration DIR]")
    if calibration_samples < 1:
        raise UsageError(f"--calibration-samples must be at least 1; received {calibration_samples}")
    from edgekit.bundle.manifest import read_labels
    from edgekit.pipeline.onnx import ConvertConfig, convert_bundle

    cfg = ConvertConfig(
        onnx=onnx_file,
        precisions=precisions,
        io=io,
        backend=backend,
        calibration=calibration,
        calibration_samples=calibration_samples,
        labels=tuple(read_labels(labels_file)) if labels_file else (),
        mean=mean,
        std=std,
        name=name,
        output=output,
    )
    with progress_steps("convert", quiet=as_json) as step:
        out, manifest = convert_bundle(cfg, progress=step)
    if as_json:
        print_json({"bundle": str(out), **manifest})
        return
    _summary(out, manifest)


def _print_backends(status: dict, as_json: bool) -> None:
    if as_json:
        print_json({"schema_version": 1, "backends": status})
        return
    c = console()
    for name, st in status.items():
        mark = "[green]ok[/]" if st["available"] else "[red]unavailable[/]"
        c.print(f"{name:8} {mark}  {st['reason']}", soft_wrap=True)


def _summary(out, manifest: dict) -> None:
    from rich.table import Table

    c = console()
    m, src = manifest["model"], manifest["source"]
    c.print(
        f"[bold green]bundle written[/] {out}  ({manifest['name']} from ONNX opset {src['opset']}, "
        f"back end {src['backend']}, {m['params'] / 1e6:.2f}M params, input {m['input_shape']})"
    )
    t = Table(show_header=True)
    for col in ("file", "precision", "size", "max |Δ|/scale", "top-1 agree", "transposes"):
        t.add_column(col)
    for e in manifest["models"]:
        v = e["verification"]
        agree = v.get("top1_agreement")
        t.add_row(
            e["file"],
            e["precision"],
            f"{e['size_bytes'] / 1e6:.2f} MB",
            f"{v['max_rel_diff']:.1e}",
            "-" if agree is None else f"{agree:.1%}" + _gate(v),
            str(v["transposes"]),
        )
    c.print(t)
    c.print("compared with ONNX Runtime on the same images; transposes counted in the .tflite")
    if manifest["calibration"]["synthetic"]:
        c.print(f"[yellow]note:[/] {manifest['calibration']['note']}")
    click.echo(f"next: edgekit profile {out}")


def _gate(v: dict) -> str:
    """The int8 agreement gate's figures (edgekit.pipeline.onnx_verify), when it judged."""
    if "allowed_disagreements" not in v:
        return ""
    return f" ({v['disagreements']} of {v['images']} differ, ≤ {v['allowed_disagreements']} allowed)"
