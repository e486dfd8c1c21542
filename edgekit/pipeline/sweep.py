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
from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit.errors import EdgekitError, UsageError
from edgekit.pipeline.backbone import DEFAULT_FINE_TUNE, DEFAULT_FINE_TUNE_EPOCHS

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
    runs: int = 30  # timed inferences per profile (at least; and for at least min_seconds)
    warmup: int = 3
    min_seconds: float = 1.0
    val_data: str | None = None  # held-out images to evaluate on (default: --data itself)
    calibration_samples: int = 32
    output: str = "edgekit-out/sweep"
    db: str | None = None
    seed: int = 0
    weights: str | None = None  # pretrained weights: every trained cell fine-tunes them (pipeline.transfer)
    fine_tune: str | None = None  # stage 2 of the fine-tune; None: the default (pipeline.backbone)
    fine_tune_epochs: int = DEFAULT_FINE_TUNE_EPOCHS
    fine_tune_lr: float | None = None

    def __post_init__(self) -> None:
        if not self.alphas or not self.resolutions:
            raise UsageError("a sweep needs at least one --alpha and one --resolution")
        if self.data is None and not self.latency_only:
            raise UsageError("give --data DIR (train and evaluate) or --latency-only (random weights)")
        if self.data is not None and self.latency_only:
            raise UsageError(
                "--latency-only measures random weights; leave out --data (or drop --latency-only)"
            )
        if self.weights is not None and (self.data is None or self.epochs < 1):
            raise UsageError("--weights fine-tunes every cell: give --data and --epochs of at least 1")
        if self.fine_tune is not None and self.weights is None:
            raise UsageError("--fine-tune needs --weights (pretrained weights to fine-tune)")
        if self.val_data is not None and self.data is None:
            raise UsageError("--val-data needs --data (the training images)")
        if self.min_seconds < 0:
            raise UsageError(f"--min-seconds must be >= 0; received {self.min_seconds}")
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
        parts["val_data"] = str(Path(cfg.val_data).resolve()) if cfg.val_data else None
        parts["epochs"] = cfg.epochs
        parts["seed"] = cfg.seed
    if cfg.weights:  # only then, so keys of sweeps from scratch stay as they were
        parts["weights"] = cfg.weights if cfg.weights == "imagenet" else str(Path(cfg.weights).resolve())
        parts["fine_tune"] = [_fine_tune(cfg), cfg.fine_tune_epochs, cfg.fine_tune_lr]
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{model_cfg.family}/a{point.alpha:g}/r{point.resolution}/{parts['mode']}/{digest}"


def _model_config(cfg: SweepConfig, point: Point, classes: int):
    from edgekit.models import resolve_config

    return resolve_config(cfg.model, alpha=point.alpha, resolution=point.resolution, classes=classes)


def run_sweep(cfg: SweepConfig, progress: Progress = lambda _m: None) -> dict:
    """The whole sweep; returns the summary (grid, Pareto table, best within budget, timings)."""
    from edgekit.results.store import open_store

    t_start = time.perf_counter()
    labels = _data_labels(cfg.data) if cfg.data else ()
    classes = cfg.classes or (len(labels) if labels else 1000)
    if labels and cfg.classes and cfg.classes != len(labels):
        raise UsageError(
            f"--classes {cfg.classes} disagrees with the {len(labels)} class folders in {cfg.data}"
        )
    points = [Point(a, r) for a in cfg.alphas for r in cfg.resolutions]
    from edgekit.models import variant_name

    cells_skipped = []
    if cfg.weights:  # only the cells the weights fit (for imagenet: those with published weights)
        from edgekit.pipeline.backbone import unfit_cells

        why = unfit_cells(cfg.weights, [_model_config(cfg, p, classes) for p in points], cfg.data, progress)
        for point, reason in zip(points, why, strict=True):
            if reason:
                progress(f"α={point.alpha:g} {point.resolution}px: skipped, {reason}")
                cells_skipped.append({"alpha": point.alpha, "resolution": point.resolution, "reason": reason})
        points = [p for p, reason in zip(points, why, strict=True) if not reason]

    done, skipped, steps, failures, lost = [], [], [], [], []
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
            # One configuration (or one device) failing is reported and does not stop the others.
            try:
                bundle, manifest = _bundle(cfg, mcfg, key, labels, tag, progress, _Recorder(store, lost))
            except EdgekitError as exc:
                progress(f"{tag}: failed: {exc}")
                failures.append({"key": key, "model": variant_name(mcfg), "device": None, "error": str(exc)})
                continue
            for device in todo:
                try:
                    _measure(cfg, _Recorder(store, lost), key, bundle, manifest, device, tag, progress)
                except EdgekitError as exc:
                    progress(f"{tag}: failed on {device}: {exc}")
                    failures.append(
                        {"key": key, "model": variant_name(mcfg), "device": device, "error": str(exc)}
                    )
            steps.append({"key": key, "seconds": round(time.perf_counter() - t0, 1)})
            done.append(key)
        keys = [sweep_key(cfg, _model_config(cfg, p, classes), p) for p in points]
        summary = summarize(store, keys, cfg)
    summary.update(
        db=str(db_path),
        done=len(done),
        skipped=len(skipped),
        steps=steps,
        failures=failures,
        unrecorded=[asdict(o) for o in lost],  # results the database refused, kept in files
        weights=cfg.weights,
        cells_skipped=cells_skipped,
        total_s=round(time.perf_counter() - t_start, 1),
    )
    return summary


class _Recorder:
    """The store as the sweep's steps use it, except that a database failing mid-sweep keeps the
    result in a file (edgekit.results.unrecorded) instead of losing a measurement."""

    def __init__(self, store, lost: list) -> None:
        self.store, self.lost = store, lost

    def has_sweep_run(self, key: str, device: str, kind: str) -> bool:
        return self.store.has_sweep_run(key, device, kind)

    def add(self, kind: str, result, *, manifest=None, device=None) -> None:
        import sqlite3

        from edgekit.results.unrecorded import keep

        try:
            self.store.add(kind, result, manifest=manifest, device=device)
        except (sqlite3.Error, OSError) as exc:
            self.lost.append(keep(kind, result, manifest=manifest, device=device, db=self.store.path,
                                  error=f"{exc.__class__.__name__}: {exc}"))  # fmt: skip


def _measure(
    cfg: SweepConfig, store, key: str, bundle: Path, manifest: dict, device: str, tag: str, progress
) -> None:
    """Profile (and evaluate, with data) one bundle on one device; each result is its own stored run."""

    def step(m: str) -> None:
        progress(f"{tag}: {m}")

    if cfg.data and not (bundle / "reference.json").is_file():
        # the desktop float reference (and host .tflite), timed: what every device result is set against
        from edgekit.pipeline.reference import evaluate as desktop_eval
        from edgekit.pipeline.reference_speed import Timing

        step("desktop reference (float Keras and host TFLite)")
        from edgekit.pipeline.reference import recorded_view
        from edgekit.results.unrecorded import record_or_keep

        res, man = desktop_eval(str(bundle), cfg.val_data or cfg.data, progress=step, timing=Timing(min_seconds=0.2))
        record_or_keep("eval", {**recorded_view(res), "sweep": {"key": key}}, manifest=man, db=cfg.db)
    if not store.has_sweep_run(key, device, "profile"):
        step(f"profiling on {device}")
        result, dev = profile(bundle, manifest, device, cfg, step)
        result["sweep"] = {"key": key}
        store.add("profile", result, manifest=manifest, device=dev)
    if cfg.data and not store.has_sweep_run(key, device, "eval"):
        step(f"evaluating on {device}")
        result, dev = evaluate(bundle, manifest, device, cfg, step)
        result["sweep"] = {"key": key}
        store.add("eval", result, manifest=manifest, device=dev)


# --------------------------------------------------------------------------- build + export


def _bundle(
    cfg: SweepConfig, mcfg, key: str, labels, tag: str, progress: Progress, store
) -> tuple[Path, dict]:
    """The int8 bundle for one configuration: reused when this sweep key already exported it."""
    from edgekit.bundle.manifest import read_manifest, verify_checksums
    from edgekit.models import variant_name

    out = Path(cfg.output) / variant_name(mcfg)
    marker = out / "sweep.json"
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        manifest = read_manifest(out)
        if not verify_checksums(out, manifest):
            progress(f"{tag}: reusing bundle {out}")
            return out, manifest
    from edgekit.config import ExportConfig
    from edgekit.pipeline.export import export_bundle

    weights = None
    if cfg.data and cfg.epochs > 0:
        progress(f"{tag}: training {cfg.epochs} epochs")
        weights = train(cfg, mcfg, out.with_name(out.name + "-train"), lambda m: progress(f"{tag}: {m}"))
    progress(f"{tag}: exporting int8")
    ecfg = ExportConfig(
        model=mcfg,
        precisions=("int8",),
        weights=weights,
        calibration=None if weights else cfg.data,  # a run folder calibrates on its own training sample
        calibration_samples=cfg.calibration_samples,
        labels=tuple(labels) if labels and not weights else (),
        output=str(out),
    )
    out, manifest = export_bundle(ecfg, progress=lambda m: progress(f"{tag}: {m}"))
    (out / "sweep.json").write_text(json.dumps({"schema_version": 1, "key": key}) + "\n")
    store.add("export", {"bundle": str(out.resolve()), **manifest, "sweep": {"key": key}}, manifest=manifest)
    return out, manifest


def train(cfg: SweepConfig, mcfg, run_dir: Path, progress: Progress) -> str:
    """Train with edgekit.pipeline.train; returns the run folder (what `export --weights` takes).

    A finished run folder from an interrupted sweep is reused; a started one is resumed.
    """
    from edgekit.bundle.runfolder import RUN_JSON
    from edgekit.config import WeightsRequest
    from edgekit.pipeline.backbone import HEAD_LR
    from edgekit.pipeline.train_config import TrainConfig
    from edgekit.pipeline.transfer import run_training

    if (run_dir / RUN_JSON).is_file():
        return str(run_dir)
    tcfg = TrainConfig(
        # with weights the architecture comes from them; the cell's α and resolution are checked
        model=None if cfg.weights else mcfg,
        weights_request=WeightsRequest(mcfg.family, mcfg.alpha, mcfg.resolution) if cfg.weights else None,
        data=cfg.data,
        output=str(run_dir),
        val_data=cfg.val_data,
        epochs=cfg.epochs,
        seed=cfg.seed,
        weights=cfg.weights,
        fine_tune=_fine_tune(cfg),
        **({"lr": HEAD_LR} if cfg.weights else {}),
        fine_tune_epochs=cfg.fine_tune_epochs,
        fine_tune_lr=cfg.fine_tune_lr,
    )
    resume = (run_dir / "checkpoints" / "state.json").is_file()
    run_training(tcfg, progress=progress, resume=resume)
    return str(run_dir)


def _fine_tune(cfg: SweepConfig) -> str:
    return cfg.fine_tune or DEFAULT_FINE_TUNE


def _data_labels(data: str) -> tuple[str, ...]:
    from edgekit.errors import InputDataError

    root = Path(data)
    if not root.is_dir():
        raise InputDataError(f"--data {data} is not a folder", hint="give DIR/<class>/*.jpg")
    labels = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if len(labels) < 2:
        raise InputDataError(f"--data {data} needs at least two class folders; found {len(labels)}")
    return labels


# --------------------------------------------------------------------------- profile + eval


def profile(
    bundle: Path, manifest: dict, device: str, cfg: SweepConfig, progress: Progress
) -> tuple[dict, dict]:
    """profile_latency.py on the device through edgekit.devices.jobs; (result to record, device description)."""
    from edgekit.devices import jobs, resolve

    target = resolve.resolve_device(device)
    try:
        refs = resolve.resolve_models(str(bundle), all_precisions=False)
        settings = jobs.ProfileSettings(
            threads=(cfg.threads,), batch=(1,), runs=cfg.runs, warmup=cfg.warmup, min_seconds=cfg.min_seconds
        )
        docs = jobs.profile(target, refs, settings, progress=progress)
    finally:
        target.close()
    from edgekit.results.comparison import as_dict, for_profile

    doc = docs[0]
    rows = jobs.profile_rows(docs)
    result = {
        "schema_version": 1,
        "bundle": str(bundle.resolve()),
        "precision": doc["model"].get("precision"),
        "configurations": rows,
        "vs_reference": as_dict(for_profile(bundle, rows)),
        "environment": doc.get("environment"),
        "environment_after": doc.get("environment_after"),
        "runtime": doc.get("runtime"),
        "device": doc.get("device"),
        "models": [doc["model"]],
    }
    return result, doc.get("device") or {"name": device}


def evaluate(
    bundle: Path, manifest: dict, device: str, cfg: SweepConfig, progress: Progress
) -> tuple[dict, dict]:
    """eval_images.py on the device over the validation images (or --data), through edgekit.devices.jobs."""
    from edgekit.devices import jobs, resolve

    target = resolve.resolve_device(device)
    data = cfg.val_data or cfg.data
    try:
        (ref,) = resolve.resolve_models(str(bundle), all_precisions=False)
        doc = jobs.evaluate(target, ref, data, threads=cfg.threads, progress=progress)
    finally:
        target.close()
    result = {
        "schema_version": 1,
        "bundle": str(bundle.resolve()),
        "device": doc.get("device"),
        "precision": doc["model"].get("precision"),
        "tflite": {k: doc.get(k) for k in ("top1", "top5", "n", "latency_ms", "runtime")},
        "data": data,
        "data_note": None if cfg.val_data else "evaluated on --data itself (training images included)",
        "device_result": doc,
    }
    from edgekit.results.comparison import device_eval_fields

    result.update(device_eval_fields(bundle, doc))
    return result, doc.get("device") or {"name": device}


# --------------------------------------------------------------------------- summary


def summarize(store, keys: list[str], cfg: SweepConfig) -> dict:
    """Grid (α × resolution per device), Pareto front and the pick within the budget."""
    from edgekit.results.comparison import merged
    from edgekit.results.pareto import best_within, is_emulated, pareto_front

    cells: dict[tuple[str, str], dict] = {}
    references = []  # the desktop evals (device "host"): the reference of each cell, not a cell
    for r in store.sweep_runs(keys):
        key, device = r["sweep_key"], r["device"]
        if r["kind"] == "eval" and device == "host":
            references.append(r["id"])
            continue
        c = cells.setdefault(
            (key, device),
            {"model": r["model_name"], "device": device, "alpha": r["alpha"], "resolution": r["resolution"], "runs": []},
        )
        c["runs"].append(r["id"])
        c.update({k: r[k] for k in ("macs", "params", "size_bytes") if r[k] is not None})
        vs = (r["result"] or {}).get("vs_reference") if isinstance(r["result"], dict) else None
        if r["kind"] == "profile":
            c["latency_ms"] = r["p50_ms"]
            c["emulated"] = is_emulated({"result": r["result"]})
            c["speed_vs_reference"] = vs
        else:
            c.update(top1=r["top1"], top5=r["top5"])
            c["accuracy_vs_reference"] = vs
    for c in cells.values():  # latency from the profile, accuracy from the eval: one comparison
        cmp = merged(c.pop("speed_vs_reference", None), c.pop("accuracy_vs_reference", None))
        c["vs_reference"] = cmp.to_dict() if cmp else None
        c["latency_ratio"] = cmp.latency_ratio if cmp else None
        c["vs_reference_text"] = cmp.sentence(f"{c['model']} on {c['device']}") if cmp else None
    grid = sorted(cells.values(), key=lambda c: (c["device"], c["alpha"] or 0, c["resolution"] or 0))
    per_device = []
    for device in dict.fromkeys(c["device"] for c in grid):
        # an emulated device's latency ranks nothing (it measures qemu, not the CPU)
        pts = [
            c
            for c in grid
            if c["device"] == device and c.get("latency_ms") is not None and not c.get("emulated")
        ]
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
        "run_ids": sorted({r for c in grid for r in c["runs"]} | set(references)),
    }
