"""The named verification tolerances are pinned: changing one must be a deliberate, visible edit."""

from edgekit.pipeline import onnx_verify as convert


def test_tolerances_are_pinned():
    assert convert.FLOAT32_MAX_REL_DIFF == 1e-4  # issue 7: float within 1e-4 of the output scale
    assert convert.FLOAT16_MAX_REL_DIFF == 1e-2
    assert convert.INT8_MIN_AGREEMENT == 0.98  # issue 7: int8 keeps >= 98% top-1 agreement
