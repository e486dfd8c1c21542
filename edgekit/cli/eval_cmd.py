"""`edgekit eval TARGET --data DIR`: desktop accuracy (float reference vs host TFLite), or on a device."""

from __future__ import annotations

import click

from edgekit.cli.options import (
    all_devices_option,
    db_option,
    device_option,
    json_option,
    labels_option,
    parallel_option,
    threads_option,
)
from edgekit.cli.output import console, print_json, progress_steps


@click.command("eval")
@click.argument("target")
@click.option("--data", required=True, help="DIR/<class>/*.jpg, a CSV of path,label, or builtin:mnist.")
@labels_option("The model's labels (one per line).")
@click.option("--limit", type=int, default=None, help="Evaluate a seeded sample of at most N images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --limit sample.")
@click.option("--no-write", is_flag=True, help="Do not write reference.json into a bundle.")
@device_option(help="Evaluate on this device (see `edgekit devices`) instead.")
@all_devices_option
@parallel_option
@threads_option(help="Interpreter threads (with --device).")
@click.option(
    "--backend",
    type=click.Choice(["tensorflow", "jax", "torch"]),  # edgekit.pipeline.keras_reference.BACKENDS
    default="tensorflow",
    show_default=True,
    help="Keras backend the float reference runs on (the .keras model is backend-neutral).",
)
@click.option(
    "--reference-precision",
    type=click.Choice(["float32", "mixed_float16", "mixed_bfloat16"]),
    default="float32",
    show_default=True,
    help="float32 is the reference; a mixed policy is labelled as such wherever its figures go.",
)
@db_option
@json_option
def eval_(
    target, data, labels_file, limit, seed, no_write, device, all_devices, parallel, threads, backend,
    reference_precision, db, as_json,
) -> None:  # fmt: skip
    """Top-1/top-5, per-class accuracy, confusion matrix; float vs int8 agreement for bundles and runs.

    TARGET is an export bundle, a training run folder, a .keras model or any .tflite classifier.

    \b
    Example:  edgekit eval edgekit-out/mnist --data builtin:mnist --limit 1000
    """
    from edgekit.errors import UsageError

    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1; received {limit}")
    if device or all_devices:
        from edgekit.cli.device_eval import run_device_eval

        if backend != "tensorflow" or reference_precision != "float32":
            raise UsageError(
                "--backend and --reference-precision choose how the desktop reference runs; "
                "run `edgekit eval TARGET --data ... --backend ...` without --device first"
            )

        run_device_eval(
            model=target, data=data, labels=labels_file, device=device, threads=threads, as_json=as_json,
            all_devices=all_devices, parallel=parallel, limit=limit, seed=seed, db=db,
        )  # fmt: skip
        return
    from edgekit.cli import recording
    from edgekit.pipeline.reference import check_data_spec, evaluate, recorded_view

    check_data_spec(data)
    with progress_steps("eval", quiet=as_json) as step:
        result, manifest = evaluate(
            target,
            data,
            labels_file=labels_file,
            limit=limit,
            seed=seed,
            write=not no_write,
            progress=step,
            backend=backend,
            precision=reference_precision,
        )
    print_json(result) if as_json else _print(result)
    recording.finish([recording.record("eval", recorded_view(result), manifest=manifest, db=db)])


eval = eval_  # the COMMANDS table names the attribute `eval`


def _speed_cells(block: dict) -> list[str]:
    lat, thr = block.get("latency_ms") or {}, block.get("throughput") or {}
    if not lat.get("p50"):
        return ["–", "–", "–"]
    ips = f"{thr['images_per_s']:.0f} (batch {thr['batch']})" if thr.get("images_per_s") else "–"
    return [f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", ips]


def _print(r: dict) -> None:
    from rich.table import Table

    c = console()
    d = r["data"]
    c.print(
        f"[bold]{r['target']}[/] ({r['kind']}) on {d['n']} images of {d['classes']} classes from {d['source']}"
    )
    from edgekit.results.comparison import where

    t = Table(show_header=True)
    for col in ("model", "where", "top-1", "top-5", "p50 ms", "p90 ms", "images/s"):
        t.add_column(col, justify="left" if col in ("model", "where") else "right")
    if "reference" in r:
        ref = r["reference"]
        t.add_row(
            f"float {ref['model']}",
            where(ref.get("device"), ref.get("backend"), ref.get("precision")) or "Keras",
            f"{ref['top1']:.2%}",
            f"{ref['top5']:.2%}",
            *_speed_cells(ref),
        )
    if "tflite" in r:
        q = r["tflite"]
        threads = f", {q['threads']} threads" if q.get("threads") else ""
        t.add_row(
            q["model"], f"host TFLite ({q['runtime']}{threads})", f"{q['top1']:.2%}", f"{q['top5']:.2%}",
            *_speed_cells(q),
        )  # fmt: skip
    c.print(t)
    c.print("latency: per image at batch 1 after warm-up; images/s at the batch shown")
    note = (r.get("reference") or {}).get("precision_note")
    if note:
        c.print(f"[yellow]note:[/] {note}")
    if "agreement" in r:
        diff = r.get("output_diff", {})
        c.print(
            f"top-1 agreement {r['agreement']:.2%}, top-1 change {r['top1_change'] * 100:+.2f} points"
            + (f", output |Δ| mean {diff['mean_abs']:.3g} max {diff['max_abs']:.3g}" if diff else "")
        )
    main = r.get("tflite") or r.get("reference")
    worst = sorted(main["per_class"].items(), key=lambda kv: kv[1])[:5]
    c.print("lowest per-class top-1: " + ", ".join(f"{k} {v:.0%}" for k, v in worst))
    for note in (r["labels"].get("note"), r.get("tflite_note")):
        if note:
            c.print(f"[yellow]note:[/] {note}")
    if d["skipped"]:
        c.print(f"[yellow]skipped {len(d['skipped'])} unreadable image(s):[/] {', '.join(d['skipped'][:5])}")
    if r.get("written"):
        click.echo(f"written: {r['written']}")
