"""Printing: JSON on stdout for machines, rich text for people, progress on stderr."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator

import click


def print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=_default))


def _default(o):
    try:
        import numpy as np  # noqa: PLC0415

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


def console():
    from rich.console import Console  # noqa: PLC0415

    return Console(highlight=False)


def err_console():
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=True, highlight=False)


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
    from rich.status import Status  # noqa: PLC0415

    with Status(f"{title}…", console=err_console()) as status:

        def update(msg: str) -> None:
            status.update(f"{title}: {msg}…")

        yield update
