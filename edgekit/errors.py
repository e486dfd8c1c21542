"""Every user-facing failure is one of these classes; the CLI maps them to exit codes in one place.

A message says what was received and what to do about it, on one line.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The one exit-code table: the CLI, the device scripts (device_scripts/edgelib.py spells the same
    numbers; a test pins them) and the shell snippets run on devices all use these."""

    OK = 0
    INTERNAL = 1  # a bug: the traceback is printed
    USAGE = 2  # bad flags or values (click uses 2 as well)
    INPUT = 3  # missing/empty/corrupt data, image folders, labels
    MODEL = 4  # unreadable, corrupt or unsuitable model file
    VERIFY = 5  # a converted model failed verification (broken or too inaccurate)
    DEVICE = 6  # device unreachable, command failed on the device, timeouts
    HOSTKEY = 7  # SSH host key unknown or changed: refused
    DEPENDENCY = 8  # an optional package (TensorFlow, ONNX tools, ...) is missing
    PARTIAL = 9  # a fleet run where some devices failed (others' results kept)
    NOT_RECORDED = 10  # the result was printed, but the results database refused it (kept in a file)
    INTERRUPTED = 130  # Ctrl-C


class EdgekitError(Exception):
    """Base class: a user error with a one-line message and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    prefix = "error"  # how the CLI starts the line

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = _one_line(message)  # TFLite's own errors carry newlines: the user gets one line
        super().__init__(message)
        self.message = message
        self.hint = _one_line(hint) if hint else hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class UsageError(EdgekitError):
    exit_code = ExitCode.USAGE


class InputDataError(EdgekitError):
    exit_code = ExitCode.INPUT


class ModelFileError(EdgekitError):
    exit_code = ExitCode.MODEL


class VerificationError(EdgekitError):
    exit_code = ExitCode.VERIFY


class DeviceError(EdgekitError):
    exit_code = ExitCode.DEVICE


class HostKeyError(EdgekitError):
    exit_code = ExitCode.HOSTKEY


class DependencyError(EdgekitError):
    exit_code = ExitCode.DEPENDENCY


class PartialFailure(EdgekitError):
    exit_code = ExitCode.PARTIAL


class ResultNotRecorded(EdgekitError):
    """The result was printed (and kept in a file) but not recorded: a warning with an exit code of its own."""

    exit_code = ExitCode.NOT_RECORDED
    prefix = "warning"


def error_class(code: int) -> type[EdgekitError]:
    """The error class a (device script's, device shell's) exit code stands for; DeviceError otherwise."""
    for cls in (UsageError, InputDataError, ModelFileError, VerificationError, DeviceError, HostKeyError,
                DependencyError, PartialFailure):  # fmt: skip
        if int(cls.exit_code) == code:
            return cls
    return DeviceError


def describe_exit_codes() -> str:
    """The table as one line, for `edgekit --help`."""
    words = {ExitCode.OK: "ok", ExitCode.INTERNAL: "internal error", ExitCode.USAGE: "usage",
             ExitCode.INPUT: "input data", ExitCode.MODEL: "model file", ExitCode.VERIFY: "verification failed",
             ExitCode.DEVICE: "device", ExitCode.HOSTKEY: "SSH host key", ExitCode.DEPENDENCY: "missing dependency",
             ExitCode.PARTIAL: "partial fleet failure",
             ExitCode.NOT_RECORDED: "result not recorded (printed, and kept in a file)",
             ExitCode.INTERRUPTED: "interrupted"}  # fmt: skip
    return "Exit codes: " + ", ".join(f"{int(c)} {words[c]}" for c in ExitCode) + "."


def require_tensorflow():
    """Import TensorFlow lazily, or say how to install it."""
    try:
        import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DependencyError(
            f"TensorFlow is not installed ({exc.__class__.__name__}: {exc})",
            hint="install the desktop extra: pip install 'edgekit[tf]'",
        ) from exc
    return tf
