"""`edgekit models`: the zoo with params and MACs computed from the built graphs."""

from __future__ import annotations

import click

from edgekit.cli.options import json_option, model_options
from edgekit.cli.output import console, print_json, progress_steps


@click.command()
@model_options
@json_option
def models(model, alpha, rho, resolution, classes, shortcut, as_json) -> None:
    """List model families and variants with parameters and multiply-adds.

    Without options it lists the standard variants at 1000 classes (the papers' tables). With any of
    --alpha/--rho/--resolution/--classes/--shortcut it counts that one configuration of --model.
    """
    from edgekit.models import families, resolve_config

    one = any(v is not None for v in (alpha, rho, resolution, classes, shortcut))
    if one:
        configs = [
            resolve_config(
                model, alpha=alpha, rho=rho, resolution=resolution, classes=classes, shortcut=shortcut
            )
        ]
    else:
        configs = [c for fam in families() for c in fam.standard_variants]
    with progress_steps("counting", quiet=as_json) as step:
        rows = [_describe(c, step) for c in configs]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="edgekit model zoo (counts from the built Keras graphs)")
    for col in ("name", "family", "alpha", "resolution", "classes", "shortcut", "params", "MACs"):
        table.add_column(
            col, justify="right" if col in ("params", "MACs", "resolution", "classes") else "left"
        )
    for r in rows:
        table.add_row(
            r["name"],
            r["family"],
            "" if r["alpha"] is None else f"{r['alpha']:g}",
            str(r["resolution"]),
            str(r["classes"]),
            r["shortcut"] or "",
            f"{r['params'] / 1e6:.2f}M",
            f"{r['macs'] / 1e6:.0f}M",
        )
    out = console()
    out.print(table)
    out.print(
        "families: "
        + "; ".join(f"[bold]{f.name}[/] ({', '.join(f.aliases)}): {f.description}" for f in families())
    )


def _describe(cfg, step) -> dict:
    from edgekit.models import build_model, variant_name
    from edgekit.models.counting import count_macs, count_params

    name = variant_name(cfg)
    step(name)
    model = build_model(cfg, seed=None)
    row = {
        "name": name,
        "family": cfg.family,
        "alpha": cfg.alpha,
        "resolution": cfg.resolution,
        "classes": cfg.classes,
        "shortcut": cfg.shortcut,
        "params": count_params(model),
        "macs": count_macs(model),
    }
    import keras

    keras.backend.clear_session()
    return row
