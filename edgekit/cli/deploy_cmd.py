"""`edgekit deploy`: copy a bundle (or a bare .tflite) and the device scripts to one or more devices."""

from __future__ import annotations

import click

from edgekit.cli.options import device_option, json_option, parallel_option


@click.command()
@click.argument("bundle_or_tflite", type=click.Path(exists=True))
@device_option()
@click.option("--all", "all_", is_flag=True, help="Every device in the inventory.")
@parallel_option
@click.option(
    "--timeout", type=float, default=600, show_default=True, help="Seconds allowed for the transfer."
)
@click.option("--config", type=click.Path(dir_okay=False), default=None, help="Device inventory file.")
@json_option
def deploy(bundle_or_tflite, device, all_, parallel, timeout, config, as_json) -> None:
    """Copy BUNDLE_OR_TFLITE to DEVICE:WORKDIR/<id12>/, verify checksums there, switch `current`.

    Re-deploying the same bundle transfers nothing; an interrupted deploy leaves the previous one
    in place.

    \b
    Example:  edgekit deploy edgekit-out/mobilenet_v1_025_128 --device pi
    """
    import tempfile
    import time

    from edgekit.cli.fleet import print_summary, summary
    from edgekit.cli.output import print_json
    from edgekit.devices import fleet, inventory
    from edgekit.devices.deploy import deploy as deploy_bundle
    from edgekit.devices.deploy import plan, resolve_bundle
    from edgekit.devices.targets.base import make_target
    from edgekit.errors import UsageError

    if not device and not all_:
        raise UsageError("name the device(s) with --device NAME[,NAME...] or pass --all")
    specs = inventory.resolve(device, all_, config)
    bad = [s.name for s in specs if s.kind != "ssh"]
    if bad:
        raise UsageError(
            f"`edgekit deploy` copies to SSH devices; {', '.join(bad)} are not",
            hint="local runs use the bundle where it is; adb devices are pushed to by profile itself",
        )
    with tempfile.TemporaryDirectory(prefix="edgekit-deploy-") as scratch:
        bundle = resolve_bundle(bundle_or_tflite, scratch)
        plan(bundle)  # refuse a damaged bundle once, before any connection

        def job(spec):
            target = make_target(spec)
            try:
                return deploy_bundle(
                    target,
                    bundle,
                    timeout=timeout,
                    progress=lambda m: None if as_json else click.echo(f"{spec.name}: {m}", err=True),
                ).to_dict()
            finally:
                target.close()

        def done(o):
            if not as_json:
                if o.ok:
                    r = o.result
                    if r["skipped"]:
                        what = "already there, verified on the device, nothing sent"
                    elif r["repaired"]:
                        what = (
                            f"repaired {len(r['repaired'])} file(s) that differed on the device: "
                            f"{', '.join(r['repaired'])}; {r['transferred_bytes'] / 1e6:.2f} MB sent"
                        )
                    else:
                        what = f"{r['transferred_bytes'] / 1e6:.2f} MB sent"
                    click.echo(f"{o.device}: current -> {r['root']} ({what})")
                elif len(specs) > 1:  # one device: its error line says it (once)
                    click.echo(f"{o.device}: FAILED: {o.error}")

        t0 = time.perf_counter()
        outcomes = fleet.run_fleet(specs, job, max_parallel=parallel, on_done=done)
    s = summary(outcomes, time.perf_counter() - t0)
    if as_json:
        print_json(
            {
                "schema_version": 1,
                "bundle": str(bundle_or_tflite),
                "summary": s,
                "devices": [o.to_dict() for o in outcomes],
            }
        )
    elif len(outcomes) > 1:
        print_summary(s)
    fleet.raise_for_outcomes(outcomes)
