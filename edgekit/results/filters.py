"""Which recorded runs a command selects: `runs list`, `runs export` and `report` share one filter.

The filter builds SQL with placeholders only (values never enter the SQL text)."""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from edgekit.errors import UsageError
from edgekit.results.records import KINDS


@dataclass(frozen=True)
class RunFilter:
    """What `runs list`, `runs export` and `report` select; fields follow the flags."""

    kind: str | None = None
    model: str | None = None  # variant name, family or glob (mobilenet*, *_160)
    device: str | None = None  # one name or a comma list
    since: str | None = None  # ISO date/time or a relative age: 30m, 24h, 7d
    bundle: str | None = None  # bundle id prefix
    ids: tuple[int, ...] = ()
    limit: int | None = None

    def sql(self) -> tuple[str, list]:
        clauses, args = [], []
        if self.kind:
            kinds = [k.strip() for k in self.kind.split(",") if k.strip()]
            bad = [k for k in kinds if k not in KINDS]
            if bad:
                raise UsageError(f"--kind must be among {', '.join(KINDS)}; received {self.kind!r}")
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args += kinds
        if self.model:
            pat = self.model if any(ch in self.model for ch in "*?[") else None
            if pat:
                clauses.append("(model_name GLOB ? OR family GLOB ?)")
                args += [pat, pat]
            else:
                m = self.model.lower().replace("-", "_")
                clauses.append("(model_name = ? OR family = ? OR model_name GLOB ? OR family GLOB ?)")
                args += [m, m, f"{m}*", f"{m}*"]
        if self.device:
            names = [d.strip() for d in self.device.split(",") if d.strip()]
            clauses.append(f"device IN ({', '.join('?' * len(names))})")
            args += names
        if self.since:
            clauses.append("created_at >= ?")
            args.append(parse_since(self.since))
        if self.bundle:
            clauses.append("bundle_id GLOB ?")
            args.append(f"{self.bundle}*")
        if self.ids:
            clauses.append(f"id IN ({', '.join('?' * len(self.ids))})")
            args += list(self.ids)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: _dt.datetime | None = None) -> str:
    """`7d`, `24h`, `2026-05-01` or `2026-05-01T10:00` -> an ISO UTC timestamp to compare with."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    m = _AGE.match(value)
    if m:
        t = now - _dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
        return t.isoformat(timespec="seconds")
    try:
        t = _dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(
            f"--since takes an age (30m, 24h, 7d) or an ISO date (2026-05-01); received {value!r}"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")
