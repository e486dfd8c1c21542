"""A measured int8-vs-float latency, set against the rule of thumb for the CPU that measured it.

The rule of thumb (edgelib.int8_expectation: int8 wins on ARM and on x86 with VNNI, not on AVX2 alone)
is only an expectation. A note printed beside a figure must never give a reason the figure refutes:
when the measurement goes against the rule, the note says so and gives the likely cause.
"""

from __future__ import annotations

from edgekit.device_scripts import edgelib

SAME_WITHIN = 0.05  # int8 and float latencies closer than 5 % count as "about the same"
TINY_INVOKE_MS = 1.0  # below this per invoke, fixed per-invoke costs and int8 I/O conversion dominate


def measured(int8_ms: float, float_ms: float) -> str:
    """"faster", "slower" or "same": int8 against float, from two latencies."""
    if int8_ms * (1 + SAME_WITHIN) < float_ms:
        return "faster"
    if float_ms * (1 + SAME_WITHIN) < int8_ms:
        return "slower"
    return "same"


def verdict(cpu: dict, int8_ms: float, float_ms: float, float_precision: str = "float32") -> str:
    """The measured int8/float ratio, and whether it is what this CPU's rule of thumb predicts (and why)."""
    rule = edgelib.int8_expectation(cpu)
    got = measured(int8_ms, float_ms)
    figures = f"{int8_ms:.3f} vs {float_ms:.3f} ms p50"
    if got == "faster":
        head = f"int8 is {float_ms / int8_ms:.2f}x faster than {float_precision} here ({figures})"
    elif got == "slower":
        head = f"int8 is {int8_ms / float_ms:.2f}x slower than {float_precision} here ({figures})"
    else:
        head = f"int8 and {float_precision} take about the same time here ({figures}, within {SAME_WITHIN:.0%})"
    expect = rule["expect"]
    if expect is None:
        return f"{head}; {rule['reason']}, so there is no rule of thumb to compare with."
    if got == expect or (expect == "not faster" and got != "faster"):
        return f"{head}, as expected on {rule['family']}: {rule['reason']}."
    return (
        f"{head}, against the rule of thumb for {rule['family']} ({rule['reason']}). "
        f"{_likely_reason(expect, int8_ms)}"
    )


def _likely_reason(expect: str, int8_ms: float) -> str:
    tiny = int8_ms < TINY_INVOKE_MS
    if expect == "faster":  # int8 should have won and did not
        if tiny:
            return (
                f"Likely reason: at {int8_ms:.3f} ms per invoke the model is tiny, so the fixed per-invoke "
                "cost and the int8 input/output conversion (quantize, dequantize) dominate, not the "
                "multiply-accumulates int8 speeds up; a larger model should show int8 ahead."
            )
        return (
            "Likely reason: some int8 ops run outside XNNPACK's fast kernels, or other processes shared "
            "the CPU; per-op times (benchmark_model --enable_op_profiling=true) show which."
        )
    if tiny:  # int8 won where the arithmetic favours float
        return (
            f"Likely reason: at {int8_ms:.3f} ms per invoke the model is tiny, so memory traffic and fixed "
            "costs, which int8's 4x smaller tensors cut, matter more than the multiply-accumulates."
        )
    return (
        "Likely reason: this model is limited by memory bandwidth rather than arithmetic, and int8 moves "
        "4x less data."
    )
