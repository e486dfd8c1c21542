"""Report data -> one self-contained HTML file (inline CSS + SVG) or Markdown for pull requests."""

from __future__ import annotations

from html import escape

from edgekit.results.report import svg

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1400px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin-bottom:6px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:12px}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#f4f4f4}td.l,th.l{text-align:left}
tr.ref td{background:#f6f9ff;font-style:italic}
.meta{color:#666;font-size:12px}.flag{color:#fff;background:#d62728;border-radius:3px;padding:0 4px;font-size:11px}
.ok{color:#2ca02c}.best{font-weight:bold;background:#fff7d6}
figure{margin:8px 0 20px}figcaption{font-size:12px;color:#555}
.emu{color:#aaa}.emuflag{color:#555;background:#e6e6e6;border-radius:3px;padding:0 4px;font-size:11px}
.scroll{overflow-x:auto}.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
"""


def _pct(v, digits: int = 1) -> str:
    return "–" if v is None else f"{v * 100:.{digits}f}%"


def _num(v, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def _size(v) -> str:
    if v is None:
        return "–"
    return f"{v / 1e6:.2f} MB" if v >= 1e5 else f"{v / 1e3:.1f} kB"


def _pts(v) -> str:
    return "–" if v is None else f"{v:+.2f} pt"


# Row columns shared by HTML and Markdown: (header, function of row)
ROW_COLUMNS = (
    ("device", lambda r: r["device"]),
    ("precision", lambda r: r["precision"] or "–"),
    ("interpreter", lambda r: " ".join(x for x in (r["interpreter"], r["interpreter_version"]) if x) or "–"),
    ("threads", lambda r: _num(r["threads"], "{}")),
    ("top-1", lambda r: _pct(r["top1"])),
    ("top-5", lambda r: _pct(r["top5"])),
    ("agreement", lambda r: _pct(r["agreement"])),
    ("agr. ref", lambda r: _pct(r.get("reference_agreement"))),
    ("Δ top-1", lambda r: _pts(r["top1_change_points"])),
    ("p50 ms", lambda r: _num(r["p50_ms"])),
    ("p90 ms", lambda r: _num(r["p90_ms"])),
    ("p99 ms", lambda r: _num(r["p99_ms"])),
    ("images/s", lambda r: _num(r["images_per_s"], "{:.1f}")),
    ("× ref p50", lambda r: _num(r.get("latency_ratio"), "{:.2f}×")),
    ("× ref img/s", lambda r: _num(r.get("throughput_ratio"), "{:.2f}×")),
    ("size", lambda r: _size(r["size_bytes"])),
    ("peak RSS", lambda r: _size(r["peak_rss_bytes"])),
    ("runs", lambda r: " ".join(f"#{x}" for x in (r["eval_run"], r["profile_run"]) if x)),
)


LATENCY_COLUMNS = {"p50 ms", "p90 ms", "p99 ms", "images/s", "× ref p50", "× ref img/s"}
NOT_MEASURED = "not measured"
EMULATED = "emulated: latency not meaningful"
EMULATED_MD_NOTE = (
    "† measured on an emulated CPU (qemu-user): shows that the model runs there, not how fast the "
    "device is; left out of the Pareto front and the budget pick."
)


def _model_heading(m: dict) -> str:
    bits = []
    if m.get("params"):
        bits.append(f"{m['params'] / 1e6:.2f}M params")
    if m.get("macs"):
        bits.append(f"{m['macs'] / 1e6:.1f}M MACs")
    return f"{m['name']}" + (f" ({', '.join(bits)})" if bits else "")


def _ref_cells(m: dict) -> list[str] | None:
    ref = m.get("reference")
    if not ref:
        return None
    col = {h: i for i, (h, _) in enumerate(ROW_COLUMNS)}
    cells = ["–"] * len(ROW_COLUMNS)
    cells[col["device"]] = f"desktop reference ({ref.get('where') or ref.get('device') or 'float model'})"
    cells[col["precision"]] = f"{ref.get('precision') or 'float32'} (Keras)"
    cells[col["interpreter"]] = f"Keras/{ref['backend']}" if ref.get("backend") else "Keras"
    cells[col["top-1"]] = _pct(ref["top1"])
    cells[col["top-5"]] = _pct(ref.get("top5"))
    measured = ref.get("p50_ms") is not None  # older results: accuracy only
    cells[col["p50 ms"]] = _num(ref.get("p50_ms")) if measured else NOT_MEASURED
    cells[col["p90 ms"]] = _num(ref.get("p90_ms")) if measured else NOT_MEASURED
    if ref.get("images_per_s"):
        cells[col["images/s"]] = f"{ref['images_per_s']:.1f} (batch {ref.get('throughput_batch') or '?'})"
    elif not measured:
        cells[col["images/s"]] = NOT_MEASURED
    cells[-1] = f"#{ref['run']}"
    return cells


# --------------------------------------------------------------------------- HTML


def to_html(data: dict) -> str:
    p = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(data['title'])}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(data['title'])}</h1>",
        f'<p class="meta">generated {escape(data["generated_at"])} from {escape(data["db"])} · '
        + " · ".join(f"{n} {k} runs" for k, n in data["counts"].items() if n)
        + _filters_text(data["filters"])
        + "</p>",
    ]
    if not data["models"]:
        p.append(
            "<p>No eval or profile runs match. Run <code>edgekit profile</code> or <code>edgekit eval</code>.</p>"
        )
    if data.get("summary"):
        p.append('<h2 id="summary">Against the desktop reference</h2>')
        p += [f'<p class="summary">{escape(s["text"])}</p>' for s in data["summary"]]
    p.append('<h2 id="models">Results per model</h2>')
    for m in data["models"]:
        p.append(
            f'<h3>{escape(_model_heading(m))}</h3><div class="scroll"><table class="results" data-model="{escape(m["name"])}">'
        )
        p.append(
            "<tr>"
            + "".join(f'<th class="{_cls(i)}">{escape(h)}</th>' for i, (h, _) in enumerate(ROW_COLUMNS))
            + "</tr>"
        )
        ref = _ref_cells(m)
        if ref:
            p.append(
                '<tr class="ref">'
                + "".join(f'<td class="{_cls(i)}">{escape(c)}</td>' for i, c in enumerate(ref))
                + "</tr>"
            )
        for r in m["rows"]:
            cells = [escape(str(f(r))) for _, f in ROW_COLUMNS]
            if r["throttled"]:
                cells[0] += ' <span class="flag" title="throttling or latency drift flagged">throttled</span>'
            emu = bool(r.get("emulated"))
            if emu:
                cells[0] += f' <span class="emuflag" title="measured under qemu">{EMULATED}</span>'
            tds = []
            for i, c in enumerate(cells):
                if emu and ROW_COLUMNS[i][0] in LATENCY_COLUMNS:  # greyed: the figure is not a speed
                    tds.append(f'<td class="{_cls(i)} emu" title="{EMULATED}">{c}</td>')
                else:
                    tds.append(f'<td class="{_cls(i)}">{c}</td>')
            p.append(('<tr class="emulated">' if emu else "<tr>") + "".join(tds) + "</tr>")
        p.append("</table></div>")
    p += _html_plots(data)
    p += _html_chosen(data.get("chosen_run"))
    p += _html_environments(data["environments"])
    p.append('<p class="meta">edgekit report · self-contained: no scripts, no network.</p></body></html>')
    return "\n".join(p)


def _cls(i: int) -> str:
    return "l" if i < 3 else ""


def _filters_text(f: dict) -> str:
    on = [f"{k}={v}" for k, v in f.items() if v]
    return (" · filters: " + ", ".join(escape(x) for x in on)) if on else ""


def _html_plots(data: dict) -> list[str]:
    p = ['<h2 id="tradeoff">Accuracy vs latency</h2>']
    series = [
        {
            "name": s["device"],
            "reference": bool(s.get("reference")),
            "points": [
                {"x": q["latency_ms"], "y": q["top1"], "label": q["label"], "front": q["front"],
                 "reference": bool(q.get("reference"))}  # fmt: skip
                for q in s["points"]
                if not q.get("emulated")  # emulated latency is no position on a speed axis
            ],
        }
        for s in data["scatter"]
    ]
    series = [x for x in series if x["points"]]
    plot = svg.scatter(
        series,
        xlabel="latency p50 (ms)",
        ylabel="top-1 accuracy",
        title="accuracy vs latency",
        yfmt=lambda v: f"{v:.0%}",
    )
    p.append(
        f"<figure>{plot}<figcaption>Each point: one model and precision on one device; "
        "◆ the desktop float reference (batch 1).</figcaption></figure>"
        if plot
        else "<p>No run has both accuracy and latency yet (run eval and profile on the same bundle).</p>"
    )
    emulated_pts = sorted({q["label"] for s in data["scatter"] for q in s["points"] if q.get("emulated")})
    if emulated_pts:
        p.append(
            f'<p class="meta"><span class="emuflag">{EMULATED}</span> not plotted, not ranked: '
            + escape(", ".join(emulated_pts))
            + "</p>"
        )
    for t in data["pareto"]:
        p.append(
            f'<h3>Pareto front on {escape(t["device"])}</h3><table class="pareto"><tr><th class="l">model</th><th>p50 ms</th><th>top-1</th></tr>'
        )
        best = t["best_within_budget"]
        for q in t["front"]:
            cls = ' class="best"' if best and q["label"] == best["label"] else ""
            p.append(
                f'<tr{cls}><td class="l">{escape(q["label"])}</td><td>{q["latency_ms"]:.2f}</td><td>{_pct(q["top1"])}</td></tr>'
            )
        p.append("</table>")
        if t.get("excluded_emulated"):
            p.append(
                f'<p class="meta emu">Not ranked ({EMULATED}): {escape(", ".join(t["excluded_emulated"]))}</p>'
            )
        if t["budget_ms"] is not None:
            p.append(
                f"<p>Most accurate within {t['budget_ms']:g} ms: <b>{escape(best['label'])}</b> ({_pct(best['top1'])}, {best['latency_ms']:.2f} ms).</p>"
                if best
                else f"<p>No model fits within {t['budget_ms']:g} ms.</p>"
            )
    for g in data.get("grid", []):
        headers, rows = grid_table(g)
        p.append(
            f'<h2 id="grid-{escape(g["device"])}">Latency grid on {escape(g["device"])} (α × resolution)</h2>'
        )
        p.append(
            '<table class="grid-table"><tr>' + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr>"
        )
        p += ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows]
        p.append('</table><p class="meta">cells: p50 ms (top-1 when measured) · MACs in millions</p>')
    if data["macs_latency"]:
        series = [
            {
                "name": s["device"],
                "points": [
                    {"x": q["macs"] / 1e6, "y": q["latency_ms"], "label": q["label"]} for q in s["points"]
                ],
            }
            for s in data["macs_latency"]
        ]
        plot = svg.scatter(
            series, xlabel="MACs (millions)", ylabel="latency p50 (ms)", title="latency vs MACs"
        )
        p.append(
            f'<h2 id="macs">Latency vs MACs</h2><figure>{plot}<figcaption>Measured latency beside the multiply-accumulates each model needs.</figcaption></figure>'
        )
    p.append('<h2 id="latency">Latency distributions</h2>')
    if not data["latency"]:
        p.append("<p>No profile runs.</p>")
    for d in data["latency"]:
        plot = svg.percentile_boxes(d["items"], title=f"latency on {d['device']}", xlabel="ms per batch")
        note = f' <span class="emuflag">{EMULATED}</span>' if d.get("emulated") else ""
        p.append(f"<h3>{escape(d['device'])}{note}</h3><figure>{plot}</figure>")
    return p


def grid_table(g: dict) -> tuple[list[str], list[list[str]]]:
    """Rows α, columns resolution: p50 ms (top-1) per cell, then MACs per resolution and params."""
    by = {(c["alpha"], c["resolution"]): c for c in g["cells"]}
    headers = ["α \\ px", *(str(r) for r in g["resolutions"]), "MACs (M)", "params (M)"]
    rows = []
    for a in g["alphas"]:
        cells = [f"{a:g}"]
        for r in g["resolutions"]:
            c = by.get((a, r))
            if not c:
                cells.append("–")
                continue
            acc = f" ({c['top1']:.0%})" if c.get("top1") is not None else ""
            cells.append(f"{c['p50_ms']:.2f}{acc}")
        macs = [
            f"{by[(a, r)]['macs'] / 1e6:.0f}" if by.get((a, r), {}).get("macs") else "–"
            for r in g["resolutions"]
        ]
        params = next(
            (by[(a, r)]["params"] for r in g["resolutions"] if by.get((a, r), {}).get("params")), None
        )
        cells += [" / ".join(macs), f"{params / 1e6:.2f}" if params else "–"]
        rows.append(cells)
    return headers, rows


def _html_chosen(c: dict | None) -> list[str]:
    p = ['<h2 id="classes">Per-class accuracy and confusion</h2>']
    if not c:
        return [*p, "<p>No eval run with per-class results.</p>"]
    p.append(
        f'<p>Run #{c["id"]}: {escape(str(c["model"]))} on {escape(str(c["device"]))}.</p><div class="grid">'
    )
    if c["per_class"]:
        p.append(
            "<figure>"
            + svg.bars(
                [x["label"] for x in c["per_class"]],
                [x["accuracy"] for x in c["per_class"]],
                title="per-class accuracy",
                xlabel="top-1 accuracy",
            )
            + "</figure>"
        )
    if c["confusion"]:
        p.append(
            "<figure>"
            + svg.heatmap(
                c["confusion"], c["labels"], col_labels=c.get("predicted_labels"), title="confusion matrix"
            )
            + "<figcaption>rows: true class; columns: predicted</figcaption></figure>"
        )
    p.append("</div>")
    return p


ENV_COLUMNS = (
    ("run", lambda e: f"#{e['run']}"),
    ("kind", lambda e: e["kind"]),
    ("time (UTC)", lambda e: e["created_at"]),
    ("model", lambda e: e["model"] or "–"),
    ("device", lambda e: e["device"] or "–"),
    ("CPU", lambda e: e["cpu"] or "–"),
    ("cores", lambda e: _num(e["cores"], "{}")),
    ("governor", lambda e: e["governor"] or "–"),
    ("interpreter", lambda e: e["interpreter"] or "–"),
    ("temperature", lambda e: _temp(e)),
    (
        "throttling",
        lambda e: "FLAGGED" if e["throttled"] else ("checked" if e["throttling"] is not None else "–"),
    ),
)


def _temp(e: dict) -> str:
    t = e.get("temperature")
    if isinstance(t, dict):
        vals = {k: v for k, v in t.items() if isinstance(v, (int, float))}
        if vals:
            return " / ".join(f"{k} {v:.0f}°C" for k, v in vals.items())
    return "–" if e.get("temperature_c") is None else f"{e['temperature_c']:.0f}°C"


def _html_environments(envs: list[dict]) -> list[str]:
    p = ['<h2 id="environment">Environment of each run</h2>']
    if not envs:
        return [*p, "<p>No runs.</p>"]
    p.append(
        '<div class="scroll"><table class="environment"><tr>'
        + "".join(f'<th class="l">{escape(h)}</th>' for h, _ in ENV_COLUMNS)
        + "</tr>"
    )
    for e in envs:
        cells = [escape(str(f(e))) for _, f in ENV_COLUMNS]
        if e.get("emulated"):
            cells[5] = f'<span class="emu">{cells[5]}</span> <span class="emuflag">{EMULATED}</span>'
        if e["throttled"]:
            cells[-1] = '<span class="flag">throttled / drifting</span>'
        p.append("<tr>" + "".join(f'<td class="l">{c}</td>' for c in cells) + "</tr>")
    p.append("</table></div>")
    return p


# --------------------------------------------------------------------------- Markdown


def _md(text) -> str:
    """Text from the database made inert in Markdown: renderers pass raw HTML through (<script>,
    <img onerror>), so it is escaped as in the HTML report."""
    return escape(str(text), quote=False)


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def esc(s: str) -> str:
        return _md(s).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return out


def to_markdown(data: dict) -> str:
    p = [f"## {_md(data['title'])}", "", f"_generated {data['generated_at']} from `{_md(data['db'])}`_", ""]
    if not data["models"]:
        p += ["No eval or profile runs match.", ""]
    if data.get("summary"):
        p += ["### Against the desktop reference", "", *(f"- {_md(s['text'])}" for s in data["summary"]), ""]
    for m in data["models"]:
        p += [f"### {_md(_model_heading(m))}", ""]
        rows = []
        ref = _ref_cells(m)
        if ref:
            rows.append(ref)
        for r in m["rows"]:
            cells = [str(f(r)) for _, f in ROW_COLUMNS]
            if r["throttled"]:
                cells[0] += " ⚠ throttled"
            if r.get("emulated"):
                cells[0] += f" ({EMULATED})"
                cells = [
                    f"{c} †" if h in LATENCY_COLUMNS and c != "–" else c
                    for (h, _), c in zip(ROW_COLUMNS, cells, strict=True)
                ]
            rows.append(cells)
        p += _md_table([h for h, _ in ROW_COLUMNS], rows) + [""]
        if any(r.get("emulated") for r in m["rows"]):
            p += [EMULATED_MD_NOTE, ""]
    for g in data.get("grid", []):
        headers, rows = grid_table(g)
        p += (
            [f"### Latency grid on {_md(g['device'])} (p50 ms; α × resolution)", ""]
            + _md_table(headers, rows)
            + [""]
        )
    for t in data["pareto"]:
        p += [f"### Pareto front on {_md(t['device'])}", ""]
        p += _md_table(
            ["model", "p50 ms", "top-1"],
            [[q["label"], f"{q['latency_ms']:.2f}", _pct(q["top1"])] for q in t["front"]],
        )
        if t.get("excluded_emulated"):
            p += ["", f"Not ranked ({EMULATED}): {_md(', '.join(t['excluded_emulated']))}"]
        best = t["best_within_budget"]
        if t["budget_ms"] is not None:
            p += [
                "",
                f"Most accurate within {t['budget_ms']:g} ms: **{_md(best['label'])}** ({_pct(best['top1'])}, {best['latency_ms']:.2f} ms)"
                if best
                else f"No model fits within {t['budget_ms']:g} ms.",
            ]
        p.append("")
    c = data.get("chosen_run")
    if c and c["per_class"]:
        p += [f"### Per-class accuracy (run #{c['id']})", ""]
        p += _md_table(
            ["class", "top-1", "n"],
            [[x["label"], _pct(x["accuracy"]), _num(x.get("n"), "{}")] for x in c["per_class"]],
        ) + [""]
    if data["environments"]:
        p += ["### Environment", ""]
        p += _md_table(
            [h for h, _ in ENV_COLUMNS], [[str(f(e)) for _, f in ENV_COLUMNS] for e in data["environments"]]
        ) + [""]
    return "\n".join(p)
