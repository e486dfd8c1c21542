"""The named verification thresholds are pinned: changing one must be a deliberate, visible edit.

Each one is also shown refusing a broken model: here the int8 agreement gate on figures, and in
tests/onnx/test_convert.py (the tolerances on a real converted model) and
tests/foundation/test_export.py (export's output correlation).
"""

import math

import pytest

from edgekit.pipeline import onnx_verify as V
from edgekit.pipeline import verify


def test_thresholds_are_pinned():
    assert V.FLOAT32_MAX_REL_DIFF == 1e-4  # issue 7: float within 1e-4 of the output scale
    assert V.FLOAT16_MAX_REL_DIFF == 1e-2
    assert V.INT8_MIN_AGREEMENT == 0.98  # issue 7: int8 keeps >= 98% top-1 agreement ...
    assert V.INT8_AGREEMENT_ALPHA == 0.01  # ... judged by a binomial test at the 1% level (issue 11)
    assert verify.MIN_OUTPUT_CORRELATION == 0.5


def test_agreement_gate_allows_what_a_98_percent_conversion_shows():
    # what the gate lets through, per sample size: pinned, so a change of either constant shows here
    assert {n: V.allowed_disagreements(n) for n in (20, 36, 60, 100, 1000)} == {
        20: 2, 36: 3, 60: 4, 100: 6, 1000: 31,
    }  # fmt: skip
    # 2 of 60 images flipping from another CPU's float rounding cannot fail it (the Intel run)
    assert 2 <= V.allowed_disagreements(60)
    # and it converges on the required agreement as images are added
    assert V.allowed_disagreements(100_000) / 100_000 < 0.0215


def _tail(n: int, k: int, p: float) -> float:
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


@pytest.mark.parametrize("n", [20, 60, 100])
def test_agreement_gate_is_the_binomial_test(n):
    k = V.allowed_disagreements(n)
    p = 1 - V.INT8_MIN_AGREEMENT
    assert _tail(n, k, p) >= V.INT8_AGREEMENT_ALPHA > _tail(n, k + 1, p)


@pytest.mark.parametrize("n", [20, 60, 100, 1000])
def test_agreement_gate_refuses_broken_conversions(n):
    """A broken int8 model agrees by chance (3 classes: a third), or far less than 98%: refused."""
    allowed = V.allowed_disagreements(n)
    assert allowed < n * (1 - 1 / 3)  # chance agreement on the 3-class test models
    assert allowed < n * 0.15  # a conversion agreeing on only 85% of images
    assert V.allowed_disagreements(n, min_agreement=1.0) == 0
    assert V.allowed_disagreements(n, min_agreement=0.0) == n  # bench_onnx: measure, never refuse
