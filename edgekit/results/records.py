"""What a stored run says: the figures the database indexes, read from one result document.

Each figure is read where its producer writes it: the export manifest (pipeline/export.py,
pipeline/onnx.py), the desktop `eval` (pipeline/reference.py), the device eval (cli/device_eval.py,
pipeline/sweep.py: eval_images.py's document under `device_result`), `profile` (devices/jobs.py
record_profile, pipeline/sweep.py: profile_latency.py's configurations) and `camera` (classify_camera.py's
document as it is). The store (edgekit.results.store) builds a `RunRecord` on every insert and when a
migration backfills old rows; the report reads the same helpers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

# the kinds of run the store records (one table row each); every record carries one
KINDS = ("export", "eval", "profile", "camera")


def _get(d, *paths):
    """The first of the dotted paths that is set (not None) in d, else None."""
    for path in paths:
        cur = d
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is not None:
            return cur
    return None


def _num(v) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        return float(v)  # ints, floats, numpy scalars
    except (TypeError, ValueError):
        return None


def _int(v) -> int | None:
    n = _num(v)
    return int(n) if n is not None else None


def _fraction(v) -> float | None:
    """Accuracy as a fraction; a percentage (e.g. 87.5) is scaled down."""
    n = _num(v)
    if n is None:
        return None
    return n / 100.0 if n > 1.0 else n


def _str(v) -> str | None:
    return None if v is None else str(v)


def _dict(d: dict, key: str) -> dict:
    v = d.get(key)
    return v if isinstance(v, dict) else {}


def profile_entries(result) -> list[dict]:
    """A profile result's per-setting objects (its `configurations`), or a camera result itself: one
    setting, with its figures at the top."""
    if not isinstance(result, dict):
        return []
    rows = result.get("configurations")
    if isinstance(rows, list):
        return [e for e in rows if isinstance(e, dict)]
    return [result] if "latency_ms" in result else []


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
        """From one row of jobs.profile_rows (a profile_latency.py configuration and its model's facts),
        or from a camera result (its model under `model`, its memory in MB only)."""
        lat = _dict(e, "latency_ms")  # per batch; the per-image block is not what the columns hold
        mb = _num(e.get("peak_rss_mb"))
        return cls(
            precision=_str(_get(e, "precision", "model.precision")),
            threads=_int(_get(e, "threads", "runtime.threads")),  # a profile row's; a camera result's runtime
            batch=_int(e.get("batch")) or 1,
            **{f"{k}_ms": _num(lat.get(k)) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")},
            images_per_s=_num(_get(e, "images_per_s", "fps")),  # a camera's: frames classified per second
            init_ms=_num(e.get("init_ms")),
            first_inference_ms=_num(e.get("first_inference_ms")),
            peak_rss_bytes=_int(e.get("peak_rss_bytes")) or (int(mb * 2**20) if mb else None),
            model_size_bytes=_int(e.get("model_size_bytes")),
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


def _interpreter(r: dict) -> tuple[str | None, str | None]:
    """(name, version): `runtime` of a profile or camera result, `tflite.runtime` of an eval (a device
    eval: {name, version}; the desktop eval: one string, "ai_edge_litert 2.3.0")."""
    rt = _get(r, "runtime", "tflite.runtime")
    if isinstance(rt, dict):
        return (str(rt["name"]), _str(rt.get("version"))) if rt.get("name") else (None, None)
    if isinstance(rt, str) and rt.strip():
        name, _, version = rt.strip().partition(" ")
        return name, version or None
    return None, None


def _temperature(*envs: dict) -> float | None:
    """The hotter `temperature_c` of before and after the run, in °C."""
    vals = [t for t in (_num(env.get("temperature_c")) for env in envs) if t is not None]
    return max(vals) if vals else None


def _throttled(envs: tuple[dict, ...], entries: list[dict]) -> int | None:
    """1 when vcgencmd flagged throttling (edgelib's `throttling`, before or after) or a setting's latency
    drifted up (profile_latency.py's `drift_flag`), 0 when checked and clean, None when not checked."""
    checks = [
        any(v for k, v in env["throttling"].items() if k != "raw")  # "raw": the hex word the flags came from
        for env in envs
        if isinstance(env.get("throttling"), dict)
    ]
    checks += [bool(e["drift_flag"]) for e in entries if "drift_flag" in e]
    return int(any(checks)) if checks else None


def _extract(kind: str, result, manifest: dict | None, device: dict | None) -> tuple[dict, list[Measurement]]:
    """(columns for `runs`, rows for `measurements`) from one run's JSON; missing keys stay None."""
    from edgekit.bundle.manifest import bundle_id

    r = result if isinstance(result, dict) else {}
    man = manifest if isinstance(manifest, dict) else {}
    model = _dict(man, "model")
    entries = profile_entries(r) if kind in ("profile", "camera") else []
    meas = [Measurement.from_entry(e) for e in entries]

    # the run's own precision (a profile of one model, an eval; a camera result's `model`), else the
    # primary model: int8 when exported, else the first (as edgekit.bundle.manifest.primary_model)
    models = [m for m in man.get("models") or () if isinstance(m, dict)]
    precision = _get(r, "precision", "model.precision")
    if precision is None and models:
        precision = next((m.get("precision") for m in models if m.get("precision") == "int8"), None)
        precision = precision or models[0].get("precision")
    primary = next((m for m in models if m.get("precision") == precision), {})
    if not isinstance(precision, str):
        precision = None

    env, after = _dict(r, "environment"), _dict(r, "environment_after")  # after: the sweep's profile
    interp, interp_version = _interpreter(r)
    head = headline(meas, precision)

    dev = device if isinstance(device, dict) else {}
    dev_name = dev.get("name")
    if not dev_name and kind != "export":
        # Without a device: an eval is the desktop's own (host TFLite beside the float model); other
        # runs went through the `local` target, this machine as the device.
        dev_name = "host" if kind == "eval" else "local"
    bid = None
    if man.get("files"):
        try:
            bid = bundle_id(man)
        except (KeyError, TypeError, AttributeError):
            bid = None

    cols = {
        "bundle_id": bid,
        "model_name": man.get("name"),
        "family": model.get("family"),
        "alpha": _num(model.get("alpha")),
        "resolution": _int(model.get("resolution")),
        "classes": _int(model.get("classes")),
        "params": _int(model.get("params")),
        "macs": _int(model.get("macs")),
        "precision": precision,
        "device": _str(dev_name) or None,
        "device_kind": dev.get("kind"),
        "interpreter": interp,
        "interpreter_version": interp_version,
        # without settings (an eval): the device eval's own `threads` and `batch`
        "threads": head.threads if head else _int(r.get("threads")),
        "batch": head.batch if head else _int(r.get("batch")),
        "p50_ms": head.p50_ms if head else None,
        "p90_ms": head.p90_ms if head else None,
        "p99_ms": head.p99_ms if head else None,
        "mean_ms": head.mean_ms if head else None,
        "images_per_s": head.images_per_s if head else None,
        "peak_rss_bytes": head.peak_rss_bytes if head else None,
        "size_bytes": _int(primary.get("size_bytes")) or (head.model_size_bytes if head else None),
        "temperature_c": _temperature(env, after),
        "throttled": _throttled((env, after), entries),
        "sweep_key": _str(_get(r, "sweep.key")),
        **_reference_columns(r),
    }
    if kind == "eval":
        # desktop and device eval alike: the TFLite figures under `tflite` (latency per image at batch
        # 1), the float reference under `reference` (a device eval copies it from reference.json)
        lat = _dict(_dict(r, "tflite"), "latency_ms")
        cols.update(
            top1=_fraction(_get(r, "tflite.top1")),
            top5=_fraction(_get(r, "tflite.top5")),
            reference_top1=_fraction(_get(r, "reference.top1")),
            reference_top5=_fraction(_get(r, "reference.top5")),
            # with the host TFLite; a device eval without it: with the reference's predictions
            agreement=_fraction(_get(r, "agreement", "vs_reference.agreement")),
            top1_change=_num(r.get("top1_change")),
            n_images=_int(_get(r, "tflite.n")),
            p50_ms=_num(lat.get("p50")),
            p90_ms=_num(lat.get("p90")),
            p99_ms=_num(lat.get("p99")),
        )
    elif kind == "export" and primary:
        cols["agreement"] = _fraction(_get(primary, "verification.top1_agreement"))
    return cols, meas


@dataclass(frozen=True)
class RunRecord:
    """What one export, eval, profile or camera run says, typed: the store's `runs` columns and its
    `measurements` rows. Built only here (`from_result`), from the JSON its producer wrote."""

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

    vs, ref = _dict(r, "vs_reference"), _dict(r, "reference")
    # no `backend`: the desktop eval before it timed the reference (488bb6d; its rows, which migration 3
    # backfills, and the schema-1 reference.json a device eval copies) ran TensorFlow in-process
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
    """The machine a stored run was measured on: a profile's or camera's `environment`, a device eval's
    under `device_result`; {} for the desktop eval and an export."""
    if isinstance(result, dict):
        for src in (result, result.get("device_result")):
            if isinstance(src, dict) and isinstance(src.get("environment"), dict):
                return src["environment"]
    return {}
