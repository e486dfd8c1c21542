"""One path for every device command: a single device is a fleet of one.

`run_on_devices` resolves `--device NAME` / `--device a,b` / `--all`, runs `job(target, progress)` on
each (edgekit.devices.fleet: bounded parallelism, every outcome kept) and prints. One device keeps the
one-device output (its result as it is); several get a section (or a JSON entry) each, and exit 9 when
some failed while the others' results are printed and kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from edgekit.cli.output import print_json, progress_steps
from edgekit.devices.fleet import DEFAULT_PARALLEL, Outcome, raise_for_outcomes, run_fleet
from edgekit.errors import EdgekitError


def is_fleet(device: str | None, all_devices: bool = False) -> bool:
    """`--device a,b`, `--device tag:NAME` or `--all`: several devices (a single name keeps the
    one-device output)."""
    return bool(all_devices or (device and ("," in device or device.strip().startswith("tag:"))))


def rerun_hint(failed: list[str], argv: list[str] | None = None) -> str:
    """The same command line, for the failed devices only (what succeeded is not redone: results are
    recorded as they arrive and a deploy already on a device is skipped)."""
    import shlex
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--device", "-d"):
            skip = True
        elif a == "--all" or a.startswith("--device="):
            continue
        else:
            out.append(a)
    return shlex.join(["edgekit", *out, "--device", ",".join(failed)])


def summary(outcomes: list[Outcome], wall_s: float) -> dict:
    failed = [o for o in outcomes if not o.ok]
    return {
        "devices": len(outcomes),
        "ok": len(outcomes) - len(failed),
        "failed": {o.device: o.error for o in failed},
        "wall_s": round(wall_s, 2),
        "rerun": rerun_hint([o.device for o in failed]) if failed else None,
    }


def print_summary(s: dict) -> None:
    """One line per failed device, then the line to re-run them (stderr: stdout may be JSON)."""
    click.echo(f"\nfleet: {s['ok']} of {s['devices']} devices ok in {s['wall_s']:.1f} s", err=True)
    for name, error in s["failed"].items():
        click.echo(f"  {name}: {error}", err=True)
    if s["rerun"]:
        click.echo(f"re-run the failed ones: {s['rerun']}", err=True)


def run_on_devices(
    device: str | None,
    all_devices: bool,
    job: Callable,
    *,
    title: str,
    as_json: bool,
    show: Callable[[Any], None],
    to_json: Callable[[Any], Any] = lambda r: r,
    record: Callable[[Any], Any] | None = None,
    max_parallel: int = DEFAULT_PARALLEL,
) -> list[Outcome]:
    """Run `job(target, progress)` on the devices, print every outcome and raise for the failed ones.
    One device's result is recorded after it is printed; a fleet's are recorded as each device
    finishes (a database failure never costs a result: cli/recording.py keeps it in a file)."""
    from edgekit.cli import recording
    from edgekit.devices import inventory, resolve

    several = is_fleet(device, all_devices)

    def one(name):
        target = resolve.resolve_device(name)
        try:
            if several:
                return job(target, lambda msg: None if as_json else click.echo(f"{target.name}: {msg}", err=True))
            with progress_steps(f"{title} on {target.name}", quiet=as_json) as step:
                return job(target, step)
        finally:
            target.close()

    recorded: list = []

    def done(o: Outcome) -> None:
        if several and not as_json:
            click.echo(f"{o.device}: {'done' if o.ok else 'FAILED: ' + str(o.error)}", err=True)
        if several and o.ok and record:  # as it arrives; a refused record is kept in a file, never lost
            recorded.append(record(o.result))

    if not several:  # the device's own error (and exit code) propagates as it is
        result = one(device)
        print_json(to_json(result)) if as_json else show(result)
        recording.finish([record(result)] if record else [])
        return [Outcome(device or "local", True, result=result)]
    names = [s.name for s in inventory.resolve(device, all_devices)]
    t0 = time.perf_counter()
    outcomes = run_fleet(names, one, max_parallel=max_parallel, on_done=done, name=lambda n: n or "local")
    s = summary(outcomes, time.perf_counter() - t0)
    if as_json:
        print_json(
            {
                "schema_version": 1,
                "summary": s,
                "devices": [
                    Outcome(o.device, o.ok, to_json(o.result), o.error, o.exit_code).to_dict()
                    if o.ok
                    else o.to_dict()
                    for o in outcomes
                ],
            }
        )
    else:
        for o in outcomes:
            click.echo(f"\n== {o.device} ==")
            if o.ok:
                show(o.result)
            else:
                click.echo(f"failed: {o.error}")
    print_summary(s)
    try:
        raise_for_outcomes(outcomes)
    except EdgekitError:
        recording.warn(recorded)  # the devices' failure decides the exit code; the warning still shows
        raise
    recording.finish(recorded)
    return outcomes
