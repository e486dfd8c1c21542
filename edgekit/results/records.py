"""What a stored run says: the figures the database indexes, read from one result document.

Producers (export, desktop eval, device eval, profile, camera; local or remote) shape their JSON a
little differently and will keep adding keys: look figures up by several paths, never require one.
The store (edgekit.results.store) calls `extract` on every insert; the report reads the same helpers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

# the kinds of run the store records (one table row each); every record carries one
KINDS = ("export", "eval", "profile", "camera")


def _get(d, *paths, default=None):
    for path in paths:
        cur = d
        for part in path.split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                cur = None
                break
        if cur is not None:
            return cur
    return default



def _num(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)  # numpy scalars, numeric strings
    except (TypeError, ValueError):
        return None



def _int(v) -> int | None:
    n = _num(v)
    return int(n) if n is not None else None



def _fraction(v) -> float | None:
    """Accuracy as a fraction; producers that print percentages (e.g. 87.5) are scaled down."""
    n = _num(v)
    if n is None:
        return None
    return n / 100.0 if n > 1.0 else n



def profile_entries(result) -> list[dict]:
    """A profile result's per-setting objects, whatever wraps them."""
    if isinstance(result, list):
        return [e for e in result if isinstance(e, dict)]
    if isinstance(result, dict):
        for key in ("results", "configurations", "configs", "measurements", "profiles", "runs"):
            v = result.get(key)
            if isinstance(v, list) and v and isinstance(v[0], dict):
                return [e for e in v if isinstance(e, dict)]
        if "latency_ms" in result:
            return [result]
    return []



@dataclass(frozen=True)
class Measurement:
    """One profiled setting (precision x threads x batch): the figures per batch, as `measurements` holds."""

    precision: str | None = None
    threads: int | None = None
    batch: int = 1
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    images_per_s: float | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    peak_rss_bytes: int | None = None
    model_size_bytes: int | None = None

    @classmethod
    def from_entry(cls, e: dict) -> Measurement:
        """From one per-setting object of a profile or camera result, whatever its producer."""
        lat = e.get("latency_ms") if isinstance(e.get("latency_ms"), dict) else {}
        # Figures per batch; a per-image block is optional and not what the columns hold.
        return cls(
            precision=_str(_get(e, "precision", "model.precision")),
            threads=_int(e.get("threads")),
            batch=_int(e.get("batch")) or 1,
            **{f"{k}_ms": _num(lat.get(k)) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")},
            images_per_s=_num(_get(e, "images_per_s", "throughput.images_per_s")),
            init_ms=_num(_get(e, "init_ms", "init.ms")),
            first_inference_ms=_num(e.get("first_inference_ms")),
            peak_rss_bytes=_int(_get(e, "peak_rss_bytes", "memory.peak_rss_bytes"))
            or (int(e["peak_rss_mb"] * 2**20) if _num(e.get("peak_rss_mb")) else None),
            model_size_bytes=_int(_get(e, "model_size_bytes", "size_bytes")),
        )

    @classmethod
    def from_row(cls, row: dict) -> Measurement:
        """From a `measurements` table row (its run_id and idx are the store's, not the measurement's)."""
        return cls(**{f.name: row.get(f.name) for f in fields(cls) if f.name in row})

    def as_dict(self) -> dict:
        return asdict(self)


MEASUREMENT_COLUMNS = tuple(f.name for f in fields(Measurement))



def headline(measurements: list[Measurement], precision: str | None) -> Measurement | None:
    """The setting a summary shows: batch 1 of the bundle's main precision, the fastest thread count."""
    if not measurements:
        return None
    pool = [m for m in measurements if m.p50_ms is not None] or measurements
    same = [m for m in pool if precision and m.precision == precision]
    pool = same or pool
    b1 = [m for m in pool if (m.batch or 1) == 1] or pool
    return min(b1, key=lambda m: m.p50_ms if m.p50_ms is not None else float("inf"))



def _environment(result, entries: list[dict]) -> dict:
    env = _get(result, "environment", "env") if isinstance(result, dict) else None
    if not isinstance(env, dict):
        env = next((e["environment"] for e in entries if isinstance(e.get("environment"), dict)), {})
    return env



def _interpreter(result, env: dict, entries: list[dict]) -> tuple[str | None, str | None]:
    cands = [env.get("interpreter"), env.get("runtime")]
    if isinstance(result, dict):
        cands += [
            result.get("interpreter"),
            result.get("runtime"),
            _get(result, "tflite.interpreter", "tflite.runtime"),
            _get(result, "device_result.runtime"),
        ]
    cands += [e.get("interpreter") or e.get("runtime") for e in entries[:1]]
    for c in cands:
        if isinstance(c, dict):
            name = c.get("name") or c.get("runtime")
            if name:
                return str(name), _str(c.get("version") or c.get("runtime_version"))
        elif isinstance(c, str) and c:
            version = (
                _get(result, "interpreter_version", "runtime_version") if isinstance(result, dict) else None
            )
            version = version or env.get("interpreter_version") or env.get("runtime_version")
            if version is None and " " in c.strip():  # "ai_edge_litert 2.3.0"
                c, version = c.strip().split(" ", 1)
            return c, _str(version)
    return None, None



def _str(v) -> str | None:
    return None if v is None else str(v)



def _temperature(*envs: dict) -> float | None:
    """The hottest reading found (before/after/max), in °C."""
    vals = []
    for env in envs:
        t = env.get("temperature", env.get("temperature_c"))
        if isinstance(t, dict):
            vals += [_num(v) for k, v in t.items() if "unit" not in k]
        else:
            vals.append(_num(t))
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None



def _throttled(env: dict, entries: list[dict]) -> int | None:
    """1 when any throttling or upward latency drift was flagged, 0 when checked and clean, else None."""
    seen = False
    flagged = False
    for src in [env, *entries]:
        for key, val in (src or {}).items():
            k = key.lower()
            if "throttl" not in k and "drift" not in k:
                continue
            seen = True
            flagged = flagged or _truthy(val)
    return (1 if flagged else 0) if seen else None



def _truthy(val) -> bool:
    if isinstance(val, bool):
        return val
    if isinstance(val, (int, float)):
        return val != 0
    if isinstance(val, str):
        s = val.strip().lower()
        if s.startswith("0x"):
            try:
                return int(s, 16) != 0  # vcgencmd get_throttled bits
            except ValueError:
                return False
        return s not in ("", "0", "no", "false", "none", "ok", "n/a", "unknown")
    if isinstance(val, dict):
        for k, v in val.items():
            kl = k.lower()
            if kl in ("raw", "readable", "source", "available", "method", "note", "bits", "hex", "unit"):
                continue
            if _truthy(v):
                return True
        return False
    if isinstance(val, list):
        return any(_truthy(v) for v in val)
    return False



def _extract(kind: str, result, manifest: dict | None, device: dict | None) -> tuple[dict, list[Measurement]]:
    """(columns for `runs`, rows for `measurements`) from one run's JSON; missing keys stay None."""
    from edgekit.bundle.manifest import bundle_id

    r = result if isinstance(result, dict) else {}
    if manifest is None and kind == "export" and isinstance(r.get("models"), list):
        manifest = r  # an export's result is its manifest
    man = manifest if isinstance(manifest, dict) else {}
    model = man.get("model") if isinstance(man.get("model"), dict) else {}
    entries = profile_entries(result) if kind in ("profile", "camera") else []
    meas = [Measurement.from_entry(e) for e in entries]

    precision = _get(r, "precision", "model.precision", "tflite.precision")
    models = (
        [m for m in man.get("models") or [] if isinstance(m, dict)]
        if isinstance(man.get("models"), list)
        else []
    )
    if precision is None and models:
        # the primary model: int8 when exported, else the first (as edgekit.bundle.manifest.primary_model)
        precision = next((m.get("precision") for m in models if m.get("precision") == "int8"), None)
        precision = precision or models[0].get("precision")
    primary = next((m for m in models if m.get("precision") == precision), {})
    if not isinstance(precision, str):
        precision = None

    env = _environment(result, entries)
    after = r.get("environment_after") if isinstance(r.get("environment_after"), dict) else {}
    interp, interp_version = _interpreter(result, env, entries)
    head = headline(meas, precision)
    if kind == "camera" and head is None:
        lat = _get(r, "summary.latency_ms", "latency_ms")
        head = (
            Measurement.from_entry({"latency_ms": lat, "images_per_s": _get(r, "summary.fps", "fps"), "batch": 1,
                          "threads": _get(r, "runtime.threads", "threads")})  # fmt: skip
            if lat
            else None
        )

    dev = device if isinstance(device, dict) else {}
    rdev = r.get("device")
    dev_name = dev.get("name") or (rdev.get("name") if isinstance(rdev, dict) else rdev)
    if not dev_name and kind != "export":
        # Without a device: an eval is the desktop's own (host TFLite beside the float model); other
        # runs went through the `local` target, this machine as the device.
        dev_name = "host" if kind == "eval" else "local"
    bid = r.get("bundle_id") or r.get("bundle_sha256")
    if not bid and man.get("files"):
        try:
            bid = bundle_id(man)
        except (KeyError, TypeError, AttributeError):
            bid = None

    cols = {
        "bundle_id": bid,
        "model_name": man.get("name") or _get(r, "model_name", "name" if kind == "export" else "model_name"),
        "family": model.get("family"),
        "alpha": _num(model.get("alpha")),
        "resolution": _int(model.get("resolution")),
        "classes": _int(model.get("classes") or man.get("num_classes")),
        "params": _int(model.get("params")),
        "macs": _int(model.get("macs")),
        "precision": precision,
        "device": _str(dev_name) or None,
        "device_kind": dev.get("kind") or (rdev.get("kind") if isinstance(rdev, dict) else None),
        "interpreter": interp,
        "interpreter_version": interp_version,
        "threads": head.threads if head else _int(r.get("threads")),
        "batch": head.batch if head else _int(r.get("batch")),
        "p50_ms": head.p50_ms if head else None,
        "p90_ms": head.p90_ms if head else None,
        "p99_ms": head.p99_ms if head else None,
        "mean_ms": head.mean_ms if head else None,
        "images_per_s": head.images_per_s if head else None,
        "peak_rss_bytes": (head.peak_rss_bytes if head else None)
        or _int(r.get("peak_rss_bytes"))
        or (int(_num(r["peak_rss_mb"]) * 2**20) if _num(r.get("peak_rss_mb")) else None),
        "size_bytes": _int(primary.get("size_bytes"))
        or (head.model_size_bytes if head else None)
        or _int(_get(r, "model_size_bytes", "size_bytes")),
        "temperature_c": _temperature(env, after),
        "throttled": _throttled(env, [after, *entries]),
        "sweep_key": _str(_get(r, "sweep.key")),
        **_reference_columns(r),
    }
    if kind == "eval":
        cols.update(
            top1=_fraction(_get(r, "tflite.top1", "device_result.top1", "top1", "accuracy.top1")),
            top5=_fraction(_get(r, "tflite.top5", "device_result.top5", "top5", "accuracy.top5")),
            reference_top1=_fraction(_get(r, "reference.top1", "reference.float.top1")),
            reference_top5=_fraction(_get(r, "reference.top5", "reference.float.top5")),
            agreement=_fraction(_get(r, "agreement", "comparison.agreement", "vs_reference.agreement")),
            top1_change=_num(_get(r, "top1_change", "comparison.top1_change", "vs_reference.top1_change")),
            n_images=_int(_get(r, "tflite.n", "n", "images", "tflite.images")),
        )
        if cols["p50_ms"] is None:  # per-image latency a device eval reports
            lat = _get(r, "tflite.latency_ms", "latency_ms")
            if isinstance(lat, dict):
                cols.update(
                    p50_ms=_num(lat.get("p50")), p90_ms=_num(lat.get("p90")), p99_ms=_num(lat.get("p99"))
                )
    elif kind == "export" and primary:
        cols["agreement"] = _fraction(_get(primary, "verification.top1_agreement"))
    return cols, meas



@dataclass(frozen=True)
class RunRecord:
    """What one export, eval, profile or camera run says, typed: the store's `runs` columns and its
    `measurements` rows. Built only here (`from_result`), from whatever JSON its producer wrote."""

    kind: str
    bundle_id: str | None = None
    model_name: str | None = None
    family: str | None = None
    alpha: float | None = None
    resolution: int | None = None
    classes: int | None = None
    params: int | None = None
    macs: int | None = None
    precision: str | None = None
    device: str | None = None
    device_kind: str | None = None
    interpreter: str | None = None
    interpreter_version: str | None = None
    # the headline setting (batch 1, main precision, fastest threads) of a profile or camera run
    threads: int | None = None
    batch: int | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    images_per_s: float | None = None
    peak_rss_bytes: int | None = None
    size_bytes: int | None = None
    temperature_c: float | None = None
    throttled: int | None = None  # 1 flagged, 0 checked and clean, None not checked
    sweep_key: str | None = None
    # accuracy (eval; an export's verification agreement)
    top1: float | None = None
    top5: float | None = None
    reference_top1: float | None = None
    reference_top5: float | None = None
    agreement: float | None = None
    top1_change: float | None = None
    n_images: int | None = None
    # beside the desktop reference
    reference_p50_ms: float | None = None
    reference_images_per_s: float | None = None
    reference_device: str | None = None
    latency_ratio: float | None = None
    reference_agreement: float | None = None
    measurements: tuple[Measurement, ...] = field(default=(), repr=False)

    @classmethod
    def from_result(cls, kind: str, result, manifest: dict | None = None, device: dict | None = None) -> RunRecord:
        cols, meas = _extract(kind, result, manifest, device)
        return cls(kind=kind, measurements=tuple(meas), **cols)

    def columns(self) -> dict:
        """The `runs` columns (everything but the measurements)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "measurements"}


def _reference_columns(r: dict) -> dict:
    """A desktop eval's own reference figures, or a device result's `vs_reference` comparison."""
    from edgekit.results.comparison import where

    vs = r.get("vs_reference") if isinstance(r.get("vs_reference"), dict) else {}
    ref = r.get("reference") if isinstance(r.get("reference"), dict) else {}
    backend = ref.get("backend") or ("tensorflow" if ref.get("device") else None)
    return {
        "reference_p50_ms": _num(_get(r, "reference.latency_ms.p50", "vs_reference.reference_p50_ms")),
        "reference_images_per_s": _num(
            _get(r, "reference.throughput.images_per_s", "vs_reference.reference_images_per_s")
        ),
        "reference_device": vs.get("reference_where") or where(ref.get("device"), backend, ref.get("precision")),
        "latency_ratio": _num(vs.get("latency_ratio")),
        "reference_agreement": _fraction(vs.get("agreement")),
    }


def environment_of(result) -> dict:
    if isinstance(result, dict):
        for src in (result, result.get("device_result")):
            if isinstance(src, dict) and isinstance(src.get("environment"), dict):
                return src["environment"]
    for e in profile_entries(result):
        if isinstance(e.get("environment"), dict):
            return e["environment"]
    return {}
