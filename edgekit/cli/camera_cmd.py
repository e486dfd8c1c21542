"""`edgekit camera`: classify a video file, stream or camera with the device's camera script."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.fleet import is_fleet
from edgekit.cli.options import (
    all_devices_option,
    db_option,
    device_option,
    json_option,
    labels_option,
    parallel_option,
    threads_option,
)


@click.command()
@click.argument("model_or_bundle")
@click.option("--source", default=None, help="Video file or stream URL (rtsp://...).")
@click.option("--camera", "camera_index", type=int, default=None, help="Camera index on the device (V4L2).")
@click.option("--picamera2", is_flag=True, help="Raspberry Pi camera through picamera2 (on the device).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@click.option(
    "--log", "log_file", type=click.Path(dir_okay=False), default=None, help="Per-frame JSON lines."
)
@threads_option(default=None)
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Labels per frame.")
@labels_option("labels.txt (default: the bundle's).")
@click.option("--realtime", is_flag=True, help="Pace a video file like a live camera (frames may drop).")
@click.option(
    "--preview", is_flag=True,
    help="Live view in the browser here: the device serves its loopback only, SSH devices through an ssh -L tunnel.",
)
@click.option(
    "--preview-port", type=click.IntRange(0, 65535), default=8000, show_default=True,
    help="Local port of --preview (0: any free port).",
)
@device_option()
@all_devices_option
@db_option
@parallel_option
@json_option
def camera(
    model_or_bundle, source, camera_index, picamera2, max_frames, log_file, threads, top_k, labels_file, realtime,
    preview, preview_port, device, all_devices, db, parallel, as_json,
) -> None:  # fmt: skip
    """Classify frames: every frame of a video in order, or the newest frame of a live camera.

    \b
    Example:  edgekit camera edgekit-out/mobilenet_v1_050_160 --source clip.avi --log frames.jsonl
              edgekit camera BUNDLE --device pi --picamera2 --preview   (open the printed URL)
    """
    from edgekit.cli import recording
    from edgekit.cli.fleet import run_on_devices
    from edgekit.devices import jobs, resolve
    from edgekit.errors import UsageError
    from edgekit.results.comparison import as_dict, for_camera

    if sum(x is not None and x is not False for x in (source, camera_index, picamera2 or None)) > 1:
        raise UsageError("give one of --source, --camera or --picamera2")
    if source is None and camera_index is None and not picamera2:
        raise UsageError("give --source VIDEO_OR_URL or --camera INDEX (or --picamera2)")
    settings = jobs.CameraSettings(
        source=source,
        camera=camera_index,
        picamera2=picamera2,
        threads=threads,
        top_k=top_k,
        max_frames=max_frames,
        realtime=realtime,
        labels=labels_file,
    )
    several = is_fleet(device, all_devices)
    if preview and several:
        raise UsageError("--preview shows one device's camera: give one --device")
    if preview:
        from edgekit.devices.preview import check_local_port

        check_local_port(preview_port)  # before anything starts
    (ref,) = resolve.resolve_models(model_or_bundle, all_precisions=False)

    def job(target, step):
        log = log_file
        if log_file and several:  # each device's log gets the device's name
            log = str(Path(log_file).with_suffix(f".{target.name}{Path(log_file).suffix}"))
        if preview:
            doc = _with_preview(target, ref, settings, preview_port, log=log, progress=step)
        else:
            doc = jobs.camera(target, ref, settings, log=log, progress=step)
        doc["vs_reference"] = as_dict(for_camera(ref.bundle, doc))
        return doc

    def record(doc):
        return recording.record("camera", doc, manifest=ref.manifest, device=doc["device"], db=db)

    run_on_devices(
        device, all_devices, job, title="camera", as_json=as_json, show=_print, max_parallel=parallel,
        record=record,
    )


def _with_preview(target, ref, settings, port: int, **kwargs) -> dict:
    """The camera job with its live view reachable here; the URL printed once it serves."""
    from dataclasses import replace

    from rich.markup import escape

    from edgekit.cli.output import err_console
    from edgekit.devices import jobs
    from edgekit.devices.preview import Preview

    def on_url(url: str) -> None:
        err_console().print(f"live view: [bold]{url}[/] (Ctrl-C ends)", highlight=False, soft_wrap=True)

    def on_error(message: str) -> None:
        err_console().print(f"[yellow]{escape(message)}[/]", highlight=False, soft_wrap=True)

    view = Preview(target, port, on_url=on_url, on_error=on_error)
    try:
        return jobs.camera(target, ref, replace(settings, serve=view.serve_arg()), on_serving=view.on_serving, **kwargs)
    finally:
        view.close()


def _print(doc: dict) -> None:
    from rich.markup import escape

    from edgekit.cli.output import console

    c = console()
    lat = doc["latency_ms"]
    src = doc["source"]
    c.print(
        f"[bold]{doc['frames']}[/] frames from {src['name']} on {doc['device']['name']} "
        f"({doc['dropped']} dropped), {doc['fps'] or 0:.1f} FPS, ended: {doc['end_reason']}"
    )
    if lat:
        c.print(
            f"inference p50 {lat['p50']:.2f} ms  p90 {lat['p90']:.2f} ms  p99 {lat['p99']:.2f} ms "
            f"(runtime {doc['runtime']['name']} {doc['runtime']['version']})"
        )
    if doc.get("latency_note"):
        c.print(f"[yellow]note:[/] {escape(doc['latency_note'])}", soft_wrap=True)
    total = max(1, doc["frames"])
    for label, n in list(doc["top1_distribution"].items())[:10]:
        c.print(f"  {label:<20} {n:>6}  {n / total:.0%}")
    if doc.get("log"):
        c.print(f"log: {doc['log']}")
    from edgekit.cli.device_eval import print_vs_reference

    print_vs_reference(doc.get("vs_reference"), doc["device"]["name"])
