"""`edgekit report`: compare recorded runs and write a self-contained HTML (or Markdown) report."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import db_option, device_option, json_option, output_option
from edgekit.cli.output import print_json


@click.command()
@click.option("--model", "-m", default=None, help="Model variant, family or glob (mobilenet*).")
@device_option(help="Device name(s), comma list.")
@click.option("--since", default=None, help="Age (30m, 24h, 7d) or ISO date (2026-05-01).")
@click.option("--run", "run_id", type=int, default=None, help="Eval run whose confusion matrix is shown.")
@click.option(
    "--budget-ms", type=float, default=None, help="Name the most accurate model within this latency."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md"]),
    default=None,
    help="html (default; or from the -o suffix) or md (Markdown for pull requests).",
)
@output_option(type=click.Path(dir_okay=False), help="Output file.")
@click.option("--title", default="edgekit report", show_default=True, help="Report title.")
@db_option
@json_option
def report(model, device, since, run_id, budget_ms, fmt, output, title, db, as_json) -> None:
    """Tables, latency distributions, accuracy-vs-latency Pareto plot, confusion matrix, environments.

    \b
    Examples:
      edgekit report -o report.html
      edgekit report --model mobilenet --device pi --since 7d --format md > report.md
    """
    from edgekit.bundle.atomic import write_text_atomic
    from edgekit.results.report import render_report
    from edgekit.results.report.compare import ReportOptions, build_report
    from edgekit.results.store import open_store

    if budget_ms is not None and budget_ms <= 0:
        raise click.BadParameter(f"must be positive; received {budget_ms}", param_hint="--budget-ms")
    if fmt is None:
        fmt = "md" if output and Path(output).suffix.lower() in (".md", ".markdown") else "html"
    opts = ReportOptions(
        model=model, device=device, since=since, run_id=run_id, budget_ms=budget_ms, title=title
    )
    with open_store(db, create=False) as store:
        data = build_report(store, opts)
    if as_json:
        print_json(data)
        return
    text = render_report(data, fmt)
    if output is None and fmt == "md":
        click.echo(text)
        return
    out = Path(output or "edgekit-report.html")
    write_text_atomic(out, text)
    n = sum(len(m["rows"]) for m in data["models"])
    click.echo(f"report written: {out} ({len(data['models'])} models, {n} device results)")
    for line in data.get("summary", []):  # each device result against the desktop reference, one line
        click.echo(line["text"])
