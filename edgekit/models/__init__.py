"""The model zoo: MobileNet v1 (alpha, rho) and ResNet-18/34 (shortcut A/B/C)."""

from edgekit.models.registry import (
    Family,
    build_model,
    families,
    get_family,
    resolve_config,
    validate,
    variant_name,
)

__all__ = ["Family", "build_model", "families", "get_family", "resolve_config", "validate", "variant_name"]
