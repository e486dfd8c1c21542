"""One job each on a device: profile, evaluate, camera. Prepare, run the script, pull outputs, label.

A job runs on one Target; fleets run the same job on many (edgekit.devices.fleet).
"""

from __future__ import annotations

import posixpath
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.devices.remote import Progress, run_script
from edgekit.devices.resolve import ModelRef
from edgekit.devices.staging import cleanup, prepare
from edgekit.devices.targets.base import Target
from edgekit.errors import InputDataError, UsageError
from edgekit.results import int8_speed


@dataclass(frozen=True)
class ProfileSettings:
    """`edgekit profile` flags, passed to profile_latency.py as they are."""

    threads: tuple[int, ...] = (1,)
    batch: tuple[int, ...] = (1,)
    runs: int = 50
    warmup: int = 5
    min_seconds: float = 1.0
    input: str = "random"  # random | zeros | an image folder on the host
    xnnpack: bool = True

    def __post_init__(self) -> None:
        if self.runs < 1 or self.warmup < 0 or self.min_seconds < 0:
            raise UsageError(
                f"--runs must be >= 1, --warmup >= 0, --min-seconds >= 0; received "
                f"{self.runs}, {self.warmup}, {self.min_seconds}"
            )
        if self.input not in ("random", "zeros") and not Path(self.input).is_dir():
            raise UsageError(f"--input must be random, zeros or an image folder; received {self.input!r}")



def _device_info(target: Target) -> dict:
    return target.describe()



def emulated_label(doc: dict) -> str | None:
    """What emulated the device's CPU (edgelib.cpu_info: qemu-user), or None on real hardware."""
    cpu = (doc.get("environment") or {}).get("cpu")
    return (cpu.get("emulated") or None) if isinstance(cpu, dict) else None



def _label(doc: dict, target: Target) -> dict:
    """The device, and whether its CPU was emulated, on every result: an emulated device's latency is
    never a device's speed, so JSON, the database and reports must be able to say so."""
    label = emulated_label(doc)
    doc["device"] = {**_device_info(target), "emulated": bool(label)}
    doc["emulated"] = bool(label)
    if label:
        doc["latency_note"] = f"emulated ({label}): latency not meaningful"
    return doc





def profile(
    target: Target, refs: list[ModelRef], settings: ProfileSettings, progress: Progress | None = None
) -> list[dict]:
    """Profile each model on the target; returns one profile_latency.py document per model."""
    data = [] if settings.input in ("random", "zeros") else [settings.input]
    paths = prepare(target, [str(r.path) for r in refs] + data)
    docs = []
    try:
        for i, ref in enumerate(refs, 1):
            args = [
                "--model", paths.on_target(ref.path),
                "--threads", ",".join(map(str, settings.threads)),
                "--batch", ",".join(map(str, settings.batch)),
                "--runs", str(settings.runs),
                "--warmup", str(settings.warmup),
                "--min-seconds", str(settings.min_seconds),
                "--input", paths.on_target(settings.input) if data else settings.input,
            ]  # fmt: skip
            if not settings.xnnpack:
                args.append("--no-xnnpack")
            label = f"{ref.precision or ref.path.name} ({i}/{len(refs)})"

            def step(msg: str, label: str = label) -> None:
                if progress:
                    progress(f"{label} {msg}")

            doc = run_script(target, paths, "profile_latency.py", args, progress=step)
            docs.append(_label(doc, target))
    finally:
        cleanup(target, paths)
    return docs



def profile_rows(docs: list[dict]) -> list[dict]:
    """One flat object per (model, threads, batch), marking the fastest precision per setting and why."""
    rows = []
    for doc in docs:
        m = doc["model"]
        label = emulated_label(doc)
        for c in doc["configurations"]:
            rows.append(
                {
                    "model": m["file"],
                    "precision": m.get("precision"),
                    "device": doc.get("device", {}).get("name"),
                    "emulated": bool(label),
                    **({"latency_note": f"emulated ({label}): latency not meaningful"} if label else {}),
                    "runtime": doc["runtime"]["name"],
                    "runtime_version": doc["runtime"]["version"],
                    "xnnpack": doc["runtime"]["xnnpack"],
                    "model_size_bytes": m["size_bytes"],
                    **c,
                    "peak_rss_bytes": int(c["peak_rss_mb"] * 2**20) if c.get("peak_rss_mb") else None,
                }
            )
    precisions = {r["precision"] for r in rows}
    note = docs[0].get("int8_note") if docs else None
    cpu = docs[0].get("environment", {}).get("cpu", {}) if docs else {}
    for key in {(r["threads"], r["batch"]) for r in rows}:
        same = [r for r in rows if (r["threads"], r["batch"]) == key and r.get("supported")]
        for r in same:
            r["fastest"] = False
        if len(precisions) > 1 and same and not any(r["emulated"] for r in same):  # no speed claims
            best = min(same, key=lambda r: r["latency_ms"]["p50"])
            best["fastest"] = True
            others = ", ".join(
                f"{r['precision']} {r['latency_ms']['p50']:.3f} ms" for r in same if r is not best
            )
            best["fastest_note"] = (
                f"{best['precision']} is fastest at threads={key[0]} batch={key[1]} "
                f"({best['latency_ms']['p50']:.3f} ms p50 vs {others}). {_int8_vs_float(same, cpu, note)}"
            )
    return rows



def _int8_vs_float(same: list[dict], cpu: dict, rule: str | None) -> str:
    """The measured int8/float verdict for one setting; the bare rule of thumb when no pair was timed."""
    p50 = {r["precision"]: r["latency_ms"]["p50"] for r in same}
    flt = next((p for p in ("float32", "float16") if p in p50), None)
    if "int8" in p50 and flt:
        return int8_speed.verdict(cpu, p50["int8"], p50[flt], flt)
    return f"Rule of thumb for int8 on this CPU: {rule}" if rule else ""


def profile_vs_reference(refs: list[ModelRef], rows: list[dict]) -> dict | None:
    """The primary precision (int8 when exported) against the bundle's desktop reference: batch 1,
    then throughput."""
    from edgekit.results.comparison import as_dict, for_profile

    primary = next((r.precision for r in refs if r.precision == "int8"), refs[0].precision)
    return as_dict(for_profile(refs[0].bundle, rows, primary))


def record_profile(docs: list[dict], rows: list[dict], refs: list[ModelRef], vs: dict | None = None, *, db=None):
    """One stored run per profile command: every configuration of every precision. Call it after the
    result is printed; a database that refuses the run keeps it in a file (RecordOutcome says where)."""
    from edgekit.results.unrecorded import record_or_keep

    if not docs:
        return None
    manifest = refs[0].manifest
    result = {
        "schema_version": 1,
        "configurations": rows,
        "environment": docs[0]["environment"],
        "runtime": docs[0]["runtime"],
        "device": docs[0].get("device"),
        "emulated": any(r.get("emulated") for r in rows),
        "models": [d["model"] for d in docs],
    }
    if len(docs) == 1:
        result["precision"] = docs[0]["model"].get("precision")
    result["vs_reference"] = vs if vs is not None else profile_vs_reference(refs, rows)
    return record_or_keep("profile", result, manifest=manifest, device=docs[0].get("device") or {}, db=db)


def evaluate(
    target: Target,
    ref: ModelRef,
    data: str,
    *,
    labels: str | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> dict:
    """eval_images.py on the target over a folder, CSV, .npz or `builtin:NAME` on the host; with
    `limit`, over the seeded sample of at most that many images the desktop `eval` would take."""
    from edgekit.data.datasets import is_builtin

    if is_builtin(data):
        # A built-in dataset lives inside a desktop package: preprocess it here into the .npz form,
        # which the device evaluates bit-for-bit without any image decoder.
        with tempfile.TemporaryDirectory(prefix="edgekit-builtin-") as tmp:
            npz = pack_builtin_npz(data, ref, Path(tmp) / "eval_inputs.npz", limit=limit, seed=seed)
            doc = evaluate(target, ref, str(npz), labels=labels, threads=threads, progress=progress)
        doc.setdefault("data", {}).update(source=data, limit=limit, seed=seed)  # not the temporary file
        return doc
    data_path = Path(data).expanduser()
    if not data_path.exists():
        raise InputDataError(
            f"--data {data} does not exist", hint="pass an image folder, a CSV, an .npz or builtin:NAME"
        )
    if limit:
        with tempfile.TemporaryDirectory(prefix="edgekit-sample-") as tmp:
            sampled = _sample(data_path, limit, seed, Path(tmp), labels)
            doc = evaluate(target, ref, str(sampled), labels=labels, threads=threads, progress=progress)
        doc.setdefault("data", {}).update(source=str(data_path), limit=limit, seed=seed)
        return doc
    host = [str(ref.path), str(data_path)]
    if data_path.suffix.lower() == ".csv":
        host += _csv_images(data_path)
    if labels:
        host.append(labels)
    paths = prepare(target, host)
    try:
        args = ["--model", paths.on_target(ref.path), "--data", paths.on_target(data_path)]
        if labels:
            args += ["--labels", paths.on_target(labels)]
        if threads:
            args += ["--threads", str(threads)]
        doc = run_script(target, paths, "eval_images.py", args, progress=progress)
    finally:
        cleanup(target, paths)
    return _label(doc, target)



def _sample(data: Path, limit: int, seed: int, tmp: Path, labels: str | None) -> Path:
    """The seeded sample `eval --limit N --seed S` takes on the desktop (datasets.sample), as a
    folder of copies (DIR/<class>/<name>: file names kept, so predictions still match the desktop's
    by name) or, for an .npz, its rows."""
    import numpy as np

    if data.suffix.lower() == ".npz":
        with np.load(data, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        n = len(arrays.get("x", ()))
        if n <= limit:
            return data
        idx = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
        out = tmp / "sample.npz"
        np.savez(out, **{k: v[idx] if len(v) == n else v for k, v in arrays.items()})
        return out
    from edgekit.data import datasets

    ds = datasets.sample(datasets.open_dataset(data, labels), limit, seed)
    root = tmp / "sample"
    for i, (p, y) in enumerate(zip(ds.paths, ds.y, strict=True)):
        dest = root / ds.class_names[int(y)] / Path(p).name
        if dest.exists():  # the same name in two sub-folders of one class
            dest = dest.with_name(f"{i}_{dest.name}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    return root


def _csv_images(csv_path: Path) -> list[str]:
    """Images a CSV names, so a remote preparer can push them too (local: already in place)."""
    import csv

    out = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if row and row[0].strip() and not row[0].startswith("#"):
                p = Path(row[0].strip())
                p = p if p.is_absolute() else csv_path.parent / p
                if p.is_file():
                    out.append(str(p))
    return out



def pack_eval_npz(folder: str | Path, prep: dict, labels: list[str], out: str | Path) -> Path:
    """Preprocess a DIR/<class>/* folder on the desktop into an .npz eval_images.py reads, so a device
    without OpenCV or Pillow is evaluated bit-for-bit on the desktop's inputs."""
    import numpy as np

    from edgekit.data.datasets import load_folder

    batch = load_folder(folder, prep)
    index = {name: i for i, name in enumerate(labels)}
    y = []
    for p in batch.paths:
        cls = Path(p).parent.name
        y.append(index.get(cls, -1))
    out = Path(out)
    np.savez(out, x=batch.x.astype(np.float32), y=np.asarray(y, np.int64), paths=np.asarray(batch.paths))
    return out



def pack_builtin_npz(spec: str, ref: ModelRef, out: str | Path, *, limit: int | None = None, seed: int = 0) -> Path:
    """`builtin:NAME[:part]` preprocessed with the model's own preprocessing, labels aligned by name."""
    import numpy as np

    from edgekit.data import datasets as datasets
    from edgekit.device_scripts import edgelib

    labels, meta = edgelib.read_embedded(Path(ref.path).read_bytes())
    manifest = ref.manifest or {}
    prep = manifest.get("preprocessing") or (meta or {}).get("preprocessing")
    if ref.bundle is not None and (ref.bundle / "labels.txt").is_file():
        labels = [ln.strip() for ln in (ref.bundle / "labels.txt").read_text().splitlines() if ln.strip()]
    if not prep or not labels:
        raise InputDataError(
            f"{spec} needs a model that carries its labels and preprocessing ({ref.path} does not)",
            hint="evaluate an edgekit bundle, or pass an image folder with --labels",
        )
    batch = datasets.decode(datasets.open_dataset(spec), prep, limit=limit, seed=seed)
    y = datasets.align_labels(batch.class_names, labels)[batch.y]
    out = Path(out)
    np.savez(out, x=batch.x.astype(np.float32), y=y.astype(np.int64), paths=np.asarray(batch.paths))
    return out



@dataclass(frozen=True)
class CameraSettings:
    source: str | None = None  # video file or stream URL
    camera: int | None = None  # OpenCV camera index on the device
    picamera2: bool = False
    threads: int | None = None
    top_k: int = 3
    max_frames: int | None = None
    realtime: bool = False
    labels: str | None = None
    serve: str | None = None  # the script's --serve [HOST:]PORT (a live view; edgekit.devices.preview)
    serve_fps: float | None = None



def camera(
    target: Target,
    ref: ModelRef,
    settings: CameraSettings,
    *,
    log: str | None = None,
    progress: Progress | None = None,
    on_serving: Callable[[str], None] | None = None,
) -> dict:
    """classify_camera.py on the target (headless); its summary, with the frame log pulled to `log`.
    With `settings.serve`, `on_serving(url)` hears where the script's live view listens on the target."""
    is_file = settings.source is not None and "://" not in settings.source
    if is_file and not Path(settings.source).expanduser().is_file():
        raise InputDataError(f"video file {settings.source} does not exist")
    host = (
        [str(ref.path)]
        + ([settings.source] if is_file else [])
        + ([settings.labels] if settings.labels else [])
    )
    paths = prepare(target, host)
    try:
        args = ["--model", paths.on_target(ref.path), "--headless", "--top-k", str(settings.top_k)]
        if settings.source is not None:
            args += ["--source", paths.on_target(settings.source) if is_file else settings.source]
        elif settings.picamera2:
            args.append("--picamera2")
        else:
            args += ["--camera", str(settings.camera or 0)]
        if settings.threads:
            args += ["--threads", str(settings.threads)]
        if settings.max_frames:
            args += ["--max-frames", str(settings.max_frames)]
        if settings.realtime:
            args.append("--realtime")
        if settings.labels:
            args += ["--labels", paths.on_target(settings.labels)]
        if settings.serve:
            args += ["--serve", settings.serve]
        if settings.serve_fps:
            args += ["--serve-fps", f"{settings.serve_fps:g}"]
        remote_log = posixpath.join(paths.scratch, "predictions.jsonl")
        if log:
            args += ["--log", remote_log]
        try:
            doc = run_script(target, paths, "classify_camera.py", args, progress=progress, on_serving=on_serving)
        finally:
            if log and target.exists(remote_log):
                target.pull(remote_log, log)  # complete up to the last frame, even after a failure
        if log:
            doc["log"] = str(Path(log).resolve())
    finally:
        cleanup(target, paths)
    return _label(doc, target)
