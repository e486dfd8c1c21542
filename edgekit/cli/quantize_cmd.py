"""`edgekit quantize`: any float `.tflite` -> int8 (or dynamic-range) with the LiteRT Quantizer, no TensorFlow."""

from __future__ import annotations

import click

from edgekit.cli.options import json_option
from edgekit.cli.output import console, print_json, progress_steps


@click.command()
@click.argument("model", type=click.Path())
@click.option("--calibration", default=None, help="Folder (or builtin:NAME, CSV) of images for int8 calibration.")
@click.option("--calibration-samples", type=int, default=None, help="Images used to calibrate (default: the measured default).")
@click.option("--precision", type=click.Choice(["int8", "dynamic"]), default="int8", show_default=True)
@click.option(
    "--ranges",
    type=click.Choice(["minmax", "percentile", "ema"]),
    default="minmax",
    show_default=True,
    help="Activation ranges: true min/max, a percentile, or the quantizer's own moving average.",
)
@click.option("--per-tensor", is_flag=True, help="One weight scale per tensor instead of per output channel.")
@click.option("-o", "--output", type=click.Path(), default=None, help="Output .tflite (default: MODEL_int8.tflite).")
@json_option
def quantize(model, calibration, calibration_samples, precision, ranges, per_tensor, output, as_json) -> None:
    """Quantize a float .tflite (third-party, an ONNX import, ...) with ai-edge-quantizer.

    \b
    Example:  edgekit quantize mobilenet_float.tflite --calibration photos/
    """
    from edgekit.config import DEFAULT_CALIBRATION_SAMPLES
    from edgekit.converters.tflite_quantize import Recipe
    from edgekit.errors import UsageError
    from edgekit.pipeline import litert_quant as lq

    samples = calibration_samples or DEFAULT_CALIBRATION_SAMPLES
    if samples < 1:
        raise UsageError(f"--calibration-samples must be at least 1; received {samples}")
    lq.require()
    recipe = Recipe(precision=precision, per_channel=not per_tensor, ranges=ranges)
    with progress_steps("quantize", quiet=as_json) as step:
        result = lq.quantize_file(
            model, calibration=calibration, samples=samples, precision=precision, recipe=recipe,
            output=output, progress=step,
        )  # fmt: skip
    if as_json:
        print_json(result)
        return
    c = console()
    v, s = result["verification"], result["size_bytes"]
    c.print(
        f"[bold green]written[/] {result['output']} ({precision}, {result['quantizer']['recipe']['recipe']}): "
        f"{s['float'] / 1e6:.2f} → {s['quantized'] / 1e6:.2f} MB; on {v['images']} calibration images "
        f"top-1 agreement {v['top1_agreement']:.1%}, output correlation {v['output_correlation']:.3f}"
    )
    if result["calibration"]["synthetic"]:
        c.print("[yellow]note:[/] calibrated on synthetic images: pass --calibration DIR with real images")
