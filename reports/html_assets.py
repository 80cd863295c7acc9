"""The stylesheet and the one script of ``leaderboard.html`` (no external resource, no framework).

The script sorts tables (click a header: numeric-aware, toggles ascending / descending, missing
values always last), filters them (a search box plus per-column selects), opens a trial's
details block when a link points at it, and draws each plotly figure from its JSON block when it comes near
the screen (every figure before printing).
"""

CSS = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#e3e7ec;--head:#f1f4f7;--accent:#1b5e9e;--good:#0b6b3a;--bad:#a8322d}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:var(--ink);
 background:#f4f6f8;font-size:14px;line-height:1.45}
header.top{background:#17283b;color:#fff;padding:20px 32px 16px}
header.top h1{margin:0 0 6px;font-size:22px;font-weight:650;letter-spacing:.2px}
header.top p{margin:2px 0;color:#c5d0dc;font-size:13px}
header.top code{background:#22384f;color:#e6edf4}
.chips{display:flex;flex-wrap:wrap;gap:8px;margin-top:10px}
.chip{background:#22384f;border:1px solid #34506d;border-radius:14px;padding:3px 11px;font-size:12.5px;color:#e6edf4}
.chip b{color:#fff}
nav.toc{position:sticky;top:0;z-index:20;background:#fff;border-bottom:1px solid var(--line);padding:7px 32px;
 display:flex;flex-wrap:wrap;gap:4px 16px;font-size:13px;box-shadow:0 1px 3px rgba(0,0,0,.04)}
nav.toc a{color:var(--accent);text-decoration:none}nav.toc a:hover{text-decoration:underline}
main{max-width:1320px;margin:0 auto;padding:6px 24px 48px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;margin:18px 0;padding:16px 20px;
 scroll-margin-top:44px}
h2{font-size:18px;margin:2px 0 8px;font-weight:650}h3{font-size:14.5px;margin:16px 0 6px;font-weight:650}
.lead,.note{color:var(--muted);font-size:13px;margin:4px 0 10px;max-width:1100px}
.caption{color:var(--muted);font-size:12.5px;margin:2px 0 12px}
.tablewrap{max-height:72vh;overflow:auto;border:1px solid var(--line);border-radius:6px}
.tablewrap.short{max-height:420px}
table{border-collapse:separate;border-spacing:0;font-size:13px;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 9px;border-bottom:1px solid #edf0f3;text-align:right;white-space:nowrap;vertical-align:top}
thead th{background:var(--head);position:sticky;top:0;z-index:2;font-weight:600;color:#2d3845;
 border-bottom:1px solid #d5dbe2}
table.sortable thead th{cursor:pointer;user-select:none}
table.sortable thead th:hover{background:#e6ebf0}
th.text,td.text{text-align:left}td.wrap{white-space:normal;min-width:160px}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px;color:var(--accent)}
th[aria-sort=descending]::after{content:" \\25BC";font-size:10px;color:var(--accent)}
tbody tr:nth-child(even) td{background:#fafbfc}tbody tr:hover td{background:#eef4fa}
td .sd{color:var(--muted);font-size:12px;margin-left:4px}
td .ci{display:block;color:#7b8794;font-size:11px;line-height:1.2}
td.best{background:#e3f3e8 !important}td.best .m{font-weight:700;color:var(--good)}
tr.chance td{color:#7b8794;font-style:italic}
.sig-better{color:var(--good);font-weight:600}.sig-worse{color:var(--bad);font-weight:600}.ns{color:#8a94a0}
.controls{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:6px 0 8px}
.controls input,.controls select{padding:5px 8px;border:1px solid #c9d1da;border-radius:5px;font:inherit;
 font-size:13px;background:#fff}
.controls input{width:260px}.controls .count{color:var(--muted);font-size:12.5px}
.fig{width:100%;min-height:340px}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px 24px}
.grid32{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:12px 24px}
@media (max-width:1000px){.grid32{grid-template-columns:minmax(0,1fr)}}
table.kvtable th{text-align:left;background:none;position:static}table.kvtable code{word-break:break-all}
.kv{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px;margin:8px 0 12px}
.kv div{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:6px 10px}
.kv span{display:block;color:var(--muted);font-size:11.5px}.kv b{font-size:15px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:14px}
.gallery figure{margin:0;font-size:11.5px;color:#3b4552;background:#fafbfc;border:1px solid var(--line);
 border-radius:6px;padding:6px}
.gallery img{width:100%;image-rendering:auto;border-radius:4px;display:block}
.gallery .hit{color:var(--good);font-weight:600}.gallery .miss{color:var(--bad);font-weight:600}
details.trials{border:1px solid var(--line);border-radius:6px;margin:6px 0;padding:4px 10px}
details.trials[open]{background:#fcfdfe}details summary{cursor:pointer;font-weight:600;margin:3px 0}
details.trials:target{border-color:var(--accent);box-shadow:0 0 0 2px rgba(27,94,158,.15)}
a{color:var(--accent)}code,pre{background:#f1f4f7;border-radius:3px;font-size:12px}code{padding:1px 4px}
pre{padding:8px;overflow:auto;max-height:360px}
.ref{color:#7a4b00}svg.cd{width:100%;max-width:900px;height:auto;display:block;margin:4px 0}
svg.cd text{font-size:12px;fill:#1f2933}
footer{color:var(--muted);font-size:12px;text-align:center;padding:0 0 24px}
"""

SCRIPT = r"""
(function(){
'use strict';
function cellKey(row, idx){
  var c = row.cells[idx]; if(!c) return '';
  var v = c.getAttribute('data-v'); return v === null ? c.textContent.trim() : v;
}
function sortTable(table, idx, dir){
  var tbody = table.tBodies[0], head = table.tHead.rows[0];
  var numeric = head.cells[idx].getAttribute('data-type') === 'num';
  var rows = Array.prototype.slice.call(tbody.rows);
  var keyed = rows.map(function(r, i){
    var k = cellKey(r, idx), n = numeric ? (k === '' ? NaN : Number(k)) : NaN;
    var missing = numeric ? !isFinite(n) : k === '';
    return {row: r, i: i, k: k, n: n, missing: missing};
  });
  keyed.sort(function(a, b){
    if(a.missing || b.missing){ return a.missing === b.missing ? a.i - b.i : (a.missing ? 1 : -1); }
    var c = numeric ? a.n - b.n : a.k.localeCompare(b.k, undefined, {numeric: true, sensitivity: 'base'});
    return c !== 0 ? dir * c : a.i - b.i;
  });
  var frag = document.createDocumentFragment();
  keyed.forEach(function(e){ frag.appendChild(e.row); });
  tbody.appendChild(frag);
  Array.prototype.forEach.call(head.cells, function(th){ th.removeAttribute('aria-sort'); });
  head.cells[idx].setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
}
document.querySelectorAll('table.sortable').forEach(function(table){
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th, idx){
    if(th.hasAttribute('data-nosort')) return;
    th.tabIndex = 0;
    function go(){
      var cur = th.getAttribute('aria-sort'), dir;
      if(cur === 'ascending') dir = -1; else if(cur === 'descending') dir = 1;
      else dir = th.getAttribute('data-type') === 'num' ? -1 : 1;
      sortTable(table, idx, dir);
    }
    th.addEventListener('click', go);
    th.addEventListener('keydown', function(e){ if(e.key === 'Enter' || e.key === ' '){ e.preventDefault(); go(); } });
  });
});
document.querySelectorAll('.controls[data-table]').forEach(function(box){
  var table = document.getElementById(box.getAttribute('data-table'));
  if(!table) return;
  var text = box.querySelector('input.filter'), selects = box.querySelectorAll('select[data-col]');
  var count = box.querySelector('.count');
  function apply(){
    var terms = text ? text.value.toLowerCase().split(/\s+/).filter(Boolean) : [];
    var shown = 0, rows = table.tBodies[0].rows;
    Array.prototype.forEach.call(rows, function(r){
      var t = r.textContent.toLowerCase(), ok = terms.every(function(q){ return t.indexOf(q) >= 0; });
      selects.forEach(function(s){
        if(ok && s.value !== '' && cellKey(r, Number(s.getAttribute('data-col'))) !== s.value) ok = false;
      });
      r.hidden = !ok; if(ok) shown++;
    });
    if(count) count.textContent = shown + ' of ' + rows.length + ' rows';
  }
  if(text) text.addEventListener('input', apply);
  selects.forEach(function(s){ s.addEventListener('change', apply); });
  apply();
});
function openTarget(id){
  var el = id && document.getElementById(id);
  for(var e = el; e; e = e.parentElement){ if(e.tagName === 'DETAILS') e.open = true; }
}
document.addEventListener('click', function(ev){
  var a = ev.target.closest && ev.target.closest('a[href^="#"]');
  if(a) openTarget(decodeURIComponent(a.getAttribute('href').slice(1)));
});
if(location.hash) openTarget(decodeURIComponent(location.hash.slice(1)));
var tplEl = document.getElementById('plot-template');
var template = tplEl ? JSON.parse(tplEl.textContent) : undefined;
// Figures are drawn when they come near the screen (and all of them before printing), so the page opens
// as fast with 1,000 trials as with ten; each keeps its final height meanwhile, so nothing jumps.
var figs = Array.prototype.slice.call(document.querySelectorAll('div.fig[data-figure]'));
var specs = {};
figs.forEach(function(div){
  try {
    specs[div.id] = JSON.parse(document.getElementById(div.id + '-data').textContent);
    if(specs[div.id].layout && specs[div.id].layout.height) div.style.minHeight = specs[div.id].layout.height + 'px';
  } catch(err) { console.error('figure ' + div.id + ': ' + err); }
});
function draw(div){
  var spec = specs[div.id];
  if(!spec || div.getAttribute('data-drawn')) return;
  div.setAttribute('data-drawn', '1');
  try {
    if(template) spec.layout.template = template;
    Plotly.newPlot(div, spec.data, spec.layout, spec.config);
  } catch(err) { console.error('figure ' + div.id + ': ' + err); }
}
if('IntersectionObserver' in window){
  var seen = new IntersectionObserver(function(entries){
    entries.forEach(function(e){ if(e.isIntersecting){ seen.unobserve(e.target); draw(e.target); } });
  }, {rootMargin: '800px 0px'});
  figs.forEach(function(div){ seen.observe(div); });
} else {
  figs.forEach(draw);
}
window.addEventListener('beforeprint', function(){ figs.forEach(draw); });
})();
"""
