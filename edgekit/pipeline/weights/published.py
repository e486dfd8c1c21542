"""`--weights imagenet`: the published file for the requested model, fetched once (imagenet.py), then
loaded by the source that reads its format (keras_h5.py for MobileNet v1, torchvision.py for ResNet)."""

from __future__ import annotations

from edgekit.config import WeightsRequest
from edgekit.pipeline.weights import imagenet


def imagenet_source(request: WeightsRequest, purpose: str, progress):
    from edgekit.pipeline.weights import files, torchvision

    family = request.family or "mobilenet_v1"
    if family == "mobilenet_v1":
        alpha = request.alpha if request.alpha is not None else 1.0
        resolution = request.resolution or 224
        # A new head is trained on a backbone, so it needs only the smaller file without the classifier.
        pub = imagenet.mobilenet_file(alpha, resolution, top=purpose == "classifier")
        path = imagenet.fetch(pub, progress)
        req = request.with_(family=family, alpha=alpha, resolution=resolution)
        src = files.from_h5(path, req, purpose, ())
    else:
        pub = imagenet.torchvision_file(family)
        path = imagenet.fetch(pub, progress)
        src = torchvision.from_state_dict(path, request.with_(family=family), purpose, ())
    src.extra["weights"].update({"spec": "imagenet", "url": pub.url, "published_file": pub.file})
    return src
