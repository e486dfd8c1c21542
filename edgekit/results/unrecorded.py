"""Results the database refused: kept as JSON files, so a database failure never loses a measurement.

`record_or_keep()` is what commands call once their result has been printed. When the database cannot
take the run (not SQLite, a newer schema, a full disk, a dangling symlink, a read-only or immutable
file, ...) the run is written to `unrecorded_dir()` instead, one file per run:

    {"schema_version": 1, "kind": "profile", "created_at": ..., "db": ..., "error": ...,
     "result": {...}, "manifest": {...}, "device": {...}}

`edgekit runs import FILE...` records such files later (with their original time) and removes them.
Nothing here prints: the outcome says what happened and the CLI tells the user.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekit.bundle.atomic import write_text_atomic
from edgekit.errors import InputDataError
from edgekit.results import store
from edgekit.results.records import KINDS

UNRECORDED = "unrecorded"


@dataclass(frozen=True)
class RecordOutcome:
    """What became of one result: a run id in `db`, or the error and the file it was kept in."""

    kind: str
    db: str | None
    run_id: int | None = None
    error: str | None = None
    kept: str | None = None  # the JSON file holding the result when the database refused it

    @property
    def ok(self) -> bool:
        return self.error is None


def unrecorded_dir() -> Path:
    """`$EDGEKIT_HOME/unrecorded`, else `unrecorded/` in the user data dir (beside the default database)."""
    home = os.environ.get("EDGEKIT_HOME")
    if home:
        return Path(home).expanduser() / UNRECORDED
    from platformdirs import user_data_dir

    return Path(user_data_dir("edgekit", appauthor=False)) / UNRECORDED


def record_or_keep(
    kind: str, result, *, manifest: dict | None = None, device: dict | None = None, db=None
) -> RecordOutcome:
    """store.record(), but whatever goes wrong with the database, the result survives in a file."""
    path = None
    try:
        path = store.resolve_db_path(db)
        run_id = store.record(kind, result, manifest=manifest, device=device, db=db)
        return RecordOutcome(kind, str(path) if path else None, run_id=run_id)
    except Exception as exc:
        error = str(exc) or exc.__class__.__name__
    return keep(kind, result, manifest=manifest, device=device, db=path, error=error)


def keep(kind: str, result, *, manifest=None, device=None, db=None, error: str) -> RecordOutcome:
    """Write a result the database refused to a file of its own; the outcome says where."""
    doc = {
        "schema_version": 1,
        "kind": kind,
        "created_at": store._now(),
        "db": str(db) if db else None,
        "error": error,
        "result": result,
        "manifest": manifest,
        "device": device,
    }
    return RecordOutcome(kind, doc["db"], error=error, kept=_keep(doc))


def _keep(doc: dict) -> str | None:
    """Write `doc` atomically under unrecorded_dir() (the temp folder if that fails too); its path."""
    text = json.dumps(doc, default=store._json_default, indent=1)
    stamp = doc["created_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    name = f"{doc['kind']}-{stamp}-{os.getpid()}-{secrets.token_hex(3)}.json"
    for folder in (unrecorded_dir(), Path(tempfile.gettempdir()) / f"edgekit-{UNRECORDED}-{os.getuid()}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return str(write_text_atomic(folder / name, text))
        except OSError:
            continue
    return None


def import_kept(path: str | os.PathLike, db=None) -> int | None:
    """Record one kept file into the database (keeping its original time), then delete the file."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputDataError(f"cannot read kept result {p}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") not in KINDS or "result" not in doc:
        raise InputDataError(f"{p} is not a result kept by edgekit (no kind/result)")
    db_path = store.resolve_db_path(db)
    if db_path is None:
        raise InputDataError("recording is turned off (EDGEKIT_DB=off); pass --db FILE to import into")
    with store.Store.open(db_path) as s:
        try:
            with s.transaction():
                run_id = s.insert_run(
                    doc["kind"], doc["result"], manifest=doc.get("manifest"), device=doc.get("device"),
                    created_at=doc.get("created_at"),
                )  # fmt: skip
        except sqlite3.DatabaseError as exc:
            raise InputDataError(f"cannot write to results database {db_path}: {exc}") from None
    p.unlink(missing_ok=True)
    return run_id
