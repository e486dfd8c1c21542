"""Options shared by several commands, defined once (as pip-tools' scripts/options.py does)."""

from __future__ import annotations

import click

from edgekit.config import IO_TYPES, PRECISIONS
from edgekit.devices.fleet import DEFAULT_PARALLEL
from edgekit.pipeline.backbone import DEFAULT_FINE_TUNE, DEFAULT_FINE_TUNE_EPOCHS, FINE_TUNE_LR_FACTOR

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")

model_option = click.option(
    "--model",
    "-m",
    default="mobilenet",
    show_default=True,
    help="Model family or variant (see `edgekit models`).",
)
alpha_option = click.option(
    "--alpha", type=float, default=None, help="MobileNet width multiplier, in (0, 1.25]."
)
rho_option = click.option("--rho", type=float, default=None, help="Resolution multiplier: input = 224·rho.")
resolution_option = click.option("--resolution", type=int, default=None, help="Input side in pixels (≥ 32).")
classes_option = click.option("--classes", type=int, default=None, help="Number of classes (default 1000).")
shortcut_option = click.option(
    "--shortcut",
    type=click.Choice(["A", "B", "C"], case_sensitive=False),
    default=None,
    help="ResNet shortcut: A zero-pad identity, B projection where shape changes (default), C always.",
)


def threads_option(*, several: bool = False, default: int | None = 1, help: str = "Interpreter threads."):
    """`--threads N` (a positive int), or with `several` a comma list `1,2,4` parsed to a tuple."""
    if several:
        return click.option(
            "--threads",
            default=str(default),
            show_default=True,
            callback=lambda ctx, p, v: parse_int_list(v, "--threads"),
            help=help,
        )
    return click.option(
        "--threads", type=click.IntRange(min=1), default=default, show_default=default is not None, help=help
    )


def device_option(*, default: str | None = None, help: str = "Device name(s) from `edgekit devices`, comma list."):
    return click.option("--device", "-d", "device", default=default, show_default=default is not None, help=help)


def labels_option(help: str = "labels.txt, one class per line."):
    return click.option("--labels", "labels_file", type=click.Path(), default=None, help=help)


def output_option(*, help: str = "Output folder.", **kwargs):
    """`-o/--output`: a folder unless the command says otherwise (`type=`, `default=`, `required=`)."""
    kwargs.setdefault("type", click.Path())
    kwargs.setdefault("default", None)
    return click.option("-o", "--output", help=help, **kwargs)


parallel_option = click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=DEFAULT_PARALLEL,
    show_default=True,
    help="Devices worked on at once (a slow one holds only its own slot).",
)
all_devices_option = click.option(
    "--all", "all_devices", is_flag=True, help="Run on every device in the inventory (in parallel)."
)


def model_options(f):
    """--model --alpha --rho --resolution --classes --shortcut, in that order."""
    for opt in reversed(
        [model_option, alpha_option, rho_option, resolution_option, classes_option, shortcut_option]
    ):
        f = opt(f)
    return f


def parse_precisions(value: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(p.strip().lower() for p in value.split(",") if p.strip()))
    bad = [p for p in items if p not in PRECISIONS]
    if bad or not items:
        raise click.BadParameter(f"use one or more of {', '.join(PRECISIONS)}; received {value!r}")
    return items


def parse_int_list(value: str, name: str) -> tuple[int, ...]:
    try:
        items = tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{name} must be comma-separated integers; received {value!r}") from None
    if not items or any(v < 1 for v in items):
        raise click.BadParameter(f"{name} must be positive integers; received {value!r}")
    return items


quantize_option = click.option(
    "--quantize",
    "-q",
    "precisions",
    default="int8",
    show_default=True,
    callback=lambda ctx, p, v: parse_precisions(v),
    help=f"Precision(s), comma list of {', '.join(PRECISIONS)}; int8 = full integer, per-channel weights.",
)
io_option = click.option(
    "--io",
    type=click.Choice(IO_TYPES),
    default="int8",
    show_default=True,
    help="Input/output type of the int8 model.",
)
db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="EDGEKIT_DB",
    help="Results database (default: EDGEKIT_DB, else results.db in EDGEKIT_HOME or the user data dir).",
)
quantizer_option = click.option(
    "--quantizer",
    type=click.Choice(["converter", "litert"]),
    default=None,
    help="Who quantizes: TFLite's converter, or the LiteRT Quantizer (ai-edge-quantizer; int8 and dynamic). "
    "Default: the back end measured more accurate for each precision (README, int8 section).",
)


weights_option = click.option(
    "--weights",
    default=None,
    metavar="SOURCE",
    help="Pretrained weights: imagenet (downloaded once, cached), a run or bundle folder, or a "
    ".keras/.h5/.tflite/.pth/.onnx file (README: Pretrained weights).",
)


def weights_request(ctx: click.Context, **given):
    """What the user asked for beside --weights: only flags given on the command line (or by env), so
    defaults never contradict the weights. `given` maps parameter names to their parsed values."""
    from click.core import ParameterSource

    from edgekit.config import WeightsRequest

    explicit = {
        k: v
        for k, v in given.items()
        if v is not None and ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }
    if "model" in explicit:
        from edgekit.models import get_family
        from edgekit.models.registry import parse_variant_name

        name = explicit.pop("model")
        explicit["family"] = get_family(name).name
        variant = parse_variant_name(name)  # mobilenet_v1_050_160 names α and resolution too
        if variant is not None:
            explicit.setdefault("alpha", variant.alpha)
            explicit.setdefault("resolution", variant.resolution)
    if "rho" in explicit:
        explicit["resolution"] = int(round(224 * explicit.pop("rho")))
    return WeightsRequest(**{k: explicit.get(k) for k in ("family", "alpha", "resolution", "classes")})


def transfer_options(f):
    """--weights, then --fine-tune --fine-tune-epochs --fine-tune-lr: transfer learning (train, sweep)."""
    opts = [
        weights_option,
        click.option(
            "--fine-tune",
            default=None,
            help="With --weights, stage 2: none, top-N% (of the backbone's layers) or all "
            f"[default: {DEFAULT_FINE_TUNE}; BatchNorm stays frozen].",
        ),
        click.option(
            "--fine-tune-epochs", type=int, default=DEFAULT_FINE_TUNE_EPOCHS, show_default=True, help="Stage 2 epochs (early stopping)."
        ),
        click.option("--fine-tune-lr", type=float, default=None, help=f"Stage 2 learning rate [default: --lr × {FINE_TUNE_LR_FACTOR:g}]."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f
