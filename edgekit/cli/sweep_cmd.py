"""`edgekit sweep`: the α × resolution grid on the user's device, ending in the Pareto table and plot."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import (
    db_option,
    device_option,
    json_option,
    output_option,
    parse_int_list,
    threads_option,
    transfer_options,
)
from edgekit.cli.output import console, print_json, progress_steps


def _floats(value: str, name: str) -> tuple[float, ...]:
    try:
        items = tuple(dict.fromkeys(float(v) for v in value.split(",") if v.strip()))
    except ValueError:
        raise click.BadParameter(f"{name} must be comma-separated numbers; received {value!r}") from None
    if not items:
        raise click.BadParameter(f"{name} must not be empty; received {value!r}")
    return items


@click.command()
@click.option(
    "--model", "-m", default="mobilenet", show_default=True, help="Model family (MobileNet v1: α and ρ)."
)
@click.option(
    "--alpha", default="0.25,0.5,0.75,1.0", show_default=True, help="Width multipliers, comma list."
)
@click.option(
    "--resolution", default=None, help="Input sides in pixels, comma list [default: 128,160,192,224]."
)
@click.option("--rho", default=None, help="Resolution multipliers instead (input = 224·ρ), comma list.")
@click.option("--classes", type=int, default=None, help="Classes (default: the --data folders, else 1000).")
@click.option(
    "--data", type=click.Path(), default=None, help="Image folder DIR/<class>/*: train, calibrate, evaluate."
)
@click.option(
    "--val-data", type=click.Path(), default=None, help="Held-out images to evaluate on (default: --data)."
)
@click.option(
    "--epochs",
    type=int,
    default=5,
    show_default=True,
    help="Training epochs per configuration (with --data).",
)
@transfer_options
@click.option("--latency-only", is_flag=True, help="Random weights: the latency/size grid only, quickly.")
@device_option(default="local", help="Device name(s), comma list.")
@click.option(
    "--budget-ms", type=float, default=None, help="Latency budget: name the most accurate model within it."
)
@threads_option(help="Interpreter threads while profiling.")
@click.option(
    "--runs", type=int, default=30, show_default=True, help="Timed inferences per profile, at least."
)
@click.option(
    "--min-seconds", type=float, default=1.0, show_default=True, help="Time each profile at least this long."
)
@output_option(type=click.Path(file_okay=False), default="edgekit-out/sweep", show_default=True,
               help="Folder for the bundles and sweep.html.")  # fmt: skip
@db_option
@json_option
def sweep(model, alpha, resolution, rho, classes, data, val_data, epochs, weights, fine_tune, fine_tune_epochs,
          fine_tune_lr, latency_only, device, budget_ms, threads,
          runs, min_seconds, output, db, as_json) -> None:  # fmt: skip
    """Build (train), export int8, profile and evaluate every α × resolution; resumable.

    \b
    Examples:
      edgekit sweep --latency-only --alpha 0.25,0.5,0.75,1.0 --resolution 128,160,192,224
      edgekit sweep --data photos/ --epochs 10 --alpha 0.25,0.5 --rho 0.571,0.714 --budget-ms 20
      edgekit sweep --weights imagenet --data photos/ --val-data photos_val/ --alpha 0.25,0.5 \\
          --resolution 128,160 --budget-ms 20       # fine-tunes every cell from its own ImageNet weights
    """
    from edgekit.errors import UsageError
    from edgekit.pipeline.sweep import SweepConfig, run_sweep

    if rho and resolution:
        raise UsageError(f"give either --rho or --resolution, not both; received {rho!r} and {resolution!r}")
    if rho:
        rhos = _floats(rho, "--rho")
        bad = [r for r in rhos if not 0 < r <= 2]
        if bad:
            raise UsageError(f"rho must be in (0, 2]; received {bad[0]}")
        resolutions = tuple(dict.fromkeys(int(round(224 * r)) for r in rhos))
    else:
        resolutions = parse_int_list(resolution or "128,160,192,224", "--resolution")
    devices = tuple(dict.fromkeys(d.strip() for d in device.split(",") if d.strip())) or ("local",)
    cfg = SweepConfig(
        model=model,
        alphas=_floats(alpha, "--alpha"),
        resolutions=resolutions,
        classes=classes,
        devices=devices,
        data=data,
        val_data=val_data,
        epochs=epochs,
        weights=weights,
        fine_tune=fine_tune,
        fine_tune_epochs=fine_tune_epochs,
        fine_tune_lr=fine_tune_lr,
        latency_only=latency_only,
        budget_ms=budget_ms,
        threads=threads,
        runs=runs,
        min_seconds=min_seconds,
        output=output,
        db=db,
    )
    with progress_steps("sweep", quiet=as_json) as step:
        summary = run_sweep(cfg, progress=step)
    summary["report"] = _write_report(summary, cfg)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    from edgekit.cli import recording
    from edgekit.results.unrecorded import RecordOutcome

    lost = [RecordOutcome(**o) for o in summary.get("unrecorded", [])]
    if summary["failures"]:
        from edgekit.errors import PartialFailure

        recording.warn(lost)

        f = summary["failures"][0]
        raise PartialFailure(
            f"{len(summary['failures'])} configuration(s) failed (first: {f['model']}"
            f"{' on ' + f['device'] if f['device'] else ''}: {f['error']}); the others are recorded",
            hint="run the same sweep again to retry only what is missing",
        )
    recording.finish(lost)


def _write_report(summary: dict, cfg) -> str | None:
    """sweep.html beside the bundles: the report restricted to this sweep's runs."""
    from edgekit.bundle.atomic import write_text_atomic
    from edgekit.results.report import render_report
    from edgekit.results.report.compare import ReportOptions, build_report
    from edgekit.results.store import open_store

    if not summary["run_ids"]:
        return None
    with open_store(cfg.db) as store:
        data = build_report(
            store,
            ReportOptions(ids=tuple(summary["run_ids"]), budget_ms=cfg.budget_ms, title="edgekit sweep"),
        )
    path = Path(cfg.output) / "sweep.html"
    write_text_atomic(path, render_report(data, "html"))
    return str(path)


def _print_summary(s: dict) -> None:
    from rich.table import Table

    c = console()
    for cell in s.get("cells_skipped", []):
        c.print(f"[yellow]skipped α={cell['alpha']:g} {cell['resolution']} px:[/] {cell['reason']}", soft_wrap=True)
    for dev in s["pareto"]:
        cells = [g for g in s["grid"] if g["device"] == dev["device"]]
        res = sorted({g["resolution"] for g in cells})
        t = Table(title=f"p50 latency (ms) on {dev['device']}: α × resolution", title_justify="left")
        t.add_column("α \\ px")
        for r in res:
            t.add_column(str(r), justify="right")
        t.add_column("MACs (M) at each px", justify="right")
        for a in sorted({g["alpha"] for g in cells}):
            row = {g["resolution"]: g for g in cells if g["alpha"] == a}
            t.add_row(
                f"{a:g}",
                *(_cell(row.get(r)) for r in res),
                " / ".join(f"{row[r]['macs'] / 1e6:.0f}" if row.get(r, {}).get("macs") else "–" for r in res),
            )
        c.print(t)
        p = Table(
            title=f"Pareto front on {dev['device']} (ranked by {dev['ranked_by']})", title_justify="left"
        )
        for col in ("model", "p50 ms", "top-1", "MACs (M)", "params (M)", "size"):
            p.add_column(col, justify="left" if col == "model" else "right")
        for g in cells:
            if g.get("pareto"):
                p.add_row(
                    ("★ " if g["model"] == dev["best_within_budget"] else "") + g["model"],
                    f"{g['latency_ms']:.2f}",
                    f"{g['top1']:.1%}" if g.get("top1") is not None else "–",
                    f"{g['macs'] / 1e6:.0f}" if g.get("macs") else "–",
                    f"{g['params'] / 1e6:.2f}" if g.get("params") else "–",
                    f"{g['size_bytes'] / 1e6:.2f} MB" if g.get("size_bytes") else "–",
                )
        c.print(p)
        budget = f"within {s['budget_ms']:g} ms" if s["budget_ms"] else "overall"
        what = "most accurate" if dev["ranked_by"] == "top1" else "most MACs (no accuracy measured)"
        if dev["best_within_budget"]:
            b = dev["best"]
            c.print(f"[bold]{what} {budget} on {dev['device']}:[/] {b['model']} ({b['latency_ms']:.2f} ms)")
            if b.get("vs_reference_text"):
                c.print(f"[bold]vs reference:[/] {b['vs_reference_text']}", soft_wrap=True, highlight=False)
        else:
            c.print(f"[yellow]no model runs {budget} on {dev['device']}[/]")
    c.print(
        f"{s['done']} configurations measured, {s['skipped']} already recorded; {s['total_s']:.0f} s; db {s['db']}"
    )
    if s.get("report"):
        c.print(f"report: {s['report']}")


def _cell(g: dict | None) -> str:
    if not g or g.get("latency_ms") is None:
        return "–"
    acc = f" ({g['top1']:.0%})" if g.get("top1") is not None else ""
    return f"{g['latency_ms']:.2f}{acc}"
