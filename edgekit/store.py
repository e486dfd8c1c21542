"""Results history in SQLite (issue 6 fills this in; the recording API below is the contract).

Every export, eval and profile calls `record()` once with its final result. It must never import
TensorFlow and must be safe under concurrent writers (a fleet run).
"""

from __future__ import annotations


def record(kind: str, result: dict, *, manifest: dict | None = None, device: dict | None = None,
           db: str | None = None) -> int | None:
    """Store one finished run (kind: "export" | "eval" | "profile" | "camera"); returns its id.

    Placeholder until the results store lands: records nothing and returns None.
    """
    return None
