"""Printing: JSON on stdout for machines, rich text for people, progress on stderr."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator

import click


def print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=_default))


def _default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


# Rich cuts everything to 80 columns when the stream is not a terminal; logs and CI output would lose
# model names (`mobilene…`). Off a terminal, lines are as wide as they need to be (up to this).
LOG_WIDTH = 1000


def _console(stream) -> object:
    from rich.console import Console

    wide = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(file=stream, highlight=False, width=LOG_WIDTH if wide else None)


def console():
    return _console(sys.stdout)


def err_console():
    return _console(sys.stderr)


@contextlib.contextmanager
def progress_steps(title: str, quiet: bool = False) -> Iterator:
    """A spinner with the current step on stderr; yields `update(message)`."""
    if quiet or not sys.stderr.isatty():
        steps = []

        def update(msg: str) -> None:
            steps.append(msg)
            if not quiet:
                click.echo(f"{title}: {msg}", err=True)

        yield update
        return
    from rich.status import Status

    with Status(f"{title}…", console=err_console()) as status:

        def update(msg: str) -> None:
            status.update(f"{title}: {msg}…")

        yield update


class _WarningHandler(logging.Handler):
    """edgekit's own warnings (lower layers log them; only the CLI prints), escaped: a device's text
    (paths, "[1/4]") must never be read as rich markup."""

    def emit(self, record: logging.LogRecord) -> None:
        from rich.markup import escape

        try:
            err_console().print(f"[yellow]{escape(record.getMessage())}[/]", highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


def install_warning_printer() -> None:
    """Print warnings logged under `edgekit.*` on stderr (once per process)."""
    root = logging.getLogger("edgekit")
    if not any(isinstance(h, _WarningHandler) for h in root.handlers):
        root.addHandler(_WarningHandler(logging.WARNING))
