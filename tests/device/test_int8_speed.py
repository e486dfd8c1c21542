"""The int8-vs-float note, per CPU family, from recorded /proc/cpuinfo files: the rule of thumb each
CPU gets, and a verdict that never gives a reason the measured figure beside it refutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.device_scripts import edgelib
from edgekit.results import int8_speed

DATA = Path(__file__).parent / "data" / "cpuinfo"

# file: (platform.machine(), model line, rule-of-thumb family, expectation, SIMD features it must see)
CPUS = {
    "amd_epyc_avx2": ("x86_64", "AMD EPYC", "x86 AVX2 without VNNI", "not faster", {"avx2"}),
    "intel_xeon_avx512_vnni_amx": (
        "x86_64", "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "x86 with VNNI", "faster",
        {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"},
    ),
    "pi4_cortex_a72": ("aarch64", "Raspberry Pi 4 Model B Rev 1.4", "ARM NEON without dot-product", "faster", {"neon"}),
    "pi5_cortex_a76": ("aarch64", "Raspberry Pi 5 Model B Rev 1.0", "ARM with int8 dot-product", "faster", {"neon", "dotprod"}),
}  # fmt: skip

# (int8 p50 ms, float32 p50 ms): a model big enough for arithmetic to decide, and the tiny
# model (0.074 vs 0.062 ms, measured on the Xeon above) where fixed per-invoke costs decide.
FIGURES = {"int8 faster": (2.0, 3.0), "int8 slower": (0.074, 0.062)}


def _cpu(name: str) -> dict:
    machine = CPUS[name][0]
    return edgelib.cpu_info((DATA / f"{name}.txt").read_text(encoding="utf-8"), machine)


@pytest.mark.parametrize("name", sorted(CPUS))
def test_recorded_cpuinfo_is_read(name):
    machine, model, family, expect, features = CPUS[name]
    cpu = _cpu(name)
    assert cpu["model"] == model and cpu["machine"] == machine and cpu["emulated"] is None
    assert {k for k, on in cpu["simd"].items() if on} == features
    _, flags = edgelib.parse_cpuinfo((DATA / f"{name}.txt").read_text(encoding="utf-8"))
    assert edgelib.emulation(machine, flags) is None  # real hardware: the flags fit the architecture
    rule = edgelib.int8_expectation(cpu)
    assert (rule["family"], rule["expect"]) == (family, expect)
    note = edgelib.int8_speed_note(cpu)  # the rule alone (export, device documents): said as a rule
    assert note.startswith(family) and ("usually faster" if expect == "faster" else "about as fast") in note


@pytest.mark.parametrize("outcome", sorted(FIGURES))
@pytest.mark.parametrize("name", sorted(CPUS))
def test_verdict_follows_the_measurement(name, outcome):
    _, _, family, expect, _ = CPUS[name]
    int8_ms, float_ms = FIGURES[outcome]
    text = int8_speed.verdict(_cpu(name), int8_ms, float_ms)
    # the figure first, in the direction it points
    if outcome == "int8 faster":
        assert text.startswith(f"int8 is {float_ms / int8_ms:.2f}x faster than float32 here")
    else:
        assert text.startswith(f"int8 is {int8_ms / float_ms:.2f}x slower than float32 here")
    assert f"{int8_ms:.3f} vs {float_ms:.3f} ms p50" in text
    agrees = (expect == "faster") == (outcome == "int8 faster")
    if agrees:
        assert f"as expected on {family}" in text and "against" not in text and "Likely reason" not in text
    else:  # says so, and gives the likely reason instead of the refuted one
        assert f"against the rule of thumb for {family}" in text and "Likely reason" in text
        assert "as expected" not in text
    if not agrees and outcome == "int8 slower":  # the tiny model: per-invoke cost and int8 I/O dominate
        assert "tiny" in text and "per-invoke cost" in text and "input/output conversion" in text
    assert "usually" not in text  # a verdict states what was measured, not what usually happens


def test_slower_int8_on_a_larger_model_points_to_the_ops():
    text = int8_speed.verdict(_cpu("pi5_cortex_a76"), 12.0, 9.0)
    assert "against the rule of thumb" in text and "tiny" not in text and "op_profiling" in text


def test_faster_int8_on_avx2_at_size_blames_memory_bandwidth():
    text = int8_speed.verdict(_cpu("amd_epyc_avx2"), 8.0, 12.0)
    assert "against the rule of thumb for x86 AVX2 without VNNI" in text and "memory bandwidth" in text


@pytest.mark.parametrize("name", sorted(CPUS))
def test_close_figures_are_called_the_same(name):
    int8_ms = 1.0
    float_ms = int8_ms * (1 + int8_speed.SAME_WITHIN * 0.9)
    text = int8_speed.verdict(_cpu(name), int8_ms, float_ms)
    assert text.startswith("int8 and float32 take about the same time here")
    # about the same fits "int8 not faster" (AVX2), and contradicts "int8 faster"
    assert ("as expected" in text) == (CPUS[name][3] == "not faster")
    just_outside = int8_speed.verdict(_cpu(name), int8_ms, int8_ms * (1 + int8_speed.SAME_WITHIN * 1.1))
    assert just_outside.startswith("int8 is 1.05x faster")


def test_unknown_cpu_claims_no_rule():
    cpu = edgelib.cpu_info("processor\t: 0\nmodel name\t: Some RISC-V board\n", "riscv64")
    assert edgelib.int8_expectation(cpu)["expect"] is None
    text = int8_speed.verdict(cpu, 1.0, 2.0)
    assert text.startswith("int8 is 2.00x faster") and "no rule of thumb" in text
    assert "as expected" not in text and "against" not in text


def test_named_thresholds_are_pinned():
    assert int8_speed.SAME_WITHIN == 0.05
    assert int8_speed.TINY_INVOKE_MS == 1.0
