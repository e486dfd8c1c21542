"""Record a result once it has been printed: a database that refuses it is a warning (exit 10) and a
file that keeps the result (edgekit.results.unrecorded), never a lost measurement."""

from __future__ import annotations

from collections.abc import Iterable

import click

from edgekit.errors import ResultNotRecorded
from edgekit.results.unrecorded import RecordOutcome, record_or_keep


def record(kind: str, result, *, manifest: dict | None = None, device: dict | None = None, db=None) -> RecordOutcome:
    return record_or_keep(kind, result, manifest=manifest, device=device, db=db)


def _failure(outcomes: Iterable[RecordOutcome | None]) -> ResultNotRecorded | None:
    failed = [o for o in outcomes if o is not None and not o.ok]
    if not failed:
        return None
    o = failed[0]
    kept = [f.kept for f in failed if f.kept]
    where = f"kept in {', '.join(kept)}" if kept else "and it could not be written to a file either"
    what = f"{len(failed)} results were" if len(failed) > 1 else f"the {o.kind} result was"
    return ResultNotRecorded(
        f"{what} printed but not recorded in {o.db or 'the results database'} ({o.error}); {where}",
        hint="record later with `edgekit runs import FILE --db DB`" if kept else None,
    )


def finish(outcomes: Iterable[RecordOutcome | None]) -> None:
    """Raise ResultNotRecorded (a one-line warning, exit 10) if the database refused any result."""
    exc = _failure(outcomes)
    if exc is not None:
        raise exc


def warn(outcomes: Iterable[RecordOutcome | None]) -> None:
    """Print the same warning without raising (another failure decides the exit code)."""
    exc = _failure(outcomes)
    if exc is not None:
        click.echo(f"{exc.prefix}: {exc}", err=True)
