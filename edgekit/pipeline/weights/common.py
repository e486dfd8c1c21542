"""What every weight source shares: checking the request, ImageNet labels, provenance records."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from edgekit.config import ModelConfig, WeightsRequest
from edgekit.errors import ModelFileError

IMAGENET_LABELS = "imagenet_labels.txt"  # 1001 lines, "background" first (TF's order); 1000 = [1:]


def imagenet_labels(classes: int) -> tuple[str, ...] | None:
    """ImageNet class names for a 1001-output (TF, background first) or 1000-output model; else None."""
    text = resources.files("edgekit.pipeline.weights").joinpath(IMAGENET_LABELS).read_text("utf-8")
    names = tuple(ln.strip() for ln in text.splitlines() if ln.strip())
    if classes == len(names):
        return names
    if classes == len(names) - 1:
        return names[1:]
    return None


def check_request(found: ModelConfig, request: WeightsRequest, where: str, purpose: str) -> None:
    """Explicit flags must agree with what the weights hold; the class count only for a classifier."""
    if request.family is not None and request.family != found.family:
        raise ModelFileError(f"--weights {where} holds a {found.family}; --model asked for {request.family}")
    if request.alpha is not None and found.alpha is not None and abs(request.alpha - found.alpha) > 1e-6:
        raise ModelFileError(
            f"--weights {where} holds MobileNet v1 α {found.alpha:g}; --alpha asked for {request.alpha:g}"
        )
    if request.resolution is not None and request.resolution != found.resolution:
        raise ModelFileError(
            f"--weights {where} takes {found.resolution} px input; --resolution asked for {request.resolution}"
        )
    if purpose == "classifier" and request.classes is not None and request.classes != found.classes:
        raise ModelFileError(
            f"--weights {where} has {found.classes} classes; {request.classes} were asked for",
            hint="drop --classes/--labels, or train a new head with edgekit train --weights",
        )


def labels_for(classes: int, given: tuple[str, ...], side_file: Path | None = None) -> tuple[str, ...]:
    """Given labels, else a labels.txt beside the weights, else ImageNet's names, else class_N."""
    from edgekit.bundle.manifest import default_labels, read_labels

    if given:
        return tuple(given)
    if side_file is not None and side_file.is_file():
        found = tuple(read_labels(side_file))
        if len(found) == classes:
            return found
    return imagenet_labels(classes) or default_labels(classes)


def provenance(kind: str, path: Path | None, **more) -> dict:
    """The `weights` record for the run and the manifest: what was loaded, from where, its sha256."""
    from edgekit.bundle.manifest import sha256_file

    rec = {"kind": kind}
    if path is not None:
        rec["file"] = str(path)
        rec["sha256"] = sha256_file(path)
    rec.update({k: v for k, v in more.items() if v is not None})
    return rec
