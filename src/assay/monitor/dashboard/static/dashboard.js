// The assay dashboard: reads /api/... (read-only JSON) and draws tables and uPlot charts.
// Every string from the repository goes into the page as text (textContent), never as HTML.
"use strict";

const COLORS = ["#1f5fbf", "#d9480f", "#2b8a3e", "#862e9c", "#e8590c", "#0b7285", "#c2255c", "#5c940d",
                "#364fc7", "#a61e4d", "#495057", "#f08c00", "#087f5b"];
const state = { model: null, window: "auto", charts: {}, pending: 0 };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") node.addEventListener("click", v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function when(t) {
  if (t === null || t === undefined) return "";
  return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
}

function num(v, digits) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) ? String(v) : v.toFixed(digits === undefined ? 3 : digits);
}

async function api(path) {
  state.pending += 1;
  try {
    const r = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  } finally {
    state.pending -= 1;
  }
}

function note(target, cls, text) {
  target.replaceChildren(el("div", { class: cls }, text));
}

function fill(tbody, rows, onPick) {
  tbody.replaceChildren();
  for (const row of rows) {
    const tr = el("tr", { class: onPick ? "clickable" : "" }, ...row.cells.map((c) => el("td", {}, c)));
    if (row.id !== undefined) tr.dataset.id = row.id;
    if (onPick) tr.addEventListener("click", () => {
      for (const other of tbody.children) other.classList.remove("selected");
      tr.classList.add("selected");
      onPick(row);
    });
    tbody.append(tr);
  }
  if (!rows.length) tbody.append(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "none")));
}

// -- repository: datasets and commits -------------------------------------------------------------------------

async function loadDatasets() {
  const list = await api("/api/datasets");
  fill(document.querySelector("#datasets tbody"),
       list.map((d) => ({ id: d.name, cells: [d.name, d.rows, d.columns, d.key.join(", ")] })),
       (row) => showDataset(row.id));
}

async function showDataset(name) {
  const box = document.getElementById("dataset-detail");
  note(box, "muted", "loading " + name + "…");
  try {
    const d = await api("/api/datasets/" + encodeURIComponent(name));
    const commits = el("table", { id: "dataset-commits" },
      el("thead", {}, el("tr", {}, el("th", {}, "commit"), el("th", {}, "when"), el("th", {}, "message"))),
      el("tbody", {}, ...d.commits.map((c) => el("tr", { "data-id": c.id },
        el("td", { class: "id" }, c.id.slice(0, 12)), el("td", {}, when(c.time)), el("td", {}, c.message)))));
    const trained = d.trained_on.length
      ? el("ul", { id: "dataset-models" }, ...d.trained_on.map((t) => el("li", {},
          el("button", { class: "link", type: "button", onclick: () => showModel(t.name, t.version) }, t.model),
          " (" + t.match + ")")))
      : el("p", { class: "muted", id: "dataset-models" }, "no model version was trained on this version");
    box.replaceChildren(el("h3", {}, name + ": " + d.rows + " rows"),
      el("p", { class: "muted" }, d.schema.map((f) => f.name + ": " + f.type).slice(0, 12).join(", ")
        + (d.schema.length > 12 ? ", …" : "")),
      el("h3", {}, "Commits that changed it"), el("div", { class: "scroll" }, commits),
      el("h3", {}, "Models trained on it (HEAD)"), trained);
  } catch (e) {
    note(box, "error", e.message);
  }
}

async function loadCommits() {
  const list = await api("/api/commits?limit=100");
  fill(document.querySelector("#commits tbody"), list.map((c) => ({ id: c.id,
    cells: [el("span", { class: "id" }, c.id.slice(0, 12)), when(c.time), c.message,
            c.datasets.join(", ")] })));
}

// -- registry: models and lineage -----------------------------------------------------------------------------

async function loadModels() {
  const list = await api("/api/models");
  fill(document.querySelector("#models tbody"), list.map((m) => ({ id: m.name,
    cells: [m.name, m.versions, Object.entries(m.aliases).map(([a, v]) => a + " → " + v).join(", "),
            m.framework] })), (row) => showModel(row.id));
  const select = document.getElementById("model-select");
  select.replaceChildren(...list.filter((m) => m.logged).map((m) => el("option", { value: m.name }, m.name)));
  if (!list.some((m) => m.logged)) {
    document.getElementById("monitor-status").textContent = "no model has a prediction log yet: serve one with "
      + "`assay serve NAME`";
  }
  return list;
}

function dataNode(ref, label) {
  if (!ref) return el("span", { class: "node muted" }, label + ": none");
  return el("span", { class: "node" }, label + ": ",
    el("button", { class: "link", type: "button", onclick: () => showDataset(ref.dataset) },
       ref.dataset + "@" + (ref.rev || ref.commit.slice(0, 12))));
}

async function showModel(name, version) {
  const box = document.getElementById("model-detail");
  note(box, "muted", "loading " + name + "…");
  try {
    const m = await api("/api/models/" + encodeURIComponent(name) + (version ? "?version=" + version : ""));
    const lin = m.lineage;
    const up = lin.ancestors.slice().reverse().map((a) => el("span", { class: "node" }, a.model));
    const chain = el("div", { class: "lineage", id: "lineage" }, dataNode(lin.train, "train"),
      dataNode(lin.eval, "eval"), el("span", { class: "arrow" }, "→"),
      ...up.flatMap((n) => [n, el("span", { class: "arrow" }, "→")]),
      el("span", { class: "node current" }, lin.model),
      ...lin.descendants.map((d) => el("span", { class: "node" }, "→ " + d.model
        + (d.derived_by ? " (" + d.derived_by + ")" : ""))));
    const versions = el("table", { id: "model-versions" },
      el("thead", {}, el("tr", {}, ...["version", "created", "train", "derived by", "metrics"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, ...m.versions.map((v) => {
        const tr = el("tr", { class: "clickable" + (v.version === m.selected ? " selected" : "") },
          el("td", {}, v.spec), el("td", {}, when(v.created)), el("td", {}, v.train || ""),
          el("td", {}, v.derived_by || ""),
          el("td", {}, Object.entries(v.metrics).map(([k, x]) => k + "=" + num(x)).join(", ")));
        tr.addEventListener("click", () => showModel(name, v.version));
        return tr;
      })));
    const code = lin.code && lin.code.git_commit ? "code: git " + lin.code.git_commit.slice(0, 12)
      + (lin.code.dirty ? " (dirty)" : "") : "code: not recorded";
    box.replaceChildren(el("h3", {}, "Lineage of " + lin.model), chain, el("p", { class: "muted" }, code),
      el("h3", {}, "Versions"), versions);
    if (m.logged && state.model !== name) {
      document.getElementById("model-select").value = name;
      loadMonitor(name);
    }
  } catch (e) {
    note(box, "error", e.message);
  }
}

// -- charts ---------------------------------------------------------------------------------------------------

function chart(id, series, data, opts) {
  const box = document.getElementById(id);
  if (state.charts[id]) state.charts[id].destroy();
  delete state.charts[id];
  box.replaceChildren();
  box.dataset.drawn = "0";
  if (!data[0].length) {
    note(box, "muted", "no windows");
    return;
  }
  data = [increasing(data[0]), ...data.slice(1)];
  const width = Math.max(300, box.clientWidth || 500);
  const spec = {
    width, height: 200, legend: { show: true, live: false },
    scales: { x: { time: true }, y: Object.assign({ auto: true }, (opts && opts.y) || {}) },
    series: [{}, ...series.map((s, i) => ({ label: s, stroke: COLORS[i % COLORS.length], width: 1.5,
                                            spanGaps: true, points: { show: data[0].length < 60 } }))],
    axes: [{}, { size: 60 }],
  };
  state.charts[id] = new uPlot(spec, data, box);
  box.dataset.drawn = "1";
}

function increasing(xs) {
  // windows of a row count can start at the same second (a batch of requests): uPlot needs x to grow
  const out = xs.slice();
  for (let i = 1; i < out.length; i++) if (out[i] <= out[i - 1]) out[i] = out[i - 1] + 1e-3;
  return out;
}

function unavailable(id, text) {
  const box = document.getElementById(id);
  if (state.charts[id]) state.charts[id].destroy();
  delete state.charts[id];
  box.dataset.drawn = "0";
  note(box, text.startsWith("not available") ? "unavailable" : "error", text);
}

async function loadMonitor(name) {
  state.model = name;
  document.getElementById("monitor-model").textContent = name;
  const w = encodeURIComponent(state.window);
  const status = document.getElementById("monitor-status");
  status.textContent = "loading…";
  const base = "/api/models/" + encodeURIComponent(name);
  const parts = [
    api(base + "/serving?window=" + w).then(drawServing, (e) => {
      for (const id of ["chart-rows", "chart-latency", "chart-classes"]) unavailable(id, e.message);
    }),
    api(base + "/drift?window=" + w).then(drawDrift, (e) => unavailable("chart-drift", e.message)),
    api(base + "/performance?window=" + w).then(drawPerformance, (e) => unavailable("chart-perf", e.message)),
    api(base + "/alerts").then(drawAlerts, (e) => note(document.getElementById("alerts-status"), "error",
                                                       e.message)),
  ];
  await Promise.all(parts);
  if (status.textContent === "loading…") status.textContent = "";
}

function drawServing(s) {
  document.getElementById("monitor-status").textContent = s.total_rows + " logged predictions, window " + s.window;
  chart("chart-rows", ["requests"], [s.start, s.rows]);
  chart("chart-latency", ["p50", "p95", "p99"], [s.start, s.p50, s.p95, s.p99]);
  chart("chart-classes", s.classes, [s.start, ...s.classes.map((c) => s.shares[c])], { y: { range: [0, 1] } });
}

function topFeatures(byFeature, n) {
  const peak = (xs) => Math.max(...xs.map((x) => (x === null ? -Infinity : x)));
  return Object.keys(byFeature).sort((a, b) => peak(byFeature[b]) - peak(byFeature[a])).slice(0, n);
}

function drawDrift(d) {
  const select = document.getElementById("drift-metric");
  if (!d.available) {
    select.replaceChildren();
    unavailable("chart-drift", d.reason);
    return;
  }
  const metrics = Object.keys(d.metrics);
  const keep = metrics.includes(select.value) ? select.value : metrics[0];
  select.replaceChildren(...metrics.map((m) => el("option", { value: m }, m)));
  if (!keep) return unavailable("chart-drift", "no drift values: no window has rows");
  select.value = keep;
  select.onchange = () => drawDrift(d);
  const features = topFeatures(d.metrics[keep], 8);
  chart("chart-drift", features, [d.start, ...features.map((f) => d.metrics[keep][f])]);
  const box = document.getElementById("chart-drift");
  box.append(el("div", { class: "muted" }, "explain a feature: ",
    ...features.map((f) => el("button", { class: "link", type: "button", "data-feature": f,
                                          onclick: () => drillFeature({ feature: f, metric: keep }) }, f))));
}

function drawPerformance(p) {
  if (!p.available) return unavailable("chart-perf", p.reason);
  const names = Object.keys(p.metrics).filter((m) => p.metrics[m]["*"]);
  if (!names.length) return unavailable("chart-perf", "no performance values: no window has rows");
  chart("chart-perf", names, [p.start, ...names.map((m) => p.metrics[m]["*"])]);
}

// -- alerts and the drill-down --------------------------------------------------------------------------------

function drawAlerts(a) {
  const status = document.getElementById("alerts-status");
  const tbody = document.querySelector("#alerts tbody");
  if (!a.available) {
    note(status, "unavailable", a.reason);
    tbody.replaceChildren();
    return;
  }
  status.textContent = a.alerts.length + " alert(s)";
  fill(tbody, a.alerts.map((x) => ({ id: x.id, alert: x,
    cells: [when(x.fired_at), x.severity, x.rule, x.metric, x.feature, num(x.value), num(x.threshold), x.state] })),
    (row) => drillAlert(row.alert));
}

function drillAlert(alert) {
  const box = document.getElementById("drill");
  box.replaceChildren(el("h3", {}, "Alert " + alert.id),
    el("p", {}, alert.rule + ": " + alert.metric + " of " + alert.feature + " = " + num(alert.value)
      + " (threshold " + num(alert.threshold) + ") in " + when(alert.window_start) + " … " + when(alert.window_end)),
    el("p", {}, "feature: ", el("button", { class: "link", type: "button", id: "drill-feature",
      onclick: () => drillFeature({ alert: alert.id, feature: alert.feature }) }, alert.feature)),
    el("div", { id: "drill-slices" }));
}

function explainUrl(q, rank) {
  const params = new URLSearchParams();
  for (const k of ["alert", "feature", "metric"]) if (q[k] && !(k === "feature" && q[k] === "*" && q.alert)) {
    params.set(k, q[k]);
  }
  if (q.alert) params.delete("feature");  // the alert names its feature and window
  params.set("slice", String(rank || 1));
  return "/api/models/" + encodeURIComponent(state.model) + "/explain?" + params.toString();
}

async function drillFeature(q) {
  let box = document.getElementById("drill-slices");
  if (!box) {
    document.getElementById("drill").replaceChildren(el("h3", {}, "Feature " + q.feature),
                                                     el("div", { id: "drill-slices" }));
    box = document.getElementById("drill-slices");
  }
  note(box, "muted", "finding the slices…");
  try {
    const x = await api(explainUrl(q, 1));
    if (!x.available) return note(box, "unavailable", x.reason);
    const tbody = el("tbody");
    box.replaceChildren(el("h3", {}, "Slices that explain " + (x.feature || x.metric || "the alert")
      + " (" + x.production_rows + " production rows vs " + x.reference_rows + " of " + x.reference + ")"),
      el("table", { id: "slices" }, el("thead", {}, el("tr", {}, ...["slice", "effect", "reference share",
        "production share"].map((h) => el("th", {}, h)))), tbody), el("div", { id: "drill-samples" }),
      ...x.notes.map((n) => el("p", { class: "muted" }, n)));
    fill(tbody, x.slices.map((s, i) => ({ id: String(i + 1), cells: [s.name, num(s.effect),
      num(s.reference_share), num(s.production_share)] })), (row) => drillSlice(q, Number(row.id)));
  } catch (e) {
    note(box, "error", e.message);
  }
}

async function drillSlice(q, rank) {
  const box = document.getElementById("drill-samples");
  note(box, "muted", "reading the samples…");
  try {
    const x = await api(explainUrl(q, rank));
    if (!x.available) return note(box, "unavailable", x.reason);
    const chosen = x.slices[x.chosen] || {};
    box.replaceChildren(el("h3", {}, "Samples of " + (chosen.name || "slice " + rank)
      + ", beside their nearest training samples (" + x.training + ")"),
      el("table", { id: "samples" }, el("thead", {}, el("tr", {}, ...["request", "time", "prediction", "label",
        "values", "nearest training samples"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...x.samples.map((s) => el("tr", {}, el("td", { class: "id" }, s.request_id),
        el("td", {}, when(s.time)), el("td", {}, num(s.prediction)), el("td", {}, num(s.label)),
        el("td", {}, ...thumbs(s.thumbnails), short(s.values)),
        el("td", {}, ...s.neighbours.map((n) => el("div", { class: "neighbour" }, ...thumbs(n.thumbnails),
          "#" + n.sample_id.slice(0, 8) + " label " + num(n.label) + " at " + num(n.distance) + ": "
          + short(n.values)))))))));
  } catch (e) {
    note(box, "error", e.message);
  }
}

function short(values) {
  const items = Object.entries(values || {});
  return items.slice(0, 6).map(([k, v]) => k + "=" + (Array.isArray(v) ? "[" + v.length + " values]" : num(v, 2)))
    .join(", ") + (items.length > 6 ? ", …" : "");
}

// images of a sample (PNG data URIs made by the server), one per image column
function thumbs(thumbnails) {
  return Object.entries(thumbnails || {}).filter(([, uri]) => uri && uri.startsWith("data:image/png;base64,"))
    .map(([column, uri]) => el("img", { class: "thumb", alt: column, src: uri }));
}

// -- start ----------------------------------------------------------------------------------------------------

async function start() {
  const params = new URLSearchParams(location.search);
  state.window = params.get("window") || "auto";
  document.getElementById("window-input").value = state.window;
  document.getElementById("window-apply").addEventListener("click", () => {
    state.window = document.getElementById("window-input").value.trim() || "auto";
    if (state.model) loadMonitor(state.model);
  });
  document.getElementById("model-select").addEventListener("change", (e) => loadMonitor(e.target.value));
  const info = document.getElementById("repo-info");
  try {
    const o = await api("/api/overview");
    info.textContent = o.root + " · " + (o.branch || "detached") + " @ " + (o.head || "").slice(0, 12)
      + " · " + o.datasets + " datasets · " + o.models + " models";
    const [, , models] = await Promise.all([loadDatasets(), loadCommits(), loadModels()]);
    const logged = models.filter((m) => m.logged);
    const first = params.get("model") || (logged.length ? logged[0].name : null);
    if (first) {
      document.getElementById("model-select").value = first;
      await loadMonitor(first);
    }
  } catch (e) {
    info.textContent = "error: " + e.message;
  }
  document.body.dataset.ready = "1";
  performance.mark("assay-ready");
}

start();
