"""Results history in SQLite: every export, eval, profile and camera run, queryable afterwards.

Every export, eval and profile calls `record()` once with its final result. The full JSON is kept
(nothing is lost when a producer adds keys); the figures that reports and sweeps query are copied
into columns, and a profile's per-setting figures (threads x batch x precision) into `measurements`.

Where the file lives: `--db PATH` > `EDGEKIT_DB` > `$EDGEKIT_HOME/results.db` > the user data dir
(platformdirs). `EDGEKIT_DB=off` turns recording off.

Safety: WAL journal, a busy timeout and `BEGIN IMMEDIATE` make concurrent writers (a fleet run)
queue rather than fail; each run is one transaction, so a crash (kill -9) loses at most that run.
The schema carries `PRAGMA user_version` and is brought up to date by MIGRATIONS on open.
Never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from edgekit import __version__
from edgekit.errors import InputDataError, UsageError
from edgekit.results.filters import RunFilter
from edgekit.results.records import KINDS, MEASUREMENT_COLUMNS, Measurement, RunRecord

DB_FILENAME = "results.db"
BUSY_TIMEOUT_MS = 60_000  # a fleet of writers queues; a minute of waiting means something is stuck
OFF_VALUES = ("off", "none", "0", "false")


# --------------------------------------------------------------------------- where the file lives


def resolve_db_path(db: str | os.PathLike | None = None) -> Path | None:
    """The database file to use, or None when recording is turned off (`EDGEKIT_DB=off`)."""
    value = str(db) if db is not None else os.environ.get("EDGEKIT_DB") or None
    if value is not None:
        return None if value.strip().lower() in OFF_VALUES else Path(value).expanduser()
    home = os.environ.get("EDGEKIT_HOME")
    if home:
        return Path(home).expanduser() / DB_FILENAME
    from platformdirs import user_data_dir

    return Path(user_data_dir("edgekit", appauthor=False)) / DB_FILENAME


# --------------------------------------------------------------------------- schema and migrations

# Version 1: the first released layout, one row per run (kept verbatim: old files in the wild have it).
_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    edgekit_version TEXT,
    bundle_id TEXT,
    model_name TEXT,
    family TEXT,
    alpha REAL,
    resolution INTEGER,
    classes INTEGER,
    precision TEXT,
    device TEXT,
    interpreter TEXT,
    interpreter_version TEXT,
    threads INTEGER,
    batch INTEGER,
    p50_ms REAL,
    p90_ms REAL,
    p99_ms REAL,
    images_per_s REAL,
    top1 REAL,
    top5 REAL,
    result_json TEXT NOT NULL,
    manifest_json TEXT,
    device_json TEXT
);
CREATE INDEX runs_kind_time ON runs(kind, created_at);
"""

# Version 2: figures reports need as columns, one row per profiled setting, and the sweep key.
_V2_COLUMNS = (
    ("device_kind", "TEXT"),
    ("host", "TEXT"),
    ("mean_ms", "REAL"),
    ("size_bytes", "INTEGER"),
    ("peak_rss_bytes", "INTEGER"),
    ("reference_top1", "REAL"),
    ("reference_top5", "REAL"),
    ("agreement", "REAL"),
    ("top1_change", "REAL"),
    ("n_images", "INTEGER"),
    ("temperature_c", "REAL"),
    ("throttled", "INTEGER"),
    ("params", "INTEGER"),
    ("macs", "INTEGER"),
    ("sweep_key", "TEXT"),
)
_V2_SQL = """
CREATE TABLE measurements (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    precision TEXT,
    threads INTEGER,
    batch INTEGER,
    p50_ms REAL, p90_ms REAL, p99_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL,
    images_per_s REAL,
    init_ms REAL,
    first_inference_ms REAL,
    peak_rss_bytes INTEGER,
    model_size_bytes INTEGER,
    PRIMARY KEY (run_id, idx)
);
CREATE INDEX runs_bundle ON runs(bundle_id, device);
CREATE INDEX runs_model ON runs(model_name, device);
CREATE INDEX runs_sweep ON runs(sweep_key, device, kind);
"""


def _migrate_v1(conn: sqlite3.Connection) -> None:
    # Statement by statement: executescript() would COMMIT the migration transaction early.
    for stmt in _split_sql(_V1):
        conn.execute(stmt)


def _migrate_v2(conn: sqlite3.Connection) -> None:
    for name, typ in _V2_COLUMNS:
        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {typ}")
    for stmt in _split_sql(_V2_SQL):
        conn.execute(stmt)
    # Backfill from the JSON every run kept: old rows gain the new columns and measurements.
    rows = conn.execute("SELECT id, kind, result_json, manifest_json, device_json FROM runs").fetchall()
    for run_id, kind, rj, mj, dj in rows:
        rec = RunRecord.from_result(kind, _loads(rj), _loads(mj), _loads(dj))
        sets = ", ".join(f"{k} = ?" for k, _ in _V2_COLUMNS)
        # `host` is the store's own column (where it was recorded): old rows keep NULL
        conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", [getattr(rec, k, None) for k, _ in _V2_COLUMNS] + [run_id])
        _insert_measurements(conn, run_id, rec.measurements)


# Version 3: the desktop reference's speed and where it ran, and each device result's ratio to it.
_V3_COLUMNS = (
    ("reference_p50_ms", "REAL"),  # the float reference, per image at batch 1
    ("reference_images_per_s", "REAL"),  # the float reference, at its throughput batch
    ("reference_device", "TEXT"),  # "GPU NVIDIA H200 (Keras/torch)"
    ("latency_ratio", "REAL"),  # device p50 / reference p50, both at batch 1
    ("reference_agreement", "REAL"),  # top-1 agreement with the reference's per-image predictions
)


def _migrate_v3(conn: sqlite3.Connection) -> None:
    for name, typ in _V3_COLUMNS:
        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {typ}")
    rows = conn.execute("SELECT id, kind, result_json, manifest_json, device_json FROM runs").fetchall()
    for run_id, kind, rj, mj, dj in rows:  # a run recorded before the reference was timed keeps NULLs
        rec = RunRecord.from_result(kind, _loads(rj), _loads(mj), _loads(dj))
        sets = ", ".join(f"{k} = ?" for k, _ in _V3_COLUMNS)
        conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", [getattr(rec, k, None) for k, _ in _V3_COLUMNS] + [run_id])


# (version, what it does, how); append only, never edit a released step.
MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite3.Connection], None]], ...] = (
    (1, "runs table", _migrate_v1),
    (2, "report columns, measurements table, sweep key", _migrate_v2),
    (3, "desktop reference speed, device / reference ratios", _migrate_v3),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _loads(text: str | None):
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


# --------------------------------------------------------------------------- opening


class Store:
    """One connection to a results database (open with `Store.open(path)` or `open_store(db)`)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = True) -> Store:
        path = Path(path)
        if not create and not path.is_file():
            raise InputDataError(
                f"no results database at {path}", hint="run export/eval/profile first, or pass --db FILE"
            )
        if path.exists() and path.is_dir():
            raise UsageError(f"results database {path} is a folder; pass a file path to --db")
        if not create:  # a reader needs no write access (a shared, read-only results folder)
            store = cls._open_readonly(path)
            if store is not None:
                return store
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) below.
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise InputDataError(f"cannot open results database {path}: {exc}", hint=_DB_HINT) from None
        store = cls(conn, path)
        try:
            store._setup()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise InputDataError(f"cannot use results database {path}: {exc}", hint=_DB_HINT) from None
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def _open_readonly(cls, path: Path) -> Store | None:
        """A read-only connection (`mode=ro` URI), or None to go through the writable open (a file of
        another schema version: migrated there, or refused with its message).

        A WAL database needs its `-shm` file, which a read-only folder cannot hold once the last
        writer has closed cleanly (and removed it); then it is opened `immutable=1`: nothing can be
        writing to a folder nobody may write to.
        """
        uri = path.resolve().as_uri()
        for query in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(
                    f"{uri}?{query}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
                )
            except sqlite3.Error:
                continue
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                conn.close()
                continue
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise InputDataError(f"cannot use results database {path}: {exc}", hint=_DB_HINT) from None
            if version != SCHEMA_VERSION:
                conn.close()
                return None
            return cls(conn, path)
        return None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _setup(self) -> None:
        c = self.conn
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        c.execute("PRAGMA foreign_keys = ON")
        # Switching to WAL needs a moment alone with the file; several processes opening a fresh file
        # at once can see SQLITE_BUSY here even with the busy timeout, so retry briefly.
        for attempt in range(100):
            try:
                if c.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() == "wal":
                    break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            time.sleep(0.05 * (1 + attempt % 5))
        # FULL: a committed run survives power loss too (the rate of runs makes its cost invisible).
        c.execute("PRAGMA synchronous = FULL")
        self._migrate()

    def _migrate(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise InputDataError(
                f"results database {self.path} has schema version {version}; this edgekit "
                f"({__version__}) reads up to {SCHEMA_VERSION}",
                hint="upgrade edgekit, or pass --db with another file",
            )
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = self.schema_version()
            for target, _what, step in MIGRATIONS:
                if target > version:
                    step(self.conn)
                    self.conn.execute(f"PRAGMA user_version = {target}")

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE .. COMMIT: takes the write lock up front, so writers queue, never deadlock."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ----------------------------------------------------------------------- writing

    def insert_run(
        self,
        kind: str,
        result,
        *,
        manifest: dict | None = None,
        device: dict | None = None,
        created_at: str | None = None,
    ) -> int:
        """Insert one run (call inside `transaction()`); returns its id."""
        rec = RunRecord.from_result(kind, result, manifest, device)
        cols = rec.columns()
        cols.update(
            created_at=created_at or _now(),
            edgekit_version=__version__,
            host=socket.gethostname(),
            result_json=_dumps(result),
            manifest_json=_dumps(manifest) if manifest is not None else None,
            device_json=_dumps(device) if device is not None else None,
        )
        names = [n for n in RUN_COLUMNS if n in cols]
        cur = self.conn.execute(
            f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [cols[n] for n in names],
        )
        run_id = int(cur.lastrowid)
        _insert_measurements(self.conn, run_id, rec.measurements)
        return run_id

    def add(self, kind: str, result, *, manifest=None, device=None) -> int:
        with self.transaction():
            return self.insert_run(kind, result, manifest=manifest, device=device)

    # ----------------------------------------------------------------------- reading

    def query(
        self, filters: RunFilter | None = None, *, columns: tuple[str, ...] | None = None
    ) -> list[dict]:
        """Runs matching `filters`, newest first, as dicts of the summary columns."""
        filters = filters or RunFilter()
        where, args = filters.sql()
        cols = columns or SUMMARY_COLUMNS
        sql = f"SELECT {', '.join(cols)} FROM runs{where} ORDER BY id DESC"
        if filters.limit:
            sql += f" LIMIT {int(filters.limit)}"
        cur = self.conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def get(self, run_id: int) -> dict:
        """One run with everything: columns, parsed result/manifest/device_info, measurements."""
        cur = self.conn.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        row = cur.fetchone()
        if row is None:
            raise InputDataError(f"no run with id {run_id} in {self.path}", hint="see `edgekit runs list`")
        run = dict(zip([d[0] for d in cur.description], row, strict=True))
        run["result"] = _loads(run.pop("result_json"))
        run["manifest"] = _loads(run.pop("manifest_json"))
        run["device_info"] = _loads(run.pop("device_json"))  # `device` is the name column
        run["measurements"] = [m.as_dict() for m in self.measurements([run["id"]]).get(run["id"], [])]
        return run

    def measurements(self, run_ids: list[int]) -> dict[int, list[Measurement]]:
        """Each run's profiled settings, in the order they were measured."""
        out: dict[int, list[Measurement]] = {i: [] for i in run_ids}
        for chunk in _chunks(list(run_ids), 500):
            cur = self.conn.execute(
                f"SELECT * FROM measurements WHERE run_id IN ({', '.join('?' * len(chunk))}) "
                "ORDER BY run_id, idx",
                chunk,
            )
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                m = dict(zip(names, row, strict=True))
                out.setdefault(m["run_id"], []).append(Measurement.from_row(m))
        return out

    def results(self, run_ids: list[int]) -> dict[int, dict]:
        """Parsed result/manifest/device JSON for several runs (for reports)."""
        out = {}
        for chunk in _chunks(list(run_ids), 500):
            cur = self.conn.execute(
                "SELECT id, result_json, manifest_json, device_json FROM runs "
                f"WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for rid, rj, mj, dj in cur.fetchall():
                out[rid] = {"result": _loads(rj), "manifest": _loads(mj), "device_info": _loads(dj)}
        return out

    def sweep_runs(self, keys: list[str]) -> list[dict]:
        """The profile and eval runs of these sweep cells, oldest first, with their parsed results."""
        cols = ("id", "kind", "sweep_key", "device", "alpha", "resolution", "model_name", "p50_ms", "top1",
                "top5", "macs", "params", "size_bytes")  # fmt: skip
        out = []
        for chunk in _chunks(list(keys), 500):
            cur = self.conn.execute(
                f"SELECT {', '.join(cols)}, result_json FROM runs WHERE kind IN ('profile', 'eval') "
                f"AND sweep_key IN ({', '.join('?' * len(chunk))}) ORDER BY id",
                chunk,
            )
            out += [{**dict(zip(cols, row[:-1], strict=True)), "result": _loads(row[-1])} for row in cur]
        return sorted(out, key=lambda r: r["id"])

    def count(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT kind, COUNT(*) FROM runs GROUP BY kind").fetchall())

    def has_sweep_run(self, sweep_key: str, device: str, kind: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM runs WHERE sweep_key = ? AND device = ? AND kind = ? LIMIT 1",
            (sweep_key, device, kind),
        ).fetchone()
        return row is not None


_DB_HINT = "pass --db FILE or set EDGEKIT_DB (EDGEKIT_DB=off turns recording off)"

RUN_COLUMNS = (
    "kind", "created_at", "edgekit_version", "bundle_id", "model_name", "family", "alpha", "resolution",
    "classes", "precision", "device", "interpreter", "interpreter_version", "threads", "batch", "p50_ms",
    "p90_ms", "p99_ms", "images_per_s", "top1", "top5", "result_json", "manifest_json", "device_json",
    *(name for name, _ in _V2_COLUMNS), *(name for name, _ in _V3_COLUMNS),
)  # fmt: skip
SUMMARY_COLUMNS = ("id", *(c for c in RUN_COLUMNS if not c.endswith("_json")))


def open_store(db: str | os.PathLike | None = None, *, create: bool = True) -> Store:
    path = resolve_db_path(db)
    if path is None:
        raise UsageError("recording is turned off (EDGEKIT_DB=off); pass --db FILE to read a database")
    return Store.open(path, create=create)


def record(kind: str, result, *, manifest: dict | None = None, device: dict | None = None,
           db: str | None = None) -> int | None:  # fmt: skip
    """Store one finished run (kind: "export" | "eval" | "profile" | "camera"); returns its id.

    One transaction per call. Returns None when recording is turned off (EDGEKIT_DB=off).
    """
    if kind not in KINDS:
        raise UsageError(f"run kind must be one of {', '.join(KINDS)}; received {kind!r}")
    path = resolve_db_path(db)
    if path is None:
        return None
    with Store.open(path) as store:
        try:
            return store.add(kind, result, manifest=manifest, device=device)
        except sqlite3.DatabaseError as exc:
            raise InputDataError(f"cannot write to results database {path}: {exc}", hint=_DB_HINT) from None


def _insert_measurements(conn: sqlite3.Connection, run_id: int, meas: tuple[Measurement, ...]) -> None:
    if not meas:
        return
    names = ["run_id", "idx", *MEASUREMENT_COLUMNS]
    conn.executemany(
        f"INSERT INTO measurements ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [[run_id, i, *(getattr(m, c) for c in MEASUREMENT_COLUMNS)] for i, m in enumerate(meas)],
    )


# --------------------------------------------------------------------------- small helpers


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _dumps(obj) -> str:
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


def _json_default(o):
    if hasattr(o, "item") and callable(o.item):  # numpy scalars without importing numpy
        try:
            return o.item()
        except (TypeError, ValueError):
            pass
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


