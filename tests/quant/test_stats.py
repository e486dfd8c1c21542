"""The int8 drop's paired interval and the agreement interval (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.pipeline import quantize as qz


def _pairs(both: int, float_only: int, int8_only: int, neither: int):
    f = [1] * both + [1] * float_only + [0] * int8_only + [0] * neither
    q = [1] * both + [0] * float_only + [1] * int8_only + [0] * neither
    return np.array(f, bool), np.array(q, bool)


def test_paired_drop_counts_only_discordant_images():
    f, q = _pairs(both=80, float_only=6, int8_only=2, neither=12)
    r = qz.paired_drop(f, q)
    assert r["float_only_right"] == 6 and r["int8_only_right"] == 2
    assert r["drop_points"] == pytest.approx(4.0)
    lo, hi = r["drop_ci95_points"]
    assert lo < 4.0 < hi and lo > -5 and hi < 12
    # the same accuracies with more disagreement are less certain
    f2, q2 = _pairs(both=70, float_only=16, int8_only=12, neither=2)
    lo2, hi2 = qz.paired_drop(f2, q2)["drop_ci95_points"]
    assert qz.paired_drop(f2, q2)["drop_points"] == pytest.approx(4.0)
    assert hi2 - lo2 > hi - lo


def test_paired_interval_shrinks_with_more_images_and_never_claims_certainty():
    small = qz.paired_drop(*_pairs(45, 3, 1, 1))["drop_ci95_points"]
    large = qz.paired_drop(*_pairs(450, 30, 10, 10))["drop_ci95_points"]
    assert (large[1] - large[0]) < (small[1] - small[0])
    lo, hi = qz.paired_drop(*_pairs(100, 0, 0, 0))["drop_ci95_points"]
    assert lo < 0 < hi  # no discordant image in 100 is not proof of zero drop


def test_agreement_interval_is_wilson():
    r = qz.agreement_interval(np.array([True] * 97 + [False] * 3))
    assert r["agreement"] == pytest.approx(0.97)
    lo, hi = r["agreement_ci95"]
    assert 0.91 < lo < 0.93 and 0.98 < hi < 0.995  # Wilson 95 % for 97/100: [0.915, 0.990]
    assert qz.agreement_interval(np.array([True] * 50))["agreement_ci95"][1] == pytest.approx(1.0)


def test_int8_report_carries_the_intervals():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    f = np.eye(3)[y]
    q = f.copy()
    q[0] = np.eye(3)[1]  # one image lost by int8
    rep = qz.int8_report(f, q, y, "test")
    assert rep["drop_points"] == pytest.approx(12.5) and rep["agreement"] == pytest.approx(0.875)
    assert rep["discordant"] == {"float_only_right": 1, "int8_only_right": 0}
    assert rep["drop_ci95_points"][0] < 12.5 < rep["drop_ci95_points"][1]
