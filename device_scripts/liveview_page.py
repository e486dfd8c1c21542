"""The live view's page: one self-contained HTML document (no external resources).

{title}, {model}, {rows} and {initial} are filled in per request by liveview.LiveView.page().
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 15px system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
main { display: flex; gap: 16px; padding: 12px; flex-wrap: wrap; align-items: flex-start; }
#frame { width: 640px; max-width: 100%; image-rendering: pixelated; background: #000; display: block; }
aside { min-width: 260px; }
ol { padding-left: 20px; } li { margin: 4px 0; } .score { float: right; margin-left: 16px; color: #8f8; }
button { background: #333; color: #eee; border: 1px solid #555; padding: 6px 10px; cursor: pointer; }
button.on { background: #2a6; border-color: #2a6; }
table { border-collapse: collapse; } td { padding: 2px 8px 2px 0; } .warn { color: #fa0; }
</style></head>
<body><main>
<div><img id="frame" alt="live frame" src="/stream.mjpg?view=camera">
<p><button id="camera" class="on" onclick="view('camera')">camera</button>
<button id="model" onclick="view('model')">model input</button></p></div>
<aside><h2 id="model-name">{model}</h2>
<ol id="labels">{rows}</ol>
<table>
<tr><td>inference</td><td id="ms">-</td></tr>
<tr><td>FPS</td><td id="fps">-</td></tr>
<tr><td>frame</td><td id="index">-</td></tr>
<tr><td>CPU temperature</td><td id="temp">-</td></tr>
<tr><td>throttling</td><td id="throttle">-</td></tr>
<tr><td>source</td><td id="source">-</td></tr>
</table></aside></main>
<script>
const initial = {initial};
function esc(s) { const d = document.createElement('span'); d.textContent = s; return d.innerHTML; }
function show(d) {
  if (d.top && d.top.length) {
    document.getElementById('labels').innerHTML = d.top.map(t =>
      '<li><span class="label">' + esc(t.label) + '</span><span class="score">' + t.score.toFixed(3) +
      '</span></li>').join('');
  }
  document.getElementById('ms').textContent = d.latency_ms != null ? d.latency_ms.toFixed(2) + ' ms' : '-';
  document.getElementById('fps').textContent = d.fps != null ? d.fps.toFixed(1) : '-';
  document.getElementById('index').textContent = d.frame != null ? d.frame : '-';
  document.getElementById('temp').textContent =
    d.temperature_c != null ? d.temperature_c.toFixed(1) + ' °C' : 'not readable';
  const t = document.getElementById('throttle');
  if (d.throttling) {
    const on = Object.keys(d.throttling).filter(k => k !== 'raw' && d.throttling[k] && !k.endsWith('_occurred'));
    t.textContent = on.length ? on.join(', ') : 'none (' + d.throttling.raw + ')';
    t.className = on.length ? 'warn' : '';
  } else { t.textContent = 'not readable'; }
  document.getElementById('source').textContent = (d.source || '') + (d.byte_order ? ' (' + d.byte_order + ')' : '');
}
function view(v) {
  document.getElementById('frame').src = '/stream.mjpg?view=' + v;
  for (const b of ['camera', 'model']) document.getElementById(b).className = b === v ? 'on' : '';
}
document.getElementById('frame').addEventListener('load', e => { e.target.dataset.width = e.target.naturalWidth; });
async function poll() {
  try { const r = await fetch('/api/latest', {cache: 'no-store'}); show(await r.json()); } catch (e) {}
  setTimeout(poll, 500);
}
show(initial); poll();
</script></body></html>
"""
