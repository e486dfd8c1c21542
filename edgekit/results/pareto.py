"""Which configurations are worth shipping: the Pareto front of accuracy vs latency, and the best pick
within a latency budget. Emulated devices' latencies are never ranked (they measure the emulator)."""

from __future__ import annotations

from edgekit.results.records import environment_of


def pareto_front(points: list[dict], x: str = "latency_ms", y: str = "top1") -> set[int]:
    """Indices of points no other point beats: lower-or-equal x and higher-or-equal y, one strictly."""
    front = set()
    for i, p in enumerate(points):
        dominated = any(
            q[x] <= p[x] and q[y] >= p[y] and (q[x] < p[x] or q[y] > p[y])
            for j, q in enumerate(points)
            if j != i
        )
        if not dominated:
            front.add(i)
    return front



def best_within(points: list[dict], budget_ms: float | None, y: str = "top1") -> dict | None:
    """The highest-`y` point with latency within budget (ties: the faster)."""
    ok = [p for p in points if p.get(y) is not None and (budget_ms is None or p["latency_ms"] <= budget_ms)]
    return max(ok, key=lambda p: (p[y], -p["latency_ms"])) if ok else None



def is_emulated(blob: dict | None) -> bool:
    """A stored run whose device CPU was emulated (edgelib.cpu_info's `emulated`, or the runner's flag)."""
    blob = blob or {}
    res = blob.get("result")
    cpu = environment_of(res).get("cpu")
    if isinstance(cpu, dict) and cpu.get("emulated"):
        return True
    flags = [res.get("emulated") if isinstance(res, dict) else None]
    flags += [(d or {}).get("emulated") for d in (blob.get("device_info"),) if isinstance(d, dict)]
    return any(bool(f) for f in flags)
