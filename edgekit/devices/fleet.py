"""Run one job on several devices at once: bounded parallelism, every outcome kept.

One unreachable or failing device becomes a failed outcome with its one-line message; the others
run to the end and keep their results. The exit code is 0 when all succeed, the device's own code
when the only device fails, and PARTIAL (9) when some of several fail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from edgekit.devices.targets.base import DeviceSpec
from edgekit.errors import EdgekitError, ExitCode, PartialFailure

DEFAULT_PARALLEL = 4  # SSH connections at once: enough for a small fleet, gentle on a laptop's uplink


@dataclass(frozen=True)
class Outcome:
    device: str
    ok: bool
    result: Any = None
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict:
        d = {"device": self.device, "ok": self.ok}
        if self.ok:
            d["result"] = self.result
        else:
            d.update(error=self.error, exit_code=self.exit_code)
        return d


def run_fleet(
    specs: list[DeviceSpec],
    job: Callable[[DeviceSpec], Any],
    *,
    max_parallel: int = DEFAULT_PARALLEL,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """`job(spec)` for every device, at most `max_parallel` at a time; outcomes in the given order."""
    lock = threading.Lock()

    def one(spec: DeviceSpec) -> Outcome:
        try:
            out = Outcome(spec.name, True, result=job(spec))
        except EdgekitError as exc:
            out = Outcome(spec.name, False, error=str(exc), exit_code=int(exc.exit_code))
        except Exception as exc:  # a bug must not take the other devices down with it
            out = Outcome(
                spec.name,
                False,
                error=f"internal error: {exc.__class__.__name__}: {exc}",
                exit_code=int(ExitCode.INTERNAL),
            )
        if on_done is not None:
            with lock:
                on_done(out)
        return out

    if len(specs) == 1:
        return [one(specs[0])]
    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(specs)))) as pool:
        return list(pool.map(one, specs))


def raise_for_outcomes(outcomes: list[Outcome]) -> None:
    """Raise the right error for failed outcomes (after the caller has printed what succeeded)."""
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return
    if len(outcomes) == 1:
        exc = EdgekitError(failed[0].error or "failed")
        exc.exit_code = ExitCode(failed[0].exit_code)
        raise exc
    names = ", ".join(f"{o.device} ({o.error})" for o in failed)
    raise PartialFailure(f"{len(failed)} of {len(outcomes)} devices failed: {names}")


# --------------------------------------------------------------------------- the commands' side


def is_fleet(device: str | None, all_devices: bool = False) -> bool:
    """`--device a,b` or `--all`: run on several devices (a single name keeps the one-device output)."""
    return bool(all_devices or (device and "," in device))


def run_cli_fleet(
    device: str | None,
    all_devices: bool,
    job: Callable,
    *,
    as_json: bool,
    to_json: Callable[[Any], Any],
    show: Callable[[Any], None],
    max_parallel: int = DEFAULT_PARALLEL,
) -> list[Outcome]:
    """Run `job(target, progress)` on each device in parallel, print every outcome, then raise
    PartialFailure (exit 9) if some failed: the successful devices' results are printed and kept."""
    import click  # noqa: PLC0415

    from edgekit.cli.output import print_json  # noqa: PLC0415
    from edgekit.devices import inventory, runner  # noqa: PLC0415

    specs = inventory.resolve(device, all_devices)

    def one(spec: DeviceSpec):
        target = runner.resolve_device(spec.name)
        try:
            return job(target, lambda msg: None if as_json else click.echo(f"{spec.name}: {msg}", err=True))
        finally:
            target.close()

    def done(o: Outcome) -> None:
        if not as_json:
            click.echo(f"{o.device}: {'done' if o.ok else 'FAILED: ' + str(o.error)}", err=True)

    outcomes = run_fleet(specs, one, max_parallel=max_parallel, on_done=done)
    if as_json:
        print_json(
            {
                "schema_version": 1,
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
    raise_for_outcomes(outcomes)
    return outcomes
