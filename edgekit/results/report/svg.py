"""Small inline-SVG plots: scatter (with a Pareto line), percentile boxes, bars, heatmap.

Hand-written so the report is one self-contained file that opens without network access and
edgekit needs no plotting library. Every plot is a <svg> string with a <title> for screen readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < hi - step * 1e-9 and len(ticks) < 50:  # the last tick covers hi
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}"
    return f"{v:.3g}"


@dataclass(frozen=True)
class Frame:
    """Plot area and the data-to-pixel mapping."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, v: float) -> float:
        return self.left + (v - self.x0) / (self.x1 - self.x0 or 1) * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        h = self.height - self.top - self.bottom
        return self.height - self.bottom - (v - self.y0) / (self.y1 - self.y0 or 1) * h


def _open(width: int, height: int, title: str, kind: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{kind}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" {FONT}>',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]


def _axes(f: Frame, xticks, yticks, xlabel: str, ylabel: str, xfmt=_fmt, yfmt=_fmt) -> list[str]:
    out = []
    for t in yticks:
        y = f.y(t)
        out.append(f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(yfmt(t))}</text>')
    for t in xticks:
        x = f.x(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" y2="{f.height - f.bottom}" stroke="#eee"/>')
        out.append(
            f'<text x="{x:.1f}" y="{f.height - f.bottom + 16}" text-anchor="middle">{escape(xfmt(t))}</text>'
        )
    out.append(
        f'<rect x="{f.left}" y="{f.top}" width="{f.width - f.left - f.right}" '
        f'height="{f.height - f.top - f.bottom}" fill="none" stroke="#888"/>'
    )
    out.append(
        f'<text x="{(f.left + f.width - f.right) / 2:.0f}" y="{f.height - 6}" text-anchor="middle">'
        f"{escape(xlabel)}</text>"
    )
    cy = (f.top + f.height - f.bottom) / 2
    out.append(
        f'<text x="14" y="{cy:.0f}" text-anchor="middle" transform="rotate(-90 14 {cy:.0f})">'
        f"{escape(ylabel)}</text>"
    )
    return out


def scatter(
    series: list[dict],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    width: int = 640,
    height: int = 380,
    yfmt=_fmt,
) -> str:
    """series: [{"name", "points": [{"x", "y", "label", "front": bool}]}]; front points joined by a line."""
    pts = [p for s in series for p in s["points"]]
    if not pts:
        return ""
    xs = [p["x"] for p in pts]
    ys = [p["y"] for p in pts]
    xt = nice_ticks(min(0.0, min(xs)), max(xs) * 1.05)
    ylo, yhi = min(ys), max(ys)
    pad = (yhi - ylo) * 0.1 or abs(yhi) * 0.1 or 0.1
    bottom = ylo - pad if ylo < 0 or ylo - pad >= 0 else 0.0  # no negative axis for positive data
    yt = nice_ticks(bottom, yhi + pad)
    legend_h = 16 * len(series)
    f = Frame(width, height + legend_h, 56, 16, 12 + legend_h, 40, xt[0], xt[-1], yt[0], yt[-1])
    out = _open(f.width, f.height, title, "scatter")
    out += _axes(f, xt, yt, xlabel, ylabel, yfmt=yfmt)
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        front = sorted((p for p in s["points"] if p.get("front")), key=lambda p: p["x"])
        if len(front) > 1:
            path = " ".join(f"{f.x(p['x']):.1f},{f.y(p['y']):.1f}" for p in front)
            out.append(
                f'<polyline class="pareto" points="{path}" fill="none" stroke="{color}" '
                'stroke-width="1.5" stroke-dasharray="5 3"/>'
            )
        for p in s["points"]:
            cx, cy = f.x(p["x"]), f.y(p["y"])
            tip = escape(f"{p.get('label', '')}: {_fmt(p['x'])}, {yfmt(p['y'])}")
            if p.get("reference"):  # a diamond with an outline: not one of the devices' points
                out.append(
                    f'<path class="point reference" d="M{cx:.1f},{cy - 7:.1f} L{cx + 7:.1f},{cy:.1f} '
                    f'L{cx:.1f},{cy + 7:.1f} L{cx - 7:.1f},{cy:.1f} Z" fill="{color}" stroke="#000" '
                    f'stroke-width="1.5"><title>{tip} (desktop reference)</title></path>'
                )
            elif p.get("front"):
                out.append(
                    f'<circle class="point front" cx="{cx:.1f}" cy="{cy:.1f}" r="5.5" fill="{color}" '
                    f'stroke="#000" stroke-width="1.2"><title>{tip} (Pareto front)</title></circle>'
                )
            else:
                out.append(
                    f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{color}" '
                    f'fill-opacity="0.55"><title>{tip}</title></circle>'
                )
            if p.get("label") and len(pts) <= 24:
                # Labels of points in the right third go to their left, so they stay inside the plot.
                right = cx > f.left + (f.width - f.left - f.right) * 0.66
                anchor, dx = ("end", -7) if right else ("start", 7)
                out.append(
                    f'<text x="{cx + dx:.1f}" y="{cy - 5:.1f}" fill="#444" font-size="9" '
                    f'text-anchor="{anchor}">{escape(p["label"])}</text>'
                )
        ly = 14 + 16 * i
        if s.get("reference"):
            x0, y0 = f.left + 8, ly - 4
            out.append(f'<path d="M{x0},{y0 - 6} L{x0 + 6},{y0} L{x0},{y0 + 6} L{x0 - 6},{y0} Z" fill="{color}" stroke="#000"/>')
        else:
            out.append(f'<circle cx="{f.left + 8}" cy="{ly - 4}" r="5" fill="{color}"/>')
        out.append(f'<text x="{f.left + 18}" y="{ly}">{escape(s["name"])}</text>')
    if any(p.get("front") for p in pts):
        out.append(
            f'<text x="{f.width - f.right}" y="14" text-anchor="end" fill="#444">'
            "outlined points, dashed line: Pareto front</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def percentile_boxes(items: list[dict], *, title: str, xlabel: str = "latency (ms)", width: int = 640) -> str:
    """Horizontal boxes: whiskers min..max, box p50..p90, tick at p99; items [{label, min, p50, p90, p99, max}]."""
    items = [i for i in items if i.get("p50") is not None]
    if not items:
        return ""
    hi = max(i.get("max") or i.get("p99") or i["p50"] for i in items)
    xt = nice_ticks(0.0, hi * 1.05)
    row = 22
    label_w = min(260, 12 + 6 * max(len(i["label"]) for i in items))
    f = Frame(width, 24 + row * len(items) + 40, label_w, 16, 24, 40, xt[0], xt[-1], 0, len(items))
    out = _open(f.width, f.height, title, "latency")
    out += _axes(f, xt, [], xlabel, "")
    for n, it in enumerate(items):
        yc = f.top + row * n + row / 2
        lo = it.get("min") if it.get("min") is not None else it["p50"]
        mx = it.get("max") if it.get("max") is not None else it.get("p99") or it["p50"]
        p90 = it.get("p90") if it.get("p90") is not None else it["p50"]
        color = "#d62728" if it.get("throttled") else "#1f77b4"
        tip = escape(
            f"{it['label']}: min {_fmt(lo)}, p50 {_fmt(it['p50'])}, p90 {_fmt(p90)}, "
            f"p99 {_fmt(it.get('p99') or p90)}, max {_fmt(mx)} ms"
        )
        out.append(f'<g class="box"><title>{tip}</title>')
        out.append(f'<line x1="{f.x(lo):.1f}" x2="{f.x(mx):.1f}" y1="{yc:.1f}" y2="{yc:.1f}" stroke="#555"/>')
        out.append(
            f'<rect x="{f.x(it["p50"]):.1f}" y="{yc - 6:.1f}" width="{max(1.5, f.x(p90) - f.x(it["p50"])):.1f}" '
            f'height="12" fill="{color}" fill-opacity="0.6" stroke="{color}"/>'
        )
        out.append(
            f'<line x1="{f.x(it["p50"]):.1f}" x2="{f.x(it["p50"]):.1f}" y1="{yc - 7:.1f}" y2="{yc + 7:.1f}" '
            'stroke="#000" stroke-width="2"/>'
        )
        if it.get("p99") is not None:
            x99 = f.x(it["p99"])
            out.append(
                f'<line x1="{x99:.1f}" x2="{x99:.1f}" y1="{yc - 5:.1f}" y2="{yc + 5:.1f}" stroke="#555"/>'
            )
        out.append("</g>")
        out.append(f'<text x="{label_w - 6}" y="{yc + 4:.1f}" text-anchor="end">{escape(it["label"])}</text>')
    out.append(
        f'<text x="{f.width - f.right}" y="14" text-anchor="end" fill="#444">'
        "line min–max · box p50–p90 (black: p50) · tick p99 · red: throttled/drifting</text>"
    )
    out.append("</svg>")
    return "\n".join(out)


def bars(labels: list[str], values: list[float], *, title: str, xlabel: str, width: int = 480) -> str:
    """Horizontal bars for values in [0, 1] (per-class accuracy)."""
    if not labels:
        return ""
    row = 18
    label_w = min(220, 12 + 6 * max(len(str(s)) for s in labels))
    xt = [0.0, 0.25, 0.5, 0.75, 1.0]
    f = Frame(width, 16 + row * len(labels) + 40, label_w, 40, 16, 40, 0.0, 1.0, 0, len(labels))
    out = _open(f.width, f.height, title, "per-class")
    out += _axes(f, xt, [], xlabel, "", xfmt=lambda v: f"{v:.0%}")
    for n, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = f.top + row * n + 3
        w = f.x(max(0.0, min(1.0, v))) - f.left
        out.append(
            f'<rect class="bar" x="{f.left}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="#2ca02c">'
            f"<title>{escape(str(lab))}: {v:.1%}</title></rect>"
        )
        out.append(f'<text x="{label_w - 6}" y="{y + 10}" text-anchor="end">{escape(str(lab))}</text>')
        out.append(f'<text x="{f.left + w + 4:.1f}" y="{y + 10}">{v:.0%}</text>')
    out.append("</svg>")
    return "\n".join(out)


def heatmap(
    matrix: list[list[float]],
    labels: list[str],
    *,
    title: str,
    col_labels: list[str] | None = None,
    max_size: int = 520,
) -> str:
    """Confusion matrix: rows = true class, columns = predicted; shade by row-normalised count."""
    n, m = len(matrix), max((len(r) for r in matrix), default=0)
    if n == 0 or m == 0:
        return ""
    col_labels = col_labels or labels
    cell = max(6, min(36, (max_size - 120) // max(n, m)))
    label_w = min(140, 12 + 6 * max(len(str(s)) for s in labels))
    out = _open(label_w + cell * m + 16, 30 + cell * n + 60, title, "confusion")
    show_numbers = cell >= 22
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, v in enumerate(row):
            shade = int(255 - 200 * v / total)
            fill = f"rgb({shade},255,{shade})" if i == j else f"rgb({shade},{shade},255)"
            x, y = label_w + j * cell, 30 + i * cell
            out.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#fff">'
                f"<title>true {escape(str(labels[i]))}, predicted {escape(str(col_labels[j]))}: {_fmt(v)}</title>"
                "</rect>"
            )
            if show_numbers and v:
                out.append(
                    f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" font-size="10">'
                    f"{_fmt(v)}</text>"
                )
        if cell >= 10:
            out.append(
                f'<text x="{label_w - 4}" y="{30 + i * cell + cell / 2 + 4}" text-anchor="end">'
                f"{escape(str(labels[i]))}</text>"
            )
    if cell >= 10:
        for j, lab in enumerate(col_labels[:m]):
            x, y = label_w + j * cell + cell / 2 + 3, 30 + n * cell + 6
            out.append(
                f'<text x="{x:.0f}" y="{y}" text-anchor="end" font-size="9" '
                f'transform="rotate(-60 {x:.0f} {y})">{escape(str(lab)[:14])}</text>'
            )
    out.append(f'<text x="{label_w}" y="14">predicted →</text>')
    out.append('<text x="4" y="14">true ↓</text>')
    out.append("</svg>")
    return "\n".join(out)
