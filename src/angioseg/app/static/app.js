// angioseg QCA page: plain JavaScript, no library, no network access beyond this server.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { study: null, frame: 0, images: [], points: [], result: null, timer: null, overlay: null };

function showError(msg) { const e = $("error"); e.textContent = msg; e.hidden = !msg; }

async function api(path, body) {
  const opt = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opt);
  const data = await r.json().catch(() => ({ error: `server answered ${r.status}` }));
  if (!r.ok) throw new Error(data.error || `server answered ${r.status}`);
  return data;
}

async function loadFiles() {
  const d = await api("/api/files");
  $("file").replaceChildren(...d.files.map((f) => new Option(f, f)));  // names as text, never markup
}

function loadImage(src) {
  return new Promise((ok, fail) => { const im = new Image(); im.onload = () => ok(im); im.onerror = () => fail(new Error("could not load " + src)); im.src = src; });
}

async function opened(info) {
  state.study = info; state.points = []; state.result = null; state.overlay = null;
  $("source").replaceChildren(...info.mask_sources.map((s) => new Option(s, s)));
  $("frame").max = info.frames - 1; $("frame").value = 0; state.frame = 0;
  const sp = info.spacing_mm ? `${info.spacing_mm[0].toFixed(3)} mm/px (${info.spacing_source})` : "no spacing in the file";
  $("info").textContent = `${info.name}: ${info.frames} frame(s), ${info.width} x ${info.height}, ${sp}`;
  const c = $("canvas"); c.width = info.width; c.height = info.height;
  c.style.width = Math.min(640, info.width * 2) + "px";
  state.images = await Promise.all([...Array(info.frames).keys()].map((i) => loadImage(`/api/frame/${info.id}/${i}.png`)));
  $("numbers").innerHTML = ""; $("downloads").hidden = true; clearPlot();
  draw();
}

async function openFile() {
  showError("");
  try { await opened(await api("/api/open", { path: $("file").value })); } catch (e) { showError(e.message); }
}

async function upload() {
  showError("");
  const f = $("upload").files[0]; if (!f) return;
  try {
    const r = await fetch(`/api/upload?name=${encodeURIComponent(f.name)}`, { method: "POST", body: f });
    const d = await r.json().catch(() => ({ error: `server answered ${r.status}` }));
    if (!r.ok) throw new Error(d.error);
    await opened(d);
  } catch (e) { showError(e.message); }
}

async function segment() {
  showError(""); if (!state.study) return showError("open a file first");
  try {
    let job = await api("/api/segment", { id: state.study.id, source: $("source").value });
    while (job.state === "running") {
      $("progress").textContent = `segmenting ${job.done}/${job.total}`;
      await new Promise((ok) => setTimeout(ok, 300));
      job = await api(`/api/progress/${state.study.id}`);
    }
    if (job.state === "error") throw new Error(job.error);
    $("progress").textContent = "segmented";
    await loadOverlay();
  } catch (e) { $("progress").textContent = ""; showError(e.message); }
}

async function loadOverlay() {
  if (!state.study) return;
  try {
    state.overlay = await loadImage(`/api/mask/${state.study.id}/${state.frame}.png?source=${encodeURIComponent($("source").value)}`);
  } catch (e) { state.overlay = null; }
  draw();
}

function draw() {
  const c = $("canvas"), g = c.getContext("2d");
  if (!state.images.length) return;
  g.drawImage(state.images[state.frame], 0, 0);
  if (state.overlay) g.drawImage(state.overlay, 0, 0);
  $("frameno").textContent = `${state.frame + 1}/${state.images.length}`;
  if (state.result) {
    const p = state.result.profile;
    g.strokeStyle = "#00e0ff"; g.lineWidth = 1.5; g.beginPath();
    p.forEach((r, i) => (i ? g.lineTo(r.x, r.y) : g.moveTo(r.x, r.y))); g.stroke();
    const m = state.result.summary.mld_xy; g.strokeStyle = "yellow"; g.beginPath(); g.arc(m[0], m[1], 8, 0, 7); g.stroke();
  }
  state.points.forEach((p, i) => { g.fillStyle = i ? "orange" : "lime"; g.beginPath(); g.arc(p[0], p[1], 3, 0, 7); g.fill(); });
}

function setFrame(i) { state.frame = i; $("frame").value = i; loadOverlay(); }

function play() {
  if (state.timer) { clearInterval(state.timer); state.timer = null; $("play").textContent = "Play"; return; }
  $("play").textContent = "Stop";
  state.timer = setInterval(() => setFrame((state.frame + 1) % Math.max(1, state.images.length)), 100);
}

async function click(ev) {
  if (!state.study) return;
  const c = $("canvas"), rect = c.getBoundingClientRect();
  const x = (ev.clientX - rect.left) * c.width / rect.width, y = (ev.clientY - rect.top) * c.height / rect.height;
  if (state.points.length >= 2) state.points = [];
  state.points.push([x, y]); draw();
  if (state.points.length === 2) await measure();
}

async function measure() {
  showError("");
  const sp = parseFloat($("spacing").value);
  try {
    state.result = await api("/api/qca", {
      id: state.study.id, frame: state.frame, source: $("source").value,
      proximal: state.points[0], distal: state.points[1], reference: $("reference").value,
      spacing: Number.isFinite(sp) ? sp : null,
    });
    showResult(); draw();
  } catch (e) { state.result = null; showError(e.message); }
}

function showResult() {
  const s = state.result.summary, u = s.unit, f = (v) => (v === null ? "-" : v.toFixed(2));
  const rows = [["%DS", f(s.ds_percent)], ["%AS", f(s.as_percent)], [`MLD (${u})`, f(s[`mld_${u}`])],
    [`RVD (${u})`, f(s[`rvd_${u}`])], [`lesion length (${u})`, f(s[`lesion_length_${u}`])],
    ["reference", s.reference_method], ["calibration", s.calibration.method + (s.calibration.mm_per_px ? ` ${s.calibration.mm_per_px.toFixed(4)} mm/px` : "")]];
  $("numbers").innerHTML = rows.map(([k, v]) => `<tr><th>${k}</th><td id="v-${k.split(" ")[0].replace("%", "pct")}">${v}</td></tr>`).join("");
  document.querySelectorAll("#downloads a").forEach((a) => { a.href = `/api/download/${state.study.id}/${a.dataset.kind}`; });
  $("downloads").hidden = false;
  plot();
}

function clearPlot() { const c = $("plot"); c.getContext("2d").clearRect(0, 0, c.width, c.height); }

function plot() {
  const c = $("plot"), g = c.getContext("2d"), s = state.result.summary, u = s.unit, p = state.result.profile;
  clearPlot();
  const xs = p.map((r) => r[`arc_${u}`]), ds = p.map((r) => r[`diameter_${u}`]), rs = p.map((r) => r[`reference_${u}`]);
  const xmax = Math.max(...xs), ymax = 1.25 * Math.max(...rs, ...ds.filter((d, i) => p[i].valid));
  const X = (v) => 40 + (c.width - 50) * v / xmax, Y = (v) => c.height - 25 - (c.height - 35) * Math.min(v, ymax) / ymax;
  g.strokeStyle = "#999"; g.strokeRect(40, 10, c.width - 50, c.height - 35);
  g.fillStyle = "#333"; g.font = "11px sans-serif";
  g.fillText(`diameter (${u}) vs arc length (${u})`, 45, 22); g.fillText(ymax.toFixed(1), 5, 14); g.fillText(xmax.toFixed(1), c.width - 40, c.height - 8);
  const line = (vals, color, dash) => { g.strokeStyle = color; g.setLineDash(dash); g.beginPath(); vals.forEach((v, i) => (i ? g.lineTo(X(xs[i]), Y(v)) : g.moveTo(X(xs[i]), Y(v)))); g.stroke(); g.setLineDash([]); };
  line(ds, "#1f77b4", []); line(rs, "#d62728", [5, 3]);
}

$("open").onclick = openFile; $("upload").onchange = upload; $("segment").onclick = segment;
$("play").onclick = play; $("frame").oninput = (e) => setFrame(parseInt(e.target.value, 10));
$("source").onchange = loadOverlay; $("canvas").onclick = click;
$("clear").onclick = () => { state.points = []; state.result = null; draw(); };
loadFiles().catch((e) => showError(e.message));
