"""The α × resolution sweep: build (train), export int8, profile on each device, evaluate, record.

Each configuration is one step that ends in the results store, keyed by a `sweep key` (family, α,
resolution, classes, mode, data, epochs, threads); a configuration already recorded for a device is
not redone, so an interrupted sweep resumes where it stopped. The end is the Pareto table (accuracy
vs latency per device) naming the most accurate model within `--budget-ms`; with `--latency-only`
(random weights) it is the paper's grid of latency beside MACs and params.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import DeviceError, UsageError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SweepConfig:
    model: str = "mobilenet"
    alphas: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    resolutions: tuple[int, ...] = (128, 160, 192, 224)
    classes: int | None = None  # default: the data's classes, else 1000 (the paper's ImageNet head)
    devices: tuple[str, ...] = ("local",)
    data: str | None = None
    epochs: int = 5
    latency_only: bool = False
    budget_ms: float | None = None
    threads: int = 1
    runs: int = 30  # timed inferences per profile
    warmup: int = 3
    calibration_samples: int = 32
    output: str = "edgekit-out/sweep"
    db: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.alphas or not self.resolutions:
            raise UsageError("a sweep needs at least one --alpha and one --resolution")
        if self.data is None and not self.latency_only:
            raise UsageError("give --data DIR (train and evaluate) or --latency-only (random weights)")
        if self.data is not None and self.latency_only:
            raise UsageError(
                "--latency-only measures random weights; leave out --data (or drop --latency-only)"
            )
        if self.epochs < 0 or self.runs < 1 or self.threads < 1:
            raise UsageError(
                f"--epochs must be >= 0, --runs and --threads >= 1; received {self.epochs}, {self.runs}, {self.threads}"
            )
        if self.budget_ms is not None and self.budget_ms <= 0:
            raise UsageError(f"--budget-ms must be positive; received {self.budget_ms}")


@dataclass(frozen=True)
class Point:
    """One configuration of the grid."""

    alpha: float
    resolution: int

    def name(self, family: str) -> str:
        return f"{family}_{round(self.alpha * 100):03d}_{self.resolution}"


def sweep_key(cfg: SweepConfig, model_cfg, point: Point) -> str:
    """What makes two sweep results the same measurement (devices are matched separately)."""
    parts = {
        "family": model_cfg.family,
        "alpha": point.alpha,
        "resolution": point.resolution,
        "classes": model_cfg.classes,
        "mode": "latency-only" if cfg.latency_only else "trained",
        "threads": cfg.threads,
    }
    if cfg.data:
        parts["data"] = str(Path(cfg.data).resolve())
        parts["epochs"] = cfg.epochs
        parts["seed"] = cfg.seed
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{model_cfg.family}/a{point.alpha:g}/r{point.resolution}/{parts['mode']}/{digest}"


def _model_config(cfg: SweepConfig, point: Point, classes: int):
    from edgekit.models import resolve_config  # noqa: PLC0415

    return resolve_config(cfg.model, alpha=point.alpha, resolution=point.resolution, classes=classes)


def run_sweep(cfg: SweepConfig, progress: Progress = lambda _m: None) -> dict:
    """The whole sweep; returns the summary (grid, Pareto table, best within budget, timings)."""
    from edgekit.store import open_store  # noqa: PLC0415

    t_start = time.perf_counter()
    labels = _data_labels(cfg.data) if cfg.data else ()
    classes = cfg.classes or (len(labels) if labels else 1000)
    if labels and cfg.classes and cfg.classes != len(labels):
        raise UsageError(
            f"--classes {cfg.classes} disagrees with the {len(labels)} class folders in {cfg.data}"
        )
    points = [Point(a, r) for a in cfg.alphas for r in cfg.resolutions]
    done, skipped, steps = [], [], []
    with open_store(cfg.db) as store:
        db_path = store.path
        for n, point in enumerate(points, 1):
            mcfg = _model_config(cfg, point, classes)
            key = sweep_key(cfg, mcfg, point)
            todo = [
                d
                for d in cfg.devices
                if not store.has_sweep_run(key, d, "profile")
                or (cfg.data and not store.has_sweep_run(key, d, "eval"))
            ]
            tag = f"[{n}/{len(points)}] α={point.alpha:g} {point.resolution}px"
            if not todo:
                progress(f"{tag}: already recorded, skipped")
                skipped.append(key)
                continue
            t0 = time.perf_counter()
            bundle, manifest = _bundle(cfg, mcfg, key, labels, tag, progress, store)
            for device in todo:
                if not store.has_sweep_run(key, device, "profile"):
                    progress(f"{tag}: profiling on {device}")
                    result, dev = profile(bundle, manifest, device, cfg)
                    result["sweep"] = {"key": key}
                    store.add("profile", result, manifest=manifest, device=dev)
                if cfg.data and not store.has_sweep_run(key, device, "eval"):
                    progress(f"{tag}: evaluating on {device}")
                    result, dev = evaluate(bundle, manifest, device, cfg)
                    result["sweep"] = {"key": key}
                    store.add("eval", result, manifest=manifest, device=dev)
            steps.append({"key": key, "seconds": round(time.perf_counter() - t0, 1)})
            done.append(key)
        keys = [sweep_key(cfg, _model_config(cfg, p, classes), p) for p in points]
        summary = summarize(store, keys, cfg)
    summary.update(
        db=str(db_path),
        done=len(done),
        skipped=len(skipped),
        steps=steps,
        total_s=round(time.perf_counter() - t_start, 1),
    )
    return summary


# --------------------------------------------------------------------------- build + export


def _bundle(
    cfg: SweepConfig, mcfg, key: str, labels, tag: str, progress: Progress, store
) -> tuple[Path, dict]:
    """The int8 bundle for one configuration: reused when this sweep key already exported it."""
    from edgekit.manifest import read_manifest, verify_checksums  # noqa: PLC0415
    from edgekit.models import variant_name  # noqa: PLC0415

    out = Path(cfg.output) / variant_name(mcfg)
    marker = out / "sweep.json"
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        manifest = read_manifest(out)
        if not verify_checksums(out, manifest):
            progress(f"{tag}: reusing bundle {out}")
            return out, manifest
    from edgekit.config import ExportConfig  # noqa: PLC0415
    from edgekit.export import export_bundle  # noqa: PLC0415

    weights = None
    if cfg.data and cfg.epochs > 0:
        progress(f"{tag}: training {cfg.epochs} epochs")
        weights = train(cfg, mcfg, out.with_name(out.name + "-train"))
    progress(f"{tag}: exporting int8")
    ecfg = ExportConfig(
        model=mcfg,
        precisions=("int8",),
        weights=weights,
        calibration=cfg.data,
        calibration_samples=cfg.calibration_samples,
        labels=tuple(labels) if labels and not weights else (),
        output=str(out),
    )
    out, manifest = export_bundle(ecfg, progress=lambda m: progress(f"{tag}: {m}"))
    (out / "sweep.json").write_text(json.dumps({"schema_version": 1, "key": key}) + "\n")
    store.add("export", {"bundle": str(out.resolve()), **manifest, "sweep": {"key": key}}, manifest=manifest)
    return out, manifest


def train(cfg: SweepConfig, mcfg, run_dir: Path) -> str:
    """Train with edgekit.train (issue 3's trainer); returns what `export --weights` takes."""
    try:
        from edgekit import train as trainer  # noqa: PLC0415
    except ImportError:
        raise UsageError(
            "training needs edgekit.train, which this installation lacks",
            hint="use --epochs 0 to export untrained weights calibrated on --data, or --latency-only",
        ) from None
    return trainer.sweep_train(mcfg, cfg.data, epochs=cfg.epochs, output=str(run_dir), seed=cfg.seed)


def _data_labels(data: str) -> tuple[str, ...]:
    from edgekit.errors import InputDataError  # noqa: PLC0415

    root = Path(data)
    if not root.is_dir():
        raise InputDataError(f"--data {data} is not a folder", hint="give DIR/<class>/*.jpg")
    labels = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if len(labels) < 2:
        raise InputDataError(f"--data {data} needs at least two class folders; found {len(labels)}")
    return labels


# --------------------------------------------------------------------------- profile + eval


def profile(bundle: Path, manifest: dict, device: str, cfg: SweepConfig) -> tuple[dict, dict]:
    """Profile the bundle's int8 model on one device; (result, device description)."""
    if device != "local":
        raise DeviceError(
            f"device {device!r}: sweeping on remote devices needs the device runner (edgekit.runner)",
            hint="use --device local",
        )
    return profile_local(bundle, manifest, cfg), {"name": "local", "kind": "local"}


def profile_local(bundle: Path, manifest: dict, cfg: SweepConfig) -> dict:
    """In-process latency of the int8 model on this machine (device_scripts' edgelib interpreter)."""
    import numpy as np  # noqa: PLC0415

    from edgekit.device_scripts import edgelib  # noqa: PLC0415
    from edgekit.manifest import primary_model  # noqa: PLC0415

    entry = primary_model(manifest)
    path = bundle / entry["file"]
    t0 = time.perf_counter()
    m = edgelib.Model.from_file(str(path), threads=cfg.threads)
    init_ms = (time.perf_counter() - t0) * 1000
    rng = np.random.default_rng(cfg.seed)
    x = m.quantize_input(rng.uniform(-1, 1, size=m.input_shape).astype(np.float32))
    t0 = time.perf_counter()
    m.invoke_raw(x)
    first_ms = (time.perf_counter() - t0) * 1000
    for _ in range(cfg.warmup):
        m.invoke_raw(x)
    samples = []
    for _ in range(cfg.runs):
        t0 = time.perf_counter()
        m.invoke_raw(x)
        samples.append(time.perf_counter() - t0)
    lat = edgelib.percentiles_ms(samples)
    cpu = edgelib.cpu_info()
    return {
        "schema_version": 1,
        "results": [
            {
                "precision": entry["precision"],
                "threads": cfg.threads,
                "batch": 1,
                "latency_ms": lat,
                "images_per_s": 1000.0 / lat["mean"] if lat.get("mean") else None,
                "init_ms": init_ms,
                "first_inference_ms": first_ms,
                "model_size_bytes": path.stat().st_size,
                "runs": cfg.runs,
            }
        ],
        "environment": {"cpu": cpu, "interpreter": {"name": m.runtime, "version": m.runtime_version}},
        "profiler": "edgekit.sweep.profile_local",
    }


def evaluate(bundle: Path, manifest: dict, device: str, cfg: SweepConfig) -> tuple[dict, dict]:
    """Top-1/top-5 of the int8 model on --data (host TFLite, the `local` device)."""
    if device != "local":
        raise DeviceError(
            f"device {device!r}: evaluating on remote devices needs the device runner (edgekit.runner)",
            hint="use --device local",
        )
    import numpy as np  # noqa: PLC0415

    from edgekit.data import load_folder  # noqa: PLC0415
    from edgekit.device_scripts import edgelib  # noqa: PLC0415
    from edgekit.manifest import primary_model, read_labels  # noqa: PLC0415

    entry = primary_model(manifest)
    labels = read_labels(bundle / manifest.get("labels_file", "labels.txt"))
    batch = load_folder(cfg.data, manifest["preprocessing"])
    index = {name: i for i, name in enumerate(labels)}
    y = np.array([index.get(Path(p).parent.name, -1) for p in batch.paths])
    keep = y >= 0
    m = edgelib.Model.from_file(str(bundle / entry["file"]), threads=cfg.threads)
    out = m.predict(batch.x[keep])
    y = y[keep]
    pred = out.argmax(-1)
    k = min(5, out.shape[-1])
    top5 = np.any(np.argsort(-out, axis=-1)[:, :k] == y[:, None], axis=-1)
    n_cls = len(labels)
    conf = np.zeros((n_cls, n_cls), dtype=int)
    for t, p in zip(y, pred, strict=True):
        conf[t, p] += 1
    per_class = {
        labels[c]: {"accuracy": float(conf[c, c] / conf[c].sum()), "n": int(conf[c].sum())}
        for c in range(n_cls)
        if conf[c].sum()
    }
    return (
        {
            "schema_version": 1,
            "bundle": str(bundle.resolve()),
            "tflite": {"top1": float(np.mean(pred == y)), "top5": float(np.mean(top5)), "n": int(y.size)},
            "per_class": per_class,
            "confusion": conf.tolist(),
            "labels": list(labels),
            "skipped": list(batch.skipped),
            "environment": {"interpreter": {"name": m.runtime, "version": m.runtime_version}},
        },
        {"name": "local", "kind": "local"},
    )


# --------------------------------------------------------------------------- summary


def summarize(store, keys: list[str], cfg: SweepConfig) -> dict:
    """Grid (α × resolution per device), Pareto front and the pick within the budget."""
    from edgekit.report.compare import best_within, pareto_front  # noqa: PLC0415

    rows = store.conn.execute(
        f"SELECT id, kind, sweep_key, device, alpha, resolution, model_name, p50_ms, top1, top5, macs, params, "
        f"size_bytes FROM runs WHERE kind IN ('profile', 'eval') AND sweep_key IN ({', '.join('?' * len(keys))}) "
        "ORDER BY id",
        keys,
    ).fetchall()
    cells: dict[tuple[str, str], dict] = {}
    for rid, kind, key, device, alpha, res, name, p50, top1, top5, macs, params, size in rows:
        c = cells.setdefault(
            (key, device), {"model": name, "device": device, "alpha": alpha, "resolution": res, "runs": []}
        )
        c["runs"].append(rid)
        c.update(
            {k: v for k, v in (("macs", macs), ("params", params), ("size_bytes", size)) if v is not None}
        )
        if kind == "profile":
            c["latency_ms"] = p50
        else:
            c.update(top1=top1, top5=top5)
    grid = sorted(cells.values(), key=lambda c: (c["device"], c["alpha"] or 0, c["resolution"] or 0))
    per_device = []
    for device in dict.fromkeys(c["device"] for c in grid):
        pts = [c for c in grid if c["device"] == device and c.get("latency_ms") is not None]
        metric = "top1" if all(c.get("top1") is not None for c in pts) and not cfg.latency_only else "macs"
        pts = [c for c in pts if c.get(metric) is not None]
        front = pareto_front(pts, y=metric)
        for i, c in enumerate(pts):
            c["pareto"] = i in front
        best = best_within(pts, cfg.budget_ms, y=metric)
        per_device.append(
            {
                "device": device,
                "ranked_by": metric,
                "front": [c["model"] for i, c in enumerate(pts) if i in front],
                "best_within_budget": best["model"] if best else None,
                "best": best,
            }
        )
    return {
        "schema_version": 1,
        "model": cfg.model,
        "alphas": list(cfg.alphas),
        "resolutions": list(cfg.resolutions),
        "devices": list(cfg.devices),
        "latency_only": cfg.latency_only,
        "budget_ms": cfg.budget_ms,
        "grid": grid,
        "pareto": per_device,
        "run_ids": sorted({r for c in grid for r in c["runs"]}),
    }
