"""Results comparison and rendering (no TensorFlow here).

compare.py turns runs in the store into report data; render.py writes it as one self-contained
HTML file (inline CSS and SVG from svg.py) or Markdown; `--json` prints the data itself.
"""

from __future__ import annotations


def render_report(data: dict, fmt: str) -> str:
    """The report as text; a name apart from the `render` submodule, which would shadow it once imported."""
    from edgekit.results.report.render import to_html, to_markdown

    if fmt == "html":
        return to_html(data)
    if fmt == "md":
        return to_markdown(data)
    raise ValueError(f"unknown report format {fmt!r}")
