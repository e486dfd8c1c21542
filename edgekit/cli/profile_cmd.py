"""`edgekit profile`: latency of a model or of every precision in a bundle, on this machine or a device."""

from __future__ import annotations

from typing import NamedTuple

import click

from edgekit.cli.options import (
    all_devices_option,
    db_option,
    device_option,
    json_option,
    parallel_option,
    parse_int_list,
    threads_option,
)


@click.command()
@click.argument("model_or_bundle")
@threads_option(several=True, help="Interpreter threads, comma list: 1,2,4.")
@click.option("--batch", default="1", show_default=True, help="Batch sizes, comma list: 1,4,8.")
@click.option("--runs", type=int, default=50, show_default=True, help="At least this many timed runs.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed runs first.")
@click.option(
    "--min-seconds", type=float, default=1.0, show_default=True, help="And time for at least this long."
)
@click.option(
    "--input",
    "input_kind",
    default="random",
    show_default=True,
    help="random, zeros, or a folder of real images.",
)
@click.option("--no-xnnpack", is_flag=True, help="Plain TFLite kernels instead of the XNNPACK delegate.")
@device_option()
@all_devices_option
@db_option
@parallel_option
@json_option
def profile(
    model_or_bundle, threads, batch, runs, warmup, min_seconds, input_kind, no_xnnpack, device, all_devices,
    db, parallel, as_json,
) -> None:  # fmt: skip
    """Latency per thread count and batch size (p50/p90/p99, images/s, init, memory).

    A bundle profiles every precision it holds and says which is fastest on this CPU, and why.

    \b
    Example:  edgekit profile edgekit-out/mobilenet_v1_050_160 --threads 1,2 --batch 1,4
    """
    from edgekit.cli.fleet import run_on_devices
    from edgekit.devices import jobs, resolve

    settings = jobs.ProfileSettings(
        threads=threads,
        batch=parse_int_list(batch, "--batch"),
        runs=runs,
        warmup=warmup,
        min_seconds=min_seconds,
        input=input_kind,
        xnnpack=not no_xnnpack,
    )
    refs = resolve.resolve_models(model_or_bundle, all_precisions=True)

    def job(target, step):
        if target.spec.kind == "adb":  # Android: LiteRT's benchmark_model on the phone
            from edgekit.devices.benchmark_model import profile_with_benchmark_model

            docs = [
                profile_with_benchmark_model(
                    target, r.path, threads=settings.threads, runs=settings.runs, warmup=settings.warmup,
                    min_seconds=settings.min_seconds, xnnpack=settings.xnnpack, precision=r.precision,
                    progress=step,
                )
                for r in refs
            ]  # fmt: skip
            return _Adb(docs)
        docs = jobs.profile(target, refs, settings, progress=step)
        rows = jobs.profile_rows(docs)
        return docs, rows, jobs.profile_vs_reference(refs, rows)

    def record(r):
        return None if isinstance(r, _Adb) else jobs.record_profile(r[0], r[1], refs, r[2], db=db)

    run_on_devices(
        device, all_devices, job, title="profile", as_json=as_json, max_parallel=parallel,
        to_json=lambda r: r.docs if isinstance(r, _Adb) else r[1],
        show=lambda r: print_benchmark(r.docs) if isinstance(r, _Adb) else _print(*r), record=record,
    )  # fmt: skip


class _Adb(NamedTuple):
    """benchmark_model documents from an Android device (their own shape: no percentiles)."""

    docs: list[dict]


def print_benchmark(docs: list[dict]) -> None:
    """A short table of benchmark_model results (mean latency: the tool prints no percentiles)."""
    from edgekit.cli.output import console

    c = console()
    for d in docs:
        dev = d["device"]["name"]
        for r in d["configurations"]:
            mem = r.get("memory_mb") or {}
            c.print(
                f"{dev}: {d['model']['file']} ({d['model'].get('precision') or '?'}) threads={r['threads']}: "
                f"mean {r['latency_ms']['mean']:.3f} ms (min {r['latency_ms']['min']:.3f}, "
                f"std {r['latency_ms']['std']:.3f}), {r['images_per_s']:.1f} img/s, init {r['init_ms']:.1f} ms"
                + (f", memory {mem['kind']} {mem['overall']:.1f} MB" if mem else "")
                + " [benchmark_model]"
            )


def _print(docs: list[dict], rows: list[dict], vs: dict | None = None) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from edgekit.cli.output import console

    c = console()
    env = docs[0]["environment"]
    rt = docs[0]["runtime"]
    cpu = env["cpu"]
    c.print(
        f"[bold]{escape(docs[0]['device']['name'])}[/]: {escape(cpu['model'])} ({cpu['cores']} cores, "
        f"{escape(str(env['os']))}), "
        f"{rt['name']} {rt['version']}, XNNPACK {'on' if rt['xnnpack'] else 'off'}"
    )
    emulated = [d["latency_note"] for d in docs if d.get("latency_note")]
    if emulated:  # qemu-user timings: what the emulator costs, not what the device can do
        c.print(
            f"[bold yellow]{emulated[0]}[/]: the times below show that it runs, not how fast the device is"
        )
    t = Table(
        show_header=True,
        box=box.SIMPLE,
        pad_edge=False,
        padding=(0, 1),
        caption="times in ms" + (" (emulated: not meaningful)" if emulated else ""),
    )
    for col in ("precision", "thr", "batch", "p50", "p90", "p99", "img/s", "init", "RSS MB"):
        t.add_column(col, justify="left" if col == "precision" else "right", no_wrap=True, min_width=len(col))
    for r in rows:
        if not r.get("supported"):
            t.add_row(r["precision"], str(r["threads"]), str(r["batch"]), "[red]n/a[/]", *[""] * 5)
            continue
        lat = r["latency_ms"]
        t.add_row(
            f"{r['precision']}{' *' if r.get('fastest') else ''}",
            str(r["threads"]),
            str(r["batch"]),
            f"{lat['p50']:.3f}",
            f"{lat['p90']:.3f}",
            f"{lat['p99']:.3f}",
            f"{r['images_per_s']:.0f}",
            f"{r['init_ms']:.1f}",
            f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "?",
        )
    c.print(t)
    for d in docs:
        m = d["model"]
        c.print(
            f"{m['precision']}: {m['file']} ({m['size_bytes'] / 1e6:.2f} MB, input {m['input']['dtype']})"
        )
    for r in rows:
        if not r.get("supported"):
            c.print(f"[yellow]batch {r['batch']}:[/] {r['error']}")
    best = [r for r in rows if r.get("fastest_note")]
    best.sort(key=lambda r: (r["batch"], r["latency_ms"]["p50"]))
    notes = [best[0]["fastest_note"]] if best else []
    if notes:
        c.print(f"[bold]fastest[/] (*): {notes[0]}")
    t0, t1 = env.get("temperature_c"), docs[-1]["environment_after"].get("temperature_c")
    if t0 is not None:
        c.print(
            f"CPU temperature {t0:.1f} °C before, {t1:.1f} °C after" if t1 is not None else f"{t0:.1f} °C"
        )
    from edgekit.cli.device_eval import print_vs_reference

    print_vs_reference(vs, docs[0]["device"]["name"])
