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

from edgekit.errors import EdgekitError, ExitCode, PartialFailure

DEFAULT_PARALLEL = 8  # devices at once: each is one ssh process, mostly waiting on its device


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
    specs: list,
    job: Callable[[Any], Any],
    *,
    max_parallel: int = DEFAULT_PARALLEL,
    on_done: Callable[[Outcome], None] | None = None,
    name: Callable[[Any], str] = lambda spec: spec.name,
) -> list[Outcome]:
    """`job(spec)` for every device (a DeviceSpec, or whatever `name` names), at most `max_parallel` at a
    time; outcomes in the given order."""
    lock = threading.Lock()

    def one(spec) -> Outcome:
        try:
            out = Outcome(name(spec), True, result=job(spec))
        except EdgekitError as exc:
            out = Outcome(name(spec), False, error=str(exc), exit_code=int(exc.exit_code))
        except Exception as exc:  # a bug must not take the other devices down with it
            out = Outcome(
                name(spec),
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
