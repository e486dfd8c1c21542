"""`edgekit runs`: read the results history back (list, show, export as CSV)."""

from __future__ import annotations

import click

from edgekit.cli.options import db_option, device_option, json_option, output_option
from edgekit.cli.output import console, print_json

# Columns `runs list` prints, in order: (column, header, format)
_LIST_COLUMNS = (
    ("id", "id", "{}"),
    ("created_at", "time (UTC)", "{:.16}"),
    ("kind", "kind", "{}"),
    ("model_name", "model", "{}"),
    ("precision", "precision", "{}"),
    ("device", "device", "{}"),
    ("threads", "threads", "{}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("images_per_s", "img/s", "{:.1f}"),
    ("top1", "top-1", "{:.1%}"),
    ("agreement", "agree", "{:.1%}"),
    ("bundle_id", "bundle", "{:.12}"),
)


def _filter_options(f):
    for opt in reversed(
        [
            click.option("--kind", default=None, help="export, eval, profile, camera (comma list)."),
            click.option("--model", "-m", default=None, help="Model variant, family or glob (mobilenet*)."),
            device_option(help="Device name(s), comma list."),
            click.option("--since", default=None, help="Age (30m, 24h, 7d) or ISO date (2026-05-01)."),
            click.option("--bundle", default=None, help="Bundle id prefix."),
        ]
    ):
        f = opt(f)
    return f


def _run_filter(kind, model, device, since, bundle, limit=None):
    from edgekit.results.filters import RunFilter

    return RunFilter(kind=kind, model=model, device=device, since=since, bundle=bundle, limit=limit)


@click.group()
def runs() -> None:
    """Recorded exports, evals, profiles and camera runs (the results database)."""


@runs.command("list")
@_filter_options
@click.option("--limit", "-n", type=int, default=50, show_default=True, help="Newest N runs (0 = all).")
@db_option
@json_option
def list_(kind, model, device, since, bundle, limit, db, as_json) -> None:
    """List runs, newest first."""
    from edgekit.results.store import open_store

    if limit < 0:
        raise click.BadParameter(f"must be 0 or more; received {limit}", param_hint="--limit")
    with open_store(db, create=False) as store:
        rows = store.query(_run_filter(kind, model, device, since, bundle, limit or None))
        path = store.path
    if as_json:
        print_json({"schema_version": 1, "db": str(path), "runs": rows})
        return
    if not rows:
        click.echo(f"no runs match in {path}")
        return
    from rich.table import Table

    t = Table(title=str(path), title_justify="left")
    for _, header, _ in _LIST_COLUMNS:
        t.add_column(
            header,
            justify="right" if header in ("id", "threads", "p50 ms", "img/s") else "left",
            no_wrap=True,
        )
    for r in rows:
        t.add_row(*(_fmt(r.get(col), fmt) for col, _, fmt in _LIST_COLUMNS))
    _wide_console().print(t)


def _wide_console():
    """Piped output gets the whole table (rich would squeeze it into 80 columns)."""
    import sys

    from rich.console import Console

    return console() if sys.stdout.isatty() else Console(highlight=False, width=200)


def _fmt(v, fmt: str) -> str:
    if v is None or v == "":
        return "–"
    if fmt == "{:.16}":  # ISO time to the minute, readable
        return str(v)[:16].replace("T", " ")
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


@runs.command("show")
@click.argument("run_id", type=int)
@db_option
@json_option
def show(run_id, db, as_json) -> None:
    """Everything recorded for one run."""
    from edgekit.results.store import open_store

    with open_store(db, create=False) as store:
        run = store.get(run_id)
    if as_json:
        print_json({"schema_version": 1, **run})
        return
    from rich.table import Table

    c = console()
    t = Table(show_header=False, title=f"run {run_id}", title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    for k, v in run.items():
        if k in ("result", "manifest", "device_info", "measurements") or v is None:
            continue
        t.add_row(k, str(v))
    c.print(t)
    if run["measurements"]:
        m = Table(title="measurements", title_justify="left")
        cols = (
            "precision",
            "threads",
            "batch",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "images_per_s",
            "peak_rss_bytes",
        )
        for col in cols:
            m.add_column(col)
        for row in run["measurements"]:
            m.add_row(
                *(_fmt(row.get(col), "{:.3g}" if col.endswith(("_ms", "_s")) else "{}") for col in cols)
            )
        c.print(m)
    c.print(f"full JSON: edgekit runs show {run_id} --json")


@runs.command("export")
@_filter_options
@click.option("--csv", "as_csv", is_flag=True, default=True, help="Comma-separated values (the default).")
@output_option(type=click.Path(dir_okay=False), help="File (default: stdout).")
@click.option(
    "--measurements", is_flag=True, help="One row per profiled setting (threads × batch) instead of per run."
)
@db_option
def export_(kind, model, device, since, bundle, as_csv, output, measurements, db) -> None:
    """Write runs as CSV (one row per run, or per profiled setting with --measurements)."""
    import csv
    import io

    from edgekit.results.records import MEASUREMENT_COLUMNS
    from edgekit.results.store import SUMMARY_COLUMNS, open_store

    with open_store(db, create=False) as store:
        rows = store.query(_run_filter(kind, model, device, since, bundle))[::-1]  # oldest first
        if measurements:
            per_run = store.measurements([r["id"] for r in rows])
            keep = ("id", "created_at", "kind", "model_name", "bundle_id", "device", "interpreter")
            rows = [
                {**{k: r[k] for k in keep}, **m.as_dict()}
                for r in rows
                for m in per_run.get(r["id"], [])
            ]
            header = [*keep, *MEASUREMENT_COLUMNS]
        else:
            header = list(SUMMARY_COLUMNS)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    if output:
        from pathlib import Path

        from edgekit.bundle.atomic import write_text_atomic

        write_text_atomic(Path(output), buf.getvalue())
        click.echo(f"{len(rows)} rows written to {output}", err=True)
    else:
        click.echo(buf.getvalue(), nl=False)


@runs.command("info")
@db_option
@json_option
def info(db, as_json) -> None:
    """Where the database is, its schema version and how many runs of each kind it holds."""
    from edgekit.results.store import open_store, resolve_db_path

    path = resolve_db_path(db)
    exists = path is not None and path.is_file()
    data = {"schema_version": 1, "db": str(path) if path else None, "exists": exists}
    if exists:
        with open_store(db, create=False) as store:
            data.update(db_schema_version=store.schema_version(), runs=store.count())
    if as_json:
        print_json(data)
        return
    click.echo(f"database: {data['db'] or 'off (EDGEKIT_DB=off)'}")
    if exists:
        click.echo(f"schema version: {data['db_schema_version']}")
        for k, n in sorted(data["runs"].items()):
            click.echo(f"  {k}: {n}")
    else:
        click.echo("  (not created yet: it appears with the first export, eval or profile)")


@runs.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@db_option
@json_option
def import_(files, db, as_json) -> None:
    """Record results a failing database could not take (kept under EDGEKIT_HOME/unrecorded/).

    Each file is recorded with its original time, then removed.
    """
    from edgekit.results.unrecorded import import_kept

    ids = [import_kept(f, db) for f in files]
    if as_json:
        print_json({"schema_version": 1, "imported": [{"file": f, "id": i} for f, i in zip(files, ids, strict=True)]})
        return
    for f, i in zip(files, ids, strict=True):
        click.echo(f"recorded {f} as run {i}")
