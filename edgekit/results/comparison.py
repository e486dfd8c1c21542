"""A device result against the desktop float reference, built here once for every producer.

`edgekit eval` writes the reference's figures into a bundle's `reference.json` (accuracy, per-image
predictions, and since schema 2 its speed: batch-1 latency and throughput, where it ran, the Keras
backend, versions) for the float Keras model and for the host `.tflite`. `eval --device`, `profile`,
`camera`, `sweep` and the report read them through `Reference` and compare with `compare()`, so
"the Pi is 14x slower and 1.2 points less accurate than the desktop GPU" is computed one way.
Ratios are "times slower" (device / reference latency, reference / device throughput): above 1 the
device is slower. Accuracy changes are device - reference in percentage points. No TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

REFERENCE_JSON = "reference.json"
NOT_MEASURED = "not measured"


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _frac(v) -> float | None:
    n = _num(v)
    return None if n is None else (n / 100.0 if n > 1.0 else n)


@dataclass(frozen=True)
class Speed:
    """One model's speed: p50/p90 per image at batch 1, images/s at `throughput_batch`."""

    p50_ms: float | None = None
    p90_ms: float | None = None
    images_per_s: float | None = None
    throughput_batch: int | None = None
    threads: int | None = None

    @classmethod
    def from_figures(cls, d) -> Speed:
        d = d if isinstance(d, dict) else {}
        lat = d.get("latency_ms") if isinstance(d.get("latency_ms"), dict) else {}
        thr = d.get("throughput") if isinstance(d.get("throughput"), dict) else {}
        return cls(
            p50_ms=_num(lat.get("p50")),
            p90_ms=_num(lat.get("p90")),
            images_per_s=_num(thr.get("images_per_s")),
            throughput_batch=int(thr["batch"]) if _num(thr.get("batch")) else None,
            threads=int(d["threads"]) if _num(d.get("threads")) else None,
        )

    @property
    def measured(self) -> bool:
        return self.p50_ms is not None and self.p50_ms > 0


def where(device, backend: str | None = None, precision: str | None = None) -> str | None:
    """"GPU NVIDIA H200 (Keras/torch)" or "CPU AMD EPYC 7B13 (Keras/tensorflow)"; None when unknown."""
    if not isinstance(device, dict):
        return None if device is None else str(device)
    text = " ".join(str(v) for v in (device.get("type"), device.get("name")) if v) or None
    if text is None:
        return None
    tags = [f"Keras/{backend}" if backend else None, precision if precision and precision != "float32" else None]
    tags = [t for t in tags if t]
    return text + (f" ({', '.join(tags)})" if tags else "")


@dataclass(frozen=True)
class Reference:
    """What the desktop eval recorded: the float Keras reference and the host .tflite."""

    top1: float | None = None
    top5: float | None = None
    n: int | None = None
    device: dict | None = None
    backend: str | None = None
    precision: str | None = None
    speed: Speed = field(default_factory=Speed)
    host_top1: float | None = None
    host_speed: Speed = field(default_factory=Speed)
    host_runtime: str | None = None
    predictions: dict = field(default_factory=dict)  # image file name -> the reference's top-1 index
    host_predictions: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc) -> Reference | None:
        """From reference.json or a stored desktop-eval result; None when it holds no reference."""
        if not isinstance(doc, dict):
            return None
        ref = doc.get("reference") if isinstance(doc.get("reference"), dict) else {}
        # a device eval's result keeps the host's figures under host_tflite (its tflite is the device's)
        host = next((doc[k] for k in ("host_tflite", "tflite") if isinstance(doc.get(k), dict)), {})
        if not ref and not host:
            return None
        return cls(
            top1=_frac(ref.get("top1")),
            top5=_frac(ref.get("top5")),
            n=int(ref["n"]) if _num(ref.get("n")) else None,
            device=ref.get("device") if isinstance(ref.get("device"), dict) else None,
            backend=ref.get("backend") if isinstance(ref.get("backend"), str) else ("tensorflow" if ref else None),
            precision=ref.get("precision") if isinstance(ref.get("precision"), str) else None,
            speed=Speed.from_figures(ref),
            host_top1=_frac(host.get("top1")),
            host_speed=Speed.from_figures(host),
            host_runtime=host.get("runtime") if isinstance(host.get("runtime"), str) else None,
            predictions=_by_name(ref.get("predictions")),
            host_predictions=_by_name(host.get("predictions")),
        )

    @classmethod
    def load(cls, bundle: Path | str | None) -> Reference | None:
        """The bundle's reference.json; None when there is none or it cannot be read."""
        if bundle is None:
            return None
        return cls.from_json(_read(bundle))

    @property
    def where(self) -> str | None:
        return where(self.device, self.backend, self.precision)

    @property
    def label(self) -> str | None:
        """"NVIDIA H200, Keras/torch" (the kind says GPU or CPU)."""
        name = (self.device or {}).get("name")
        bits = [name, f"Keras/{self.backend}" if self.backend else None]
        if self.precision and self.precision != "float32":
            bits.append(self.precision)
        return ", ".join(str(b) for b in bits if b) or None

    @property
    def kind(self) -> str:
        """"desktop GPU" / "desktop CPU" / "desktop reference"."""
        t = (self.device or {}).get("type")
        return f"desktop {t}" if t else "desktop reference"


def _by_name(preds) -> dict:
    if not isinstance(preds, list):
        return {}
    return {
        Path(str(p.get("path", ""))).name: p.get("pred")
        for p in preds
        if isinstance(p, dict) and isinstance(p.get("pred"), int)
    }


def _agreement(device_preds, by_name: dict) -> tuple[float | None, int]:
    if not by_name or not isinstance(device_preds, list):
        return None, 0
    same = [
        by_name[Path(str(p["path"])).name] == p.get("pred")
        for p in device_preds
        if isinstance(p, dict) and "path" in p and Path(str(p["path"])).name in by_name
    ]
    return (sum(same) / len(same), len(same)) if same else (None, 0)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b and b > 0 else None


@dataclass(frozen=True)
class Comparison:
    """One device result beside the desktop reference (and the host .tflite)."""

    reference_where: str | None = None  # "GPU NVIDIA H200 (Keras/torch)"
    reference_kind: str = "desktop reference"  # "desktop GPU" / "desktop CPU"
    reference_label: str | None = None  # "NVIDIA H200, Keras/torch"
    # latency per image at batch 1
    device_p50_ms: float | None = None
    reference_p50_ms: float | None = None
    host_tflite_p50_ms: float | None = None
    latency_ratio: float | None = None  # device / reference: "N x slower"
    latency_ratio_host_tflite: float | None = None  # device / host .tflite
    # throughput beside it
    device_images_per_s: float | None = None
    device_batch: int | None = None
    device_threads: int | None = None
    reference_images_per_s: float | None = None
    reference_batch: int | None = None
    throughput_ratio: float | None = None  # reference / device images/s: "N x slower"
    # accuracy
    top1: float | None = None
    reference_top1: float | None = None
    top1_change_points: float | None = None  # device - reference
    agreement: float | None = None  # top-1 agreement with the reference's per-image predictions
    host_tflite_top1_change_points: float | None = None
    host_tflite_agreement: float | None = None
    matched_images: int = 0
    notes: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict) -> Comparison:
        """Back from a stored result's `vs_reference` (keys this edgekit does not know are ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        kw["notes"] = tuple(kw.get("notes") or ())
        return cls(**kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d

    def sentence(self, device: str) -> str:
        """"pi is 14× slower and 1.2 points less accurate than the desktop GPU (NVIDIA H200, Keras/torch)"."""
        ref = self.reference_kind + (f" ({self.reference_label})" if self.reference_label else "")
        parts = []
        if self.latency_ratio is not None:
            r = self.latency_ratio
            parts.append(f"{_times(r)} slower" if r >= 1 else f"{_times(1 / r)} faster")
        p = self.top1_change_points
        same_top1 = p is not None and abs(p) < 0.05
        if p is not None and not same_top1:
            parts.append(f"{abs(p):.1f} points {'less' if p < 0 else 'more'} accurate")
        if parts:
            text = f"{device} is {' and '.join(parts)} than the {ref}" + (", at the same top-1" if same_top1 else "")
        elif same_top1:
            text = f"{device} has the top-1 of the {ref}"
        else:
            text = f"{device}: nothing to compare with the {ref}"
        if self.latency_ratio is not None:
            text += f": {self.device_p50_ms:.3g} vs {self.reference_p50_ms:.3g} ms per image at batch 1"
        elif self.reference_p50_ms is None:
            text += f"; reference latency {NOT_MEASURED}"
        return text


def _times(r: float) -> str:
    return f"{r:.0f}×" if r >= 10 else f"{r:.1f}×"


def compare(
    reference: Reference | None,
    *,
    device_p50_ms: float | None = None,
    device_images_per_s: float | None = None,
    device_batch: int | None = None,
    device_threads: int | None = None,
    top1: float | None = None,
    predictions: list | None = None,
) -> Comparison | None:
    """The comparison, or None without a reference. Batch-1 latency is the headline; a throughput
    ratio needs the device measured at a batch above 1 (like with like)."""
    if reference is None:
        return None
    notes = []
    rs, hs = reference.speed, reference.host_speed
    if not rs.measured:
        notes.append(f"reference latency {NOT_MEASURED} (re-run `edgekit eval BUNDLE --data ...`)")
    agreement, matched = _agreement(predictions, reference.predictions)
    host_agreement, _ = _agreement(predictions, reference.host_predictions)
    same_images = predictions is None or (reference.n is not None and matched == reference.n == len(predictions))
    change = host_change = None
    if top1 is not None and reference.top1 is not None:
        change = round((top1 - reference.top1) * 100, 3)
        if not same_images:
            notes.append("accuracy measured on other images than the reference's")
    if top1 is not None and reference.host_top1 is not None:
        host_change = round((top1 - reference.host_top1) * 100, 3)
    thr = None
    if device_batch and device_batch > 1:
        thr = _ratio(rs.images_per_s, device_images_per_s)
    return Comparison(
        reference_where=reference.where,
        reference_kind=reference.kind,
        reference_label=reference.label,
        device_p50_ms=device_p50_ms,
        reference_p50_ms=rs.p50_ms,
        host_tflite_p50_ms=hs.p50_ms,
        latency_ratio=_ratio(device_p50_ms, rs.p50_ms),
        latency_ratio_host_tflite=_ratio(device_p50_ms, hs.p50_ms),
        device_images_per_s=device_images_per_s,
        device_batch=device_batch,
        device_threads=device_threads,
        reference_images_per_s=rs.images_per_s,
        reference_batch=rs.throughput_batch,
        throughput_ratio=thr,
        top1=top1,
        reference_top1=reference.top1,
        top1_change_points=change,
        agreement=agreement,
        host_tflite_top1_change_points=host_change,
        host_tflite_agreement=host_agreement,
        matched_images=matched,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- per producer


def _threads(doc: dict) -> int | None:
    rt = doc.get("runtime") if isinstance(doc.get("runtime"), dict) else {}
    t = rt.get("threads", doc.get("threads"))
    return t if isinstance(t, int) and not isinstance(t, bool) else None


def for_device_eval(bundle, doc: dict) -> Comparison | None:
    """eval_images.py's result (per-image latency at batch 1, per-image predictions)."""
    lat = doc.get("latency_ms") if isinstance(doc.get("latency_ms"), dict) and not doc.get("emulated") else {}
    return compare(
        Reference.load(bundle),
        device_p50_ms=_num(lat.get("p50")),  # an emulated CPU's latency compares with nothing
        device_batch=1,
        device_threads=_threads(doc),
        top1=_num(doc.get("top1")),
        predictions=doc.get("predictions"),
    )


def for_profile(bundle, rows: list[dict], precision: str | None = None) -> Comparison | None:
    """Profile rows (per precision x threads x batch): the fastest batch-1 setting is the headline,
    the largest batch (at the same thread count) gives the throughput."""
    ok = [
        r
        for r in rows
        if r.get("supported", True)
        and not r.get("emulated")  # an emulated CPU's latency compares with nothing
        and isinstance(r.get("latency_ms"), dict)
        and (precision is None or r.get("precision") == precision)
    ]
    b1 = [r for r in ok if (r.get("batch") or 1) == 1]
    if not b1:
        return compare(Reference.load(bundle))
    head = min(b1, key=lambda r: r["latency_ms"]["p50"])
    same = [r for r in ok if r.get("threads") == head.get("threads") and r.get("precision") == head.get("precision")]
    big = max(same, key=lambda r: r.get("batch") or 1)
    return compare(
        Reference.load(bundle),
        device_p50_ms=_num(head["latency_ms"].get("p50")),
        device_images_per_s=_num(big.get("images_per_s")),
        device_batch=big.get("batch") or 1,
        device_threads=head.get("threads"),
    )


def for_camera(bundle, doc: dict) -> Comparison | None:
    """classify_camera.py's summary: inference per frame, batch 1."""
    lat = doc.get("latency_ms") if isinstance(doc.get("latency_ms"), dict) and not doc.get("emulated") else {}
    return compare(
        Reference.load(bundle),
        device_p50_ms=_num(lat.get("p50")),
        device_batch=1,
        device_threads=_threads(doc),
    )


def as_dict(c: Comparison | None) -> dict | None:
    return c.to_dict() if c is not None else None


def device_eval_fields(bundle, doc: dict) -> dict:
    """What a device eval result carries about the desktop: `vs_reference`, and as before the desktop
    figures (without their per-image predictions), `top1_change` (device - host TFLite, a fraction)
    and `agreement` with the host TFLite's per-image predictions."""
    raw = _read(bundle)
    c = for_device_eval(bundle, doc) if raw is not None else None
    if c is None:
        return {}
    out: dict = {
        "vs_reference": c.to_dict(),
        "reference": _without_predictions(raw.get("reference")),
        "host_tflite": _without_predictions(raw.get("tflite")),
    }
    if c.host_tflite_top1_change_points is not None:
        out["top1_change"] = c.host_tflite_top1_change_points / 100
    if c.host_tflite_agreement is not None:
        out["agreement"] = c.host_tflite_agreement
    return out


def _read(bundle) -> dict | None:
    if bundle is None:
        return None
    try:
        doc = json.loads((Path(bundle) / REFERENCE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _without_predictions(block):
    return {k: v for k, v in block.items() if k != "predictions"} if isinstance(block, dict) else None


def merged(speed: dict | None, accuracy: dict | None) -> Comparison | None:
    """One comparison from a profile's (latency, throughput) and an eval's (accuracy, agreement)."""
    if not speed and not accuracy:
        return None
    base = Comparison.from_dict(speed or accuracy)
    if not speed or not accuracy:
        return base
    acc = Comparison.from_dict(accuracy)
    keys = ("top1", "reference_top1", "top1_change_points", "agreement", "host_tflite_top1_change_points",
            "host_tflite_agreement", "matched_images")  # fmt: skip
    from dataclasses import replace

    return replace(base, **{k: getattr(acc, k) for k in keys}, notes=tuple(dict.fromkeys(base.notes + acc.notes)))
