"""The model zoo: paper counts, tiny builds, validation."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import UsageError
from edgekit.models import build_model, resolve_config, variant_name
from edgekit.models.counting import count_macs, count_params

pytestmark = pytest.mark.tf

# (model, kwargs, params, MACs) from the MobileNet v1 and ResNet papers, 1000 classes.
PAPER = [
    ("mobilenet", {"alpha": 1.0}, 4.24e6, 569e6),
    ("mobilenet", {"alpha": 0.75}, 2.59e6, 325e6),
    ("mobilenet", {"alpha": 0.5}, 1.34e6, 149e6),
    ("mobilenet", {"alpha": 0.25}, 0.47e6, 41e6),
    ("mobilenet", {"alpha": 1.0, "resolution": 192}, 4.24e6, 418e6),
    ("mobilenet", {"alpha": 1.0, "rho": 160 / 224}, 4.24e6, 290e6),
    ("mobilenet", {"alpha": 1.0, "resolution": 128}, 4.24e6, 186e6),
    ("resnet18", {}, 11.69e6, 1.81e9),
    ("resnet34", {}, 21.80e6, 3.66e9),
]


@pytest.mark.parametrize(("model", "kwargs", "params", "macs"), PAPER)
def test_counts_match_the_papers_within_2_percent(model, kwargs, params, macs):
    m = build_model(resolve_config(model, **kwargs))
    assert count_params(m) == pytest.approx(params, rel=0.02)
    assert count_macs(m) == pytest.approx(macs, rel=0.02)


def test_rho_sets_input_to_224_rho_and_keeps_params():
    cfg = resolve_config("mobilenet", alpha=0.5, rho=0.571)
    assert cfg.resolution == 128
    m = build_model(cfg.with_(classes=10))
    assert tuple(m.input.shape[1:]) == (128, 128, 3)
    assert variant_name(cfg) == "mobilenet_v1_050_128"


def test_variant_name_round_trips():
    cfg = resolve_config("mobilenet_v1_075_192", classes=5)
    assert (cfg.alpha, cfg.resolution, cfg.classes) == (0.75, 192, 5)


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        ("mobilenet", {"alpha": 0.25}),
        ("mobilenet", {"alpha": 1.25}),
        ("resnet18", {"shortcut": "A"}),
        ("resnet18", {"shortcut": "B"}),
        ("resnet18", {"shortcut": "C"}),
        ("resnet34", {"shortcut": "A"}),
    ],
)
def test_every_family_builds_and_runs_tiny(model, kwargs):
    m = build_model(resolve_config(model, resolution=32, classes=3, **kwargs))
    y = np.asarray(m(np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")))
    assert y.shape == (2, 3)
    assert np.all(np.isfinite(y))


def test_shortcut_a_is_parameter_free_and_c_projects_everywhere():
    a, b, c = (
        count_params(build_model(resolve_config("resnet18", shortcut=s, resolution=32, classes=3)))
        for s in "ABC"
    )
    assert a < b < c
    # B adds exactly three 1x1 projections + BN at the three stage transitions
    proj = sum(cin * cout + 4 * cout for cin, cout in ((64, 128), (128, 256), (256, 512)))
    assert b - a == proj


def test_odd_input_sizes_work():
    m = build_model(resolve_config("mobilenet", alpha=0.5, resolution=97, classes=7))
    assert m.output.shape[-1] == 7


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"model": "mobilenet", "alpha": -1}, "alpha must be in (0, 1.25]; received -1"),
        ({"model": "mobilenet", "alpha": 1.5}, "alpha must be in"),
        ({"model": "mobilenet", "resolution": 16}, "at least 32 px; received 16"),
        ({"model": "mobilenet", "classes": 1}, "classes must be at least 2"),
        ({"model": "resnet18", "alpha": 0.5}, "--alpha applies to MobileNet only"),
        ({"model": "mobilenet", "shortcut": "A"}, "--shortcut applies to ResNet only"),
        ({"model": "vgg16"}, "unknown model 'vgg16'"),
        ({"model": "mobilenet", "rho": 0.5, "resolution": 112}, "either --rho or --resolution"),
    ],
)
def test_bad_configs_say_what_was_received(kwargs, fragment):
    model = kwargs.pop("model")
    with pytest.raises(UsageError) as exc:
        resolve_config(model, **kwargs)
    assert fragment in str(exc.value)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(model="resnet18", shortcut="A"),
        dict(model="resnet18", resolution=192),
        dict(model="resnet34", resolution=160, shortcut="C"),
        dict(model="resnet18"),
        dict(model="mobilenet", alpha=0.5, resolution=160),
        dict(model="mobilenet", alpha=0.25, rho=0.571),
    ],
)
def test_variant_names_round_trip(cfg):
    """Regression (issue 12): `resnet18_a` and `resnet18_192` could not be read back."""
    from edgekit.models.registry import get_family, parse_variant_name

    c = resolve_config(**cfg)
    name = variant_name(c)
    assert get_family(name).name == c.family
    back = parse_variant_name(name)
    if back is None:  # a family's default variant is named by the family alone
        assert name == c.family and resolve_config(name) == c.with_(classes=1000)
    else:
        assert back == c.with_(classes=back.classes)


def test_unknown_variant_names_stay_unknown():
    from edgekit.models.registry import parse_variant_name

    for name in ("resnet18_x", "resnet99_a", "mobilenet_v1_05_160", "vgg16_224"):
        assert parse_variant_name(name) is None, name
