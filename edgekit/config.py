"""Frozen configuration dataclasses shared across steps (model, preprocessing, quantization, export);
field names follow the CLI flags. Configs of a single step live beside it (TrainConfig, SweepConfig,
ConvertConfig in edgekit.pipeline)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from edgekit.errors import UsageError

PRECISIONS = ("int8", "float16", "dynamic", "float32")
IO_TYPES = ("int8", "uint8", "float32")
SHORTCUTS = ("A", "B", "C")


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become model input; travels in the manifest to the device.

    RGB uint8 image -> crop ("none": the whole image; "center": the centred window with the input's
    aspect ratio) -> resize (bilinear) to `size` -> (pixel - mean) / std -> float32
    (edgelib.preprocess, the one implementation desktop and device share).
    """

    size: tuple[int, int] = (224, 224)  # (height, width)
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    color: str = "RGB"
    resize: str = "bilinear"
    crop: str = "none"

    def __post_init__(self) -> None:
        if self.crop not in ("none", "center"):
            raise UsageError(f"preprocessing crop must be none or center; received {self.crop!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        if d["crop"] == "none":  # manifests from before crops existed stay byte for byte the same
            del d["crop"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(
            size=tuple(d["size"]),
            mean=tuple(d.get("mean", (127.5,) * 3)),
            std=tuple(d.get("std", (127.5,) * 3)),
            color=d.get("color", "RGB"),
            resize=d.get("resize", "bilinear"),
            crop=d.get("crop") or "none",
        )


@dataclass(frozen=True)
class ModelConfig:
    """One architecture instance. `resolution` is the input side in pixels (224·ρ for MobileNet)."""

    family: str
    classes: int = 1000
    resolution: int = 224
    alpha: float | None = None  # MobileNet width multiplier
    shortcut: str | None = None  # ResNet shortcut option A/B/C

    def with_(self, **changes) -> ModelConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(
            **{k: d.get(k) for k in ("family", "classes", "resolution", "alpha", "shortcut") if k in d}
        )


@dataclass(frozen=True)
class QuantizeConfig:
    """What the converter is asked for. Presets mirror Model Maker's QuantizationConfig.for_*."""

    precision: str = "int8"
    io: str = "int8"  # int8 / uint8 / float32 input+output for the int8 model
    per_channel: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}; received {self.precision!r}")
        if self.io not in IO_TYPES:
            raise UsageError(f"--io must be one of {', '.join(IO_TYPES)}; received {self.io!r}")

    @classmethod
    def for_int8(cls, io: str = "int8") -> QuantizeConfig:
        return cls("int8", io=io)

    @classmethod
    def for_float16(cls) -> QuantizeConfig:
        return cls("float16", io="float32")

    @classmethod
    def for_dynamic(cls) -> QuantizeConfig:
        return cls("dynamic", io="float32")

    @classmethod
    def for_float32(cls) -> QuantizeConfig:
        return cls("float32", io="float32")

    @classmethod
    def preset(cls, precision: str, io: str = "int8") -> QuantizeConfig:
        if precision == "int8":
            return cls.for_int8(io=io)
        return {"float16": cls.for_float16, "dynamic": cls.for_dynamic, "float32": cls.for_float32}.get(
            precision, lambda: cls(precision)
        )()


@dataclass(frozen=True)
class WeightsRequest:
    """What was asked for beside `--weights` (None = not given): checked against what the weights hold."""

    family: str | None = None
    alpha: float | None = None
    resolution: int | None = None
    classes: int | None = None

    def with_(self, **changes) -> WeightsRequest:
        return replace(self, **changes)


@dataclass(frozen=True)
class ExportConfig:
    model: ModelConfig
    precisions: tuple[str, ...] = ("int8",)
    io: str = "int8"
    weights: str | None = None
    calibration: str | None = None
    calibration_samples: int = 100
    labels: tuple[str, ...] = field(default_factory=tuple)
    output: str | None = None
    preprocessing: Preprocessing | None = None
    weights_request: WeightsRequest | None = None  # explicit flags to check the --weights against
