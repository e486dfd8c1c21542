"""One registry for model families (in the spirit of timm's `_registry.py`).

A family knows how to validate a config, name a variant and build the Keras model. Builders live in
their own modules and are imported only when a model is actually built, so listing is cheap and
`edgekit --help` never touches TensorFlow.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from edgekit.config import SHORTCUTS, ModelConfig
from edgekit.errors import UsageError

MIN_RESOLUTION = 32
MAX_ALPHA = 1.25


@dataclass(frozen=True)
class Family:
    name: str
    builder: str  # "module:function" taking a ModelConfig, returning a keras.Model
    description: str
    aliases: tuple[str, ...] = ()
    default_resolution: int = 224
    uses_alpha: bool = False
    uses_shortcut: bool = False
    standard_variants: tuple[ModelConfig, ...] = ()

    def build_fn(self) -> Callable:
        module, func = self.builder.split(":")
        return getattr(importlib.import_module(module), func)


_FAMILIES: dict[str, Family] = {}
_ALIASES: dict[str, str] = {}


def register_family(family: Family) -> Family:
    if family.name in _FAMILIES:
        raise ValueError(f"model family {family.name!r} registered twice")
    _FAMILIES[family.name] = family
    for alias in (family.name, *family.aliases):
        _ALIASES[alias] = family.name
    return family


def families() -> list[Family]:
    return list(_FAMILIES.values())


def get_family(name: str) -> Family:
    key = _ALIASES.get(name.lower().replace("-", "_"))
    if key is None:
        parsed = parse_variant_name(name)
        if parsed is not None:
            return _FAMILIES[parsed.family]
        known = ", ".join(sorted(_ALIASES))
        raise UsageError(f"unknown model {name!r}; known models: {known}")
    return _FAMILIES[key]


_MOBILENET_NAME = re.compile(r"^mobilenet_v1_(\d{3})_(\d+)$")
_SHORTCUT_NAME = re.compile(r"^(?P<family>[a-z0-9]+?)(?:_(?P<res>\d+))?(?:_(?P<shortcut>[abc]))?$")


def parse_variant_name(name: str) -> ModelConfig | None:
    """The inverse of variant_name: `mobilenet_v1_050_160` -> ModelConfig(alpha=0.5, resolution=160),
    `resnet18_192_a` -> ModelConfig("resnet18", resolution=192, shortcut="A"); None for other names."""
    m = _MOBILENET_NAME.match(name.lower())
    if m:
        return ModelConfig("mobilenet_v1", alpha=int(m.group(1)) / 100, resolution=int(m.group(2)))
    m = _SHORTCUT_NAME.match(name.lower())
    if m and m["family"] in _FAMILIES and _FAMILIES[m["family"]].uses_shortcut and (m["res"] or m["shortcut"]):
        fam = _FAMILIES[m["family"]]
        return ModelConfig(
            fam.name,
            resolution=int(m["res"]) if m["res"] else fam.default_resolution,
            shortcut=(m["shortcut"] or "b").upper(),
        )
    return None


def variant_name(cfg: ModelConfig) -> str:
    if cfg.family == "mobilenet_v1":
        return f"mobilenet_v1_{round((cfg.alpha or 1.0) * 100):03d}_{cfg.resolution}"
    name = cfg.family
    if cfg.family not in _FAMILIES:  # a model imported from elsewhere (an ONNX classifier)
        return f"{name}_{cfg.resolution}"
    if cfg.resolution != _FAMILIES[cfg.family].default_resolution:
        name += f"_{cfg.resolution}"
    if cfg.shortcut and cfg.shortcut != "B":
        name += f"_{cfg.shortcut.lower()}"
    return name


def resolve_config(
    model: str,
    *,
    alpha: float | None = None,
    rho: float | None = None,
    resolution: int | None = None,
    classes: int | None = None,
    shortcut: str | None = None,
) -> ModelConfig:
    """Turn CLI-style arguments into a validated ModelConfig.

    Arguments left as None keep the family's (or the variant name's) defaults, like timm's
    create_model dropping None kwargs, so CLI defaults never override model defaults.
    """
    family = get_family(model)
    base = parse_variant_name(model) or ModelConfig(family.name, resolution=family.default_resolution)
    if rho is not None and resolution is not None:
        raise UsageError(
            f"give either --rho or --resolution, not both; received rho={rho}, resolution={resolution}"
        )
    if rho is not None:
        if not 0 < rho <= 2:
            raise UsageError(f"rho must be in (0, 2]; received {rho}")
        resolution = int(round(224 * rho))
    changes = {"classes": classes, "resolution": resolution}
    if family.uses_alpha:
        changes["alpha"] = alpha if alpha is not None else (base.alpha or 1.0)
    elif alpha is not None:
        raise UsageError(f"--alpha applies to MobileNet only; {family.name} has no width multiplier")
    if family.uses_shortcut:
        changes["shortcut"] = (shortcut or base.shortcut or "B").upper()
    elif shortcut is not None:
        raise UsageError(f"--shortcut applies to ResNet only; received it for {family.name}")
    cfg = base.with_(**{k: v for k, v in changes.items() if v is not None})
    validate(cfg)
    return cfg


def validate(cfg: ModelConfig) -> None:
    if cfg.family not in _FAMILIES:
        raise UsageError(f"unknown model family {cfg.family!r}")
    if cfg.classes is None or cfg.classes < 2:
        raise UsageError(f"classes must be at least 2; received {cfg.classes}")
    if cfg.resolution < MIN_RESOLUTION:
        raise UsageError(f"input resolution must be at least {MIN_RESOLUTION} px; received {cfg.resolution}")
    if cfg.alpha is not None and not 0 < cfg.alpha <= MAX_ALPHA:
        raise UsageError(f"alpha must be in (0, {MAX_ALPHA}]; received {cfg.alpha}")
    if cfg.shortcut is not None and cfg.shortcut not in SHORTCUTS:
        raise UsageError(f"shortcut must be one of A, B, C; received {cfg.shortcut!r}")


def build_model(cfg: ModelConfig, *, seed: int | None = 0):
    """Build the Keras model for a config (imports TensorFlow)."""
    validate(cfg)
    if seed is not None:
        import keras

        keras.utils.set_random_seed(seed)
    return _FAMILIES[cfg.family].build_fn()(cfg)


def _mobilenet_variants() -> tuple[ModelConfig, ...]:
    out = [ModelConfig("mobilenet_v1", alpha=a, resolution=224) for a in (1.0, 0.75, 0.5, 0.25)]
    out += [ModelConfig("mobilenet_v1", alpha=1.0, resolution=r) for r in (192, 160, 128)]
    return tuple(out)


register_family(
    Family(
        "mobilenet_v1",
        "edgekit.models.mobilenet_v1:build",
        "MobileNet v1 (Howard et al. 2017): width multiplier alpha, input 224*rho",
        aliases=("mobilenet", "mobilenetv1"),
        uses_alpha=True,
        standard_variants=_mobilenet_variants(),
    )
)
register_family(
    Family(
        "resnet18",
        "edgekit.models.resnet:build_resnet18",
        "ResNet-18 (He et al. 2015): basic blocks (2,2,2,2), shortcut option A/B/C",
        aliases=("resnet_18",),
        uses_shortcut=True,
        standard_variants=(ModelConfig("resnet18", shortcut="B"),),
    )
)
register_family(
    Family(
        "resnet34",
        "edgekit.models.resnet:build_resnet34",
        "ResNet-34 (He et al. 2015): basic blocks (3,4,6,3), shortcut option A/B/C",
        aliases=("resnet_34",),
        uses_shortcut=True,
        standard_variants=(ModelConfig("resnet34", shortcut="B"),),
    )
)
