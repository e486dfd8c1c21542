"""Run one device script on a Target and bring its JSON result back (argv, streamed progress, errors).

The device scripts' exit codes are edgekit's own (edgekit.errors.ExitCode; device_scripts/edgelib.py
spells the same numbers, pinned by a test), so a device failure maps back to the same error class.
Warnings the scripts print go to the `edgekit.devices` logger: the CLI decides how they look.
"""

from __future__ import annotations

import json
import logging
import posixpath
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.devices.targets.base import CommandResult, Target
from edgekit.errors import DeviceError, ExitCode, error_class

Progress = Callable[[str], None]
log = logging.getLogger("edgekit.devices")

INTERRUPTED = int(ExitCode.INTERRUPTED)


@dataclass(frozen=True)
class RemotePaths:
    """Where things are on the target."""

    scripts: str  # folder holding the device scripts
    python: str  # interpreter that runs them
    scratch: str  # writable folder for outputs (logs), removed by cleanup()
    files: dict[str, str] = field(default_factory=dict)  # host path -> path on the target

    def on_target(self, host_path: str | Path) -> str:
        return self.files[str(host_path)]



def run_script(
    target: Target,
    paths: RemotePaths,
    script: str,
    args: list[str],
    *,
    progress: Progress | None = None,
    timeout: float | None = None,
    on_serving: Callable[[str], None] | None = None,
) -> dict:
    """Run one device script with --json; its result document, or the matching EdgekitError.
    `on_serving(url)`: the script's `serving: URL` line (the camera script's live view)."""
    argv = [paths.python, posixpath.join(paths.scripts, script), *args, "--json"]

    def on_line(line: str) -> None:
        if line.startswith("progress: "):
            if progress is not None:
                progress(line[len("progress: ") :])
        elif line.startswith("warning: "):
            log.warning("%s: %s", target.name, line)
        elif line.startswith("serving: ") and on_serving is not None:
            on_serving(line[len("serving: ") :].strip())

    result = target.run(argv, timeout=timeout, stream=on_line)
    return parse_result(result, script, target.name)



def parse_result(result: CommandResult, script: str, device: str) -> dict:
    rc = result.returncode
    if rc == INTERRUPTED:
        raise KeyboardInterrupt
    message = _error_line(result.stderr)
    if rc < 0 or (rc > 128 and rc != INTERRUPTED):
        num = -rc if rc < 0 else rc - 128
        try:
            name = signal.Signals(num).name
        except ValueError:
            name = f"signal {num}"
        raise DeviceError(
            f"{script} crashed on {device} ({name})",
            hint="the model or the interpreter on the device is broken; `edgekit profile` checks models first",
        )
    if rc != 0:
        cls = error_class(rc)
        text = message or _last_line(result.stderr) or "no message"
        raise cls(text if device == "local" else f"on {device}: {text}")
    for line in reversed(result.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict) and "schema_version" in doc:
                return doc
    raise DeviceError(
        f"{script} on {device} printed no JSON result: {_last_line(result.stderr) or 'no output'}"
    )



def _error_line(stderr: str) -> str | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith("error: "):
            return line[len("error: ") :].strip()
    return None



def _last_line(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else None
