"""`edgekit train`: train a zoo model and write a run folder (see edgekit.pipeline.train)."""

from __future__ import annotations

import click

from edgekit.cli.options import (
    json_option,
    labels_option,
    model_options,
    output_option,
    transfer_options,
    weights_request,
)
from edgekit.cli.output import console, print_json, progress_steps
from edgekit.pipeline.backbone import DEFAULT_FINE_TUNE, HEAD_LR


@click.command()
@model_options
@click.option(
    "--data", default=None, help="DIR/<class>/*.jpg, a CSV of path,label, or builtin:mnist / builtin:digits."
)
@click.option("--val-data", default=None, help="Separate validation set (default: a split of --data).")
@click.option(
    "--val-split", type=float, default=0.2, show_default=True, help="Validation fraction, stratified."
)
@labels_option("labels.txt fixing the class order.")
@click.option("--epochs", type=int, default=None, help="Epochs (default 20; with --resume: the run's own).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--lr", type=float, default=None, help=f"Peak learning rate [default: 1e-3; with --weights {HEAD_LR:g} (the head)]."
)
@click.option("--weight-decay", type=float, default=1e-4, show_default=True, help="Decoupled weight decay.")
@click.option("--label-smoothing", type=float, default=0.1, show_default=True)
@click.option("--schedule", type=click.Choice(["cosine", "step"]), default="cosine", show_default=True)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True)
@click.option("--patience", type=int, default=5, show_default=True, help="Early stopping (epochs); 0 = off.")
@click.option("--augment/--no-augment", default=True, show_default=True, help="Flip, crop/scale, brightness.")
@click.option(
    "--mixed-precision/--no-mixed-precision", default=None, help="float16 compute (default: on with a GPU)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Split, shuffle, augmentation, init.")
@click.option("--resume", is_flag=True, help="Continue the run in -o from its last checkpoint.")
@click.option(
    "--workers", type=click.IntRange(min=2), default=None,
    help="Train as N workers on this machine (MultiWorkerMirroredStrategy; one GPU each where there are N).",
)  # fmt: skip
@transfer_options
@output_option(required=True, help="Run folder, e.g. runs/NAME.")
@json_option
def train(
    model, alpha, rho, resolution, classes, shortcut, data, val_data, val_split, labels_file, epochs,
    batch_size, lr, weight_decay, label_smoothing, schedule, optimizer, patience, augment, mixed_precision,
    seed, resume, weights, fine_tune, fine_tune_epochs, fine_tune_lr, workers, output, as_json,
) -> None:  # fmt: skip
    """Train MobileNet (any α/ρ) or ResNet-18/34 and write a run folder for `edgekit export --weights`.

    \b
    With --weights: a pretrained backbone and a new head for the data's classes, trained in two stages
    (head only with the backbone frozen, then --fine-tune), normalised as the weights expect.

    \b
    Examples: edgekit train --model mobilenet --alpha 0.25 --resolution 64 --data builtin:mnist:train \\
                  --epochs 5 --batch-size 16 --lr 3e-3 -o runs/mnist
              edgekit train --weights imagenet --alpha 0.25 --resolution 128 --data photos/ -o runs/photos
    """
    from edgekit.errors import UsageError
    from edgekit.models import resolve_config
    from edgekit.pipeline.train_config import TrainConfig
    from edgekit.pipeline.transfer import run_training

    if classes is not None:
        raise UsageError("--classes comes from the data when training; drop it")
    if not data and not resume:
        raise UsageError("--data is required (a folder, a CSV or builtin:mnist)")
    request = None
    if weights:  # the architecture is the weights' own; flags given explicitly are checked against it
        mcfg, request = None, weights_request(
            click.get_current_context(), model=model, alpha=alpha, rho=rho, resolution=resolution
        )
    else:
        if fine_tune is not None:
            raise UsageError("--fine-tune needs --weights (pretrained weights to fine-tune)")
        mcfg = resolve_config(model, alpha=alpha, rho=rho, resolution=resolution, shortcut=shortcut, classes=2)
    cfg = TrainConfig(
        model=mcfg, data=data, output=output, val_data=val_data, val_split=val_split, labels_file=labels_file,
        epochs=epochs or 20, batch_size=batch_size, lr=lr or (HEAD_LR if weights else 1e-3), weight_decay=weight_decay, label_smoothing=label_smoothing,
        schedule=schedule, optimizer=optimizer, seed=seed, patience=patience, augment=augment,
        mixed_precision=mixed_precision, weights=weights, weights_request=request, fine_tune=fine_tune or DEFAULT_FINE_TUNE,
        fine_tune_epochs=fine_tune_epochs, fine_tune_lr=fine_tune_lr,
    )  # fmt: skip
    if workers:
        if weights:  # the two stages run through Keras fit on one machine (pipeline.transfer)
            raise UsageError("--workers is not available with --weights yet; drop one of them")
        _launch_workers(workers, output)
        return
    with progress_steps("train", quiet=False) as step:
        run = run_training(cfg, progress=step, resume=resume, resume_epochs=epochs)
    if as_json:
        print_json({"run": output, **run})
        return
    c = console()
    for s in run.get("transfer", {}).get("stages", []):
        c.print(
            f"stage {s['stage']} ({s['what']}): {s['epochs_run']} epochs in {s['seconds']:.0f} s, best "
            f"validation top-1 {s['best_val_top1']:.2%} at epoch {s['best_epoch']}"
            f"{', early-stopped' if s['early_stopped'] else ''}"
        )
    ev, tr, dev = run["evaluation"], run["training"], run["device"]
    c.print(
        f"[bold green]run written[/] {output}: {run['config']['model']['family']} "
        f"{run['model']['resolution']} px, {run['num_classes']} classes, {tr['epochs_run']} epochs in "
        f"{tr['seconds']:.0f} s on {dev['type']} ({dev['name']}"
        f"{', mixed precision' if dev['mixed_precision'] else ''})"
    )
    c.print(
        f"saved model on {ev['n']} validation images: top-1 {ev['top1']:.2%}  top-5 {ev['top5']:.2%} "
        f"(batch-norm statistics: {run['batchnorm']['kept']})"
    )
    if run["data"]["skipped"]:
        c.print(f"[yellow]skipped {len(run['data']['skipped'])} unreadable image(s)[/]")
    click.echo(f"next: edgekit export --weights {output}")


def _launch_workers(n: int, output: str) -> None:
    """`--workers N`: the same command as N local workers (TF_CONFIG on free loopback ports)."""
    import sys
    from pathlib import Path

    from edgekit.errors import EdgekitError, ExitCode
    from edgekit.pipeline.distributed import launch_local, multi_host_hint

    argv = _without_workers(sys.argv[sys.argv.index("train") + 1 :])
    rc = launch_local(n, argv, Path(output), lambda m: click.echo(f"train: {m}", err=True))
    click.echo(multi_host_hint(n, argv), err=True)
    if rc != 0:
        exc = EdgekitError(f"a training worker failed (exit {rc}); see the messages above")
        exc.exit_code = ExitCode(rc) if rc in ExitCode._value2member_map_ else ExitCode.INTERNAL
        raise exc


def _without_workers(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    return out
