"""Script plumbing: exit codes, one-line errors, progress, JSON out.

Part of edgelib (see its docstring): numpy and the standard library only; never edgekit.
"""

from __future__ import annotations

import json
import sys

import numpy as np

# --------------------------------------------------------------------------- script plumbing
# Exit codes mirror edgekit.errors.ExitCode, so the desktop maps a device failure to the same code.

EXIT_USAGE, EXIT_INPUT, EXIT_MODEL, EXIT_DEVICE, EXIT_DEPENDENCY, EXIT_INTERRUPTED = 2, 3, 4, 6, 8, 130


class ScriptError(Exception):
    """A user-facing failure of a device script: one line on stderr and an exit code."""

    exit_code = 1


class UsageFailure(ScriptError):
    exit_code = EXIT_USAGE


class InputFailure(ScriptError):
    exit_code = EXIT_INPUT


class ModelFailure(ScriptError):
    exit_code = EXIT_MODEL


class DeviceFailure(ScriptError):
    exit_code = EXIT_DEVICE


class DependencyFailure(ScriptError):
    exit_code = EXIT_DEPENDENCY


def run_main(main, argv=None) -> int:
    """Run a script's main(argv): ScriptError -> `error: ...` line + its exit code, Ctrl-C -> 130."""
    try:
        return int(main(argv) or 0)
    except ScriptError as exc:
        _stderr_line(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _stderr_line("error: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


def _stderr_line(text: str) -> None:
    try:
        sys.stderr.write(text.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def progress(message: str) -> None:
    """Progress for the desktop: it streams stderr lines that start with `progress: `."""
    _stderr_line(f"progress: {message}")


def warn(message: str) -> None:
    _stderr_line(f"warning: {message}")


def json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def emit_json(doc) -> None:
    """The result document: one line on stdout (the desktop takes the last JSON line)."""
    sys.stdout.write(json.dumps(doc, separators=(",", ":"), default=json_default) + "\n")
    sys.stdout.flush()
