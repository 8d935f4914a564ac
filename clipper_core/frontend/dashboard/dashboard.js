// The Clipper dashboard: polls the management API (same origin) and the query frontend's
// /metrics, draws one card per application and per model version, and runs actions.
"use strict";

const params = new URLSearchParams(location.search);
const queryPort = document.querySelector('meta[name="clipper-query-port"]').content;
const QUERY_BASE = params.get("query") || `${location.protocol}//${location.hostname}:${queryPort}`;
const INTERVAL_MS = Number(params.get("interval")) || 1000;
const MAX_ERRORS = 50;

const state = {
  token: sessionStorage.getItem("clipperToken") || "",
  charts: {},        // "app:<name>:<chart>" / "model:<name>:<version>:<chart>" -> LineChart
  previous: null,    // { t, metrics } of the last poll, for rates
  errors: [],
  ticks: 0,
  modelRows: {},
};
window.clipperDashboard = state;

// -- data sources ------------------------------------------------------------------------
class AuthNeeded extends Error {}

async function admin(route, body = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const r = await fetch(`/admin/${route}`, { method: "POST", headers, body: JSON.stringify(body) });
  if (r.status === 401) throw new AuthNeeded("the management API needs a token");
  const text = await r.text();
  if (!r.ok) throw new Error(`${route}: ${r.status} ${text}`);
  return (r.headers.get("Content-Type") || "").includes("json") ? JSON.parse(text) : text;
}

async function fetchMetrics() {
  const r = await fetch(`${QUERY_BASE}/metrics`, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${QUERY_BASE}/metrics answered ${r.status}`);
  const flat = {};
  for (const entries of Object.values(await r.json())) {
    for (const entry of entries) {
      for (const [name, fields] of Object.entries(entry)) {
        flat[name] = Object.fromEntries(
          Object.entries(fields).map(([k, v]) => [k, Number(v)]));
      }
    }
  }
  return flat;
}

// -- helpers -------------------------------------------------------------------------------
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function metric(metrics, name, field) {
  const m = metrics[name];
  return m && Number.isFinite(m[field]) ? m[field] : NaN;
}

function rate(name, field, now) {
  const prev = state.previous;
  if (!prev) return NaN;
  const seconds = (now.t - prev.t) / 1000;
  const delta = metric(now.metrics, name, field) - metric(prev.metrics, name, field);
  return seconds > 0 && Number.isFinite(delta) ? Math.max(0, delta / seconds) : NaN;
}

function increase(name, field, now) {
  if (!state.previous) return 0;
  const before = metric(state.previous.metrics, name, field);
  const after = metric(now.metrics, name, field);
  return Number.isFinite(before) && Number.isFinite(after) ? after - before : 0;
}

function addError(text) {
  state.errors.unshift({ time: new Date(), text });
  state.errors.length = Math.min(state.errors.length, MAX_ERRORS);
  const list = document.getElementById("errors");
  list.replaceChildren(...state.errors.map(e =>
    el("li", {}, `${e.time.toLocaleTimeString()} `, e.text)));
}

function chart(key, card, options) {
  if (!state.charts[key]) {
    const canvas = el("canvas", { class: "chart", width: 320, height: 120,
                                  dataset: { chart: key } });
    card.append(canvas);
    state.charts[key] = new LineChart(canvas, options);
  }
  return state.charts[key];
}

function forget(prefix, keep) {
  for (const key of Object.keys(state.charts)) {
    if (key.startsWith(prefix) && !keep.has(key.split(":").slice(0, prefix === "app:" ? 2 : 3)
        .join(":"))) delete state.charts[key];
  }
}

// -- versions and roles --------------------------------------------------------------------
// Each model's traffic (get_traffic): its current version, the split's weights, its shadows.
// Only a model with several versions can have canaries or shadows: only those are asked.
async function fetchTraffic(models) {
  const count = {};
  for (const m of models) count[m.model_name] = (count[m.model_name] || 0) + 1;
  const names = Object.keys(count).filter(name => count[name] > 1);
  return Object.fromEntries(await Promise.all(names.map(async name => {
    try {
      return [name, await admin("get_traffic", { model_name: name })];
    } catch (e) {
      if (e instanceof AuthNeeded) throw e;
      return [name, {}];  // deleted since get_all_models answered
    }
  })));
}

// "<model>:<version>" -> [{ role, text }]: current, canary (a split's other versions with a
// weight) and shadow, with each version's share of the split.
function roles(models, traffic) {
  const out = {};
  const add = (id, role, text) => (out[id] = out[id] || []).push({ role, text });
  for (const m of models) {
    if (m.is_current_version && !(m.model_name in traffic)) {
      add(`${m.model_name}:${m.model_version}`, "current", "current");
    }
  }
  for (const [model, t] of Object.entries(traffic)) {
    const weights = t.split || {};
    const total = Object.values(weights).reduce((a, b) => a + b, 0);
    const share = v => (total > 0 && v in weights
      ? ` ${Math.round(1000 * weights[v] / total) / 10}%` : "");
    if (t.current !== null && t.current !== undefined) {
      add(`${model}:${t.current}`, "current", `current${share(t.current)}`);
    }
    for (const [v, w] of Object.entries(weights)) {
      if (v !== t.current && w > 0) add(`${model}:${v}`, "canary", `canary${share(v)}`);
    }
    for (const v of t.shadows || []) add(`${model}:${v}`, "shadow", "shadow");
  }
  return out;
}

// -- rendering -----------------------------------------------------------------------------
function renderApps(apps, models, now) {
  const container = document.getElementById("apps");
  const names = new Set();
  for (const app of apps) {
    const key = `app:${app.name}`;
    names.add(key);
    let card = container.querySelector(`[data-app="${CSS.escape(app.name)}"]`);
    if (!card) {
      card = el("div", { class: "card", dataset: { app: app.name } },
                el("h3", {}, app.name), el("div", { class: "meta" }));
      container.append(card);
    }
    const current = app.linked_models.map(name => {
      const m = models.find(v => v.model_name === name && v.is_current_version);
      return m ? `${name}:${m.model_version}` : `${name} (no current version)`;
    });
    card.querySelector(".meta").textContent =
      `${app.input_type} · SLO ${app.latency_slo_micros / 1000} ms · default ` +
      `${JSON.stringify(app.default_output)} · model ${current.join(", ") || "none linked"}`;
    const p = `app:${app.name}:`;
    const slo = app.latency_slo_micros / 1000;
    chart(`${key}:predictions`, card, {
      title: "Predictions/s", series: [{ name: "predictions", color: "#2b6cb0" },
                                       { name: "defaults", color: "#c53030" }] })
      .push(now.t, [rate(p + "num_predictions", "count", now),
                    rate(p + "num_defaults", "count", now)]);
    chart(`${key}:latency`, card, {
      title: "Latency", unit: "ms", threshold: { value: slo, label: "SLO" },
      series: [{ name: "p50", color: "#2f855a" }, { name: "p99", color: "#b7791f" }] })
      .push(now.t, [metric(now.metrics, p + "prediction_latency", "p50") / 1000,
                    metric(now.metrics, p + "prediction_latency", "p99") / 1000]);
    const defaults = increase(p + "num_defaults", "count", now);
    if (defaults > 0) addError(`app ${app.name}: ${defaults} default output(s)`);
  }
  for (const card of [...container.children]) {
    if (!names.has(`app:${card.dataset.app}`)) card.remove();
  }
  forget("app:", names);
}

function renderModels(models, traffic, replicas, now) {
  const body = document.querySelector("#models tbody");
  const charts = document.getElementById("model-charts");
  const roleOf = roles(models, traffic);
  const keys = new Set();
  const connected = {};
  for (const r of replicas) connected[r.model_id] = (connected[r.model_id] || 0) + 1;
  for (const m of models) {
    const id = `${m.model_name}:${m.model_version}`;
    const key = `model:${id}`;
    keys.add(key);
    const p = `${key}:`;
    let row = state.modelRows[id];
    if (!row) {
      const input = el("input", { type: "number", min: 0, value: connected[id] || 0,
                                  dataset: { scale: id } });
      row = state.modelRows[id] = el("tr", { dataset: { model: id } },
        el("td", {}, m.model_name), el("td", {}, m.model_version), el("td", { class: "roles" }),
        el("td", {}, m.input_type), el("td", { class: "replicas" }), el("td", { class: "health" }),
        el("td", {},
           el("button", { class: "make-current", dataset: { setVersion: id },
                          onclick: () => act(`set_model_version`, {
                            model_name: m.model_name, model_version: m.model_version },
                            `${id} is now the current version`) }, "Make current"), " ",
           input,
           el("button", { dataset: { scaleButton: id }, onclick: () => act("set_num_replicas", {
             model_name: m.model_name, model_version: m.model_version,
             num_replicas: Number(input.value) }, `${id} scaled to ${input.value}`) },
              "Scale")));
      body.append(row);
      charts.append(el("div", { class: "card", dataset: { modelCard: id } }, el("h3", {}, id)));
    }
    const rolesCell = row.querySelector(".roles");
    rolesCell.replaceChildren(...(roleOf[id] || []).flatMap((r, i) =>
      [...(i ? [" "] : []), el("span", { class: `badge ${r.role}` }, r.text)]));
    row.querySelector(".make-current").disabled = m.is_current_version;
    const n = connected[id] || 0;
    row.querySelector(".replicas").textContent = String(n);
    const errors = increase(p + "num_errors", "count", now);
    if (errors > 0) addError(`model ${id}: ${errors} failed batch(es) (the model raised)`);
    const health = row.querySelector(".health");
    const [label, cls] = n === 0 ? ["no replica connected", "health-bad"]
      : errors > 0 ? ["errors", "health-warn"] : ["healthy", "health-ok"];
    health.textContent = label;
    health.className = `health ${cls}`;
    const card = charts.querySelector(`[data-model-card="${CSS.escape(id)}"]`);
    chart(`${key}:predictions`, card, {
      title: "Predictions/s", series: [{ name: "predictions", color: "#2b6cb0" }] })
      .push(now.t, [rate(p + "num_predictions", "count", now)]);
    chart(`${key}:batching`, card, {
      title: "Batch size, queue depth", series: [{ name: "batch", color: "#805ad5" },
                                                 { name: "queue", color: "#dd6b20" }] })
      .push(now.t, [metric(now.metrics, p + "batch_size", "mean"),
                    metric(now.metrics, p + "queue_depth", "value")]);
    chart(`${key}:cache`, card, {
      title: "Cache hit rate", unit: "%", series: [{ name: "hits", color: "#2f855a" }] })
      .push(now.t, [metric(now.metrics, p + "cache_hit_ratio", "ratio") * 100]);
  }
  for (const [id, row] of Object.entries(state.modelRows)) {
    if (!keys.has(`model:${id}`)) {
      row.remove();
      charts.querySelector(`[data-model-card="${CSS.escape(id)}"]`)?.remove();
      delete state.modelRows[id];
    }
  }
  forget("model:", keys);
}

// -- actions and the loop ------------------------------------------------------------------
async function act(route, body, done) {
  try {
    await admin(route, body);
    setStatus(done, "ok");
    await refresh();
  } catch (e) {
    if (e instanceof AuthNeeded) document.getElementById("auth-needed").hidden = false;
    addError(`${route} failed: ${e.message}`);
    setStatus(`${route} failed`, "bad");
  }
}

function setStatus(text, cls = "") {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = `status ${cls}`;
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const [apps, models, replicas, metrics] = await Promise.all([
      admin("get_all_applications", { verbose: true }), admin("get_all_models", { verbose: true }),
      admin("get_all_containers", { verbose: true }), fetchMetrics()]);
    const traffic = await fetchTraffic(models);
    document.getElementById("auth-needed").hidden = true;
    const now = { t: Date.now(), metrics };
    renderApps(apps, models, now);
    renderModels(models, traffic, replicas, now);
    state.previous = now;
    state.ticks += 1;
    setStatus(`live · ${apps.length} app(s), ${models.length} model version(s), ` +
              `${replicas.length} replica(s)`, "ok");
  } catch (e) {
    if (e instanceof AuthNeeded) {
      document.getElementById("auth-needed").hidden = false;
      setStatus("token needed", "bad");
    } else {
      setStatus(`cannot refresh: ${e.message}`, "bad");
    }
  } finally {
    refreshing = false;
  }
}

document.getElementById("token").value = state.token;
document.getElementById("token-form").addEventListener("submit", event => {
  event.preventDefault();
  state.token = document.getElementById("token").value.trim();
  sessionStorage.setItem("clipperToken", state.token);
  refresh();
});
refresh();
setInterval(refresh, INTERVAL_MS);
