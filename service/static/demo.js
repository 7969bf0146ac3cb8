// The demo page: it calls the service's public API exactly as any client would
// (GET model, GET openapi.json for the model's example, POST predict, GET monitor),
// with the bearer token when the service asks for one. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: null, card: null, example: null, input: null, range: null };
const MAX_BARS = 20; // models with more labels show their most probable ones

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  if (state.token) headers.Authorization = "Bearer " + state.token;
  return fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
  } catch (_) {
    // not JSON: fall through to the status line
  }
  return `HTTP ${response.status}`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

// ---- start: the card, or a token form when the service wants one ------------------------------
async function start() {
  const response = await api("model");
  if (response.status === 401) {
    $("token-form").hidden = false;
    $("token").focus();
    return;
  }
  if (!response.ok) {
    showError(`GET /model: ${await errorText(response)}`);
    return;
  }
  $("token-form").hidden = true;
  const info = await response.json();
  state.card = info.card;
  state.example = await loadExample();
  renderCard(info);
  $("main").hidden = false;
  if (state.card.input.kind === "image") setupImage();
  else setupTabular();
  refreshMonitor();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token").value.trim();
  showError("");
  start();
});

// The model's own example (a golden sample), as the API documentation publishes it.
async function loadExample() {
  const response = await api("openapi.json");
  if (!response.ok) return null;
  const spec = await response.json();
  try {
    const media = spec.paths["/predict"].post.requestBody.content["application/json"];
    const value = media.examples.golden.value;
    return value.image !== undefined ? value.image : value.features;
  } catch (_) {
    return null;
  }
}

// ---- the model card summary -------------------------------------------------------------------
function renderCard(info) {
  const card = info.card;
  $("model-name").textContent = `${card.name} · version ${info.model_version}`;
  $("model-name").className = "";
  const m = card.metrics || {};
  const pct = (v) => (typeof v === "number" ? (100 * v).toFixed(1) + " %" : "–");
  const data = card.data || {};
  const facts = [
    ["Input", `${card.input.kind} ${card.input.shape.slice(1).join(" × ")}: ${card.input.description}`],
    ["Labels", card.labels.join(", ")],
    ["BatchNorm statistics", card.stats_mode],
    ["Test accuracy", `EMA ${pct(m.test_acc_ema)} · exact ${pct(m.test_acc_exact)}`],
    ["Folded", `${card.fold.folded} of ${card.fold.bn_total} BatchNorm layers; ${card.bn_nodes} left`],
    ["Data", data.name ? `${data.source}: ${data.name}` : "not recorded"],
    ["Data SHA-256", data.sha256 || "not recorded"],
    ["Created", card.created_at],
  ];
  const dl = $("facts");
  dl.replaceChildren();
  for (const [term, value] of facts) {
    dl.append(el("dt", term), el("dd", value));
  }
}

$("card-details").addEventListener("toggle", async () => {
  if (!$("card-details").open || $("card-markdown").textContent) return;
  const response = await api("model/card.md");
  $("card-markdown").textContent = response.ok
    ? await response.text()
    : `GET /model/card.md: ${await errorText(response)}`;
});

// ---- predictions and the chart -----------------------------------------------------------------
async function predict(body, contentType) {
  showError("");
  const response = await api("predict", {
    method: "POST",
    headers: { "Content-Type": contentType },
    body,
  });
  if (!response.ok) {
    showError(`POST /predict: ${await errorText(response)}`);
    return;
  }
  renderPrediction(await response.json());
  refreshMonitor();
}

function renderPrediction(result) {
  $("label").textContent = result.label;
  const p = result.probabilities[result.label];
  $("confidence").textContent = `probability ${(100 * p).toFixed(1)} %`;
  let entries = Object.entries(result.probabilities);
  if (entries.length > MAX_BARS) {
    entries = entries.sort((a, b) => b[1] - a[1]).slice(0, MAX_BARS);
  }
  const chart = $("chart");
  chart.replaceChildren();
  for (const [label, prob] of entries) {
    const row = el("div", undefined, label === result.label ? "bar-row top" : "bar-row");
    row.setAttribute("role", "listitem");
    row.dataset.label = label;
    row.dataset.probability = String(prob);
    const bar = el("span", undefined, "bar");
    bar.style.width = `${(100 * prob).toFixed(2)}%`;
    const track = el("span", undefined, "track");
    track.append(bar);
    row.append(el("span", label, "bar-label"), track, el("span", (100 * prob).toFixed(1) + " %", "bar-value"));
    chart.append(row);
  }
}

// ---- tabular models: a form from the card's features, pre-filled with the example -----------------
function setupTabular() {
  const features = state.card.input.tabular.features;
  $("tabular-input").hidden = false;
  const fields = $("fields");
  for (const feature of features) {
    const label = el("label", feature.name + " ");
    let input;
    if (feature.type === "categorical") {
      input = el("select");
      for (const category of feature.categories) {
        const option = el("option", category);
        option.value = category;
        input.append(option);
      }
      if (feature.fill !== null) {
        const missing = el("option", `(missing: ${feature.fill})`);
        missing.value = "";
        input.append(missing);
      }
    } else {
      input = el("input");
      input.type = "number";
      input.step = "any";
      input.required = feature.fill === null;
      input.placeholder = feature.fill === null ? "required" : `missing: ${feature.fill}`;
    }
    input.name = feature.name;
    input.dataset.feature = feature.name;
    label.append(input);
    fields.append(label);
  }
  fillExample();
  $("reset").addEventListener("click", fillExample);
  $("tabular-input").addEventListener("submit", (event) => {
    event.preventDefault();
    const values = {};
    for (const feature of features) {
      const input = fields.querySelector(`[data-feature="${CSS.escape(feature.name)}"]`);
      if (input.value === "") values[feature.name] = null;
      else values[feature.name] = feature.type === "categorical" ? input.value : Number(input.value);
    }
    predict(JSON.stringify({ features: values }), "application/json");
  });
}

// The example holds one raw value per feature (a category as its text), in feature order,
// as the API documentation publishes it.
function fillExample() {
  const features = state.card.input.tabular.features;
  const row = Array.isArray(state.example) ? state.example : [];
  features.forEach((feature, i) => {
    const input = $("fields").querySelector(`[data-feature="${CSS.escape(feature.name)}"]`);
    const value = row.length === features.length ? row[i] : null;
    input.value = value === null || value === undefined ? "" : String(value);
  });
}

// ---- the drift monitor (GET /monitor), where the service has one --------------------------------
let monitorRefreshes = 0;

async function refreshMonitor() {
  // Refreshes overlap (page load, then every prediction) and may answer out of order: only the
  // latest one renders, so an older report never replaces a newer one.
  const mine = ++monitorRefreshes;
  const response = await api("monitor");
  if (mine !== monitorRefreshes) return;
  if (!response.ok) {
    $("monitor").hidden = true; // no such route (404), or not allowed
    return;
  }
  const report = await response.json();
  if (mine !== monitorRefreshes) return;
  renderMonitor(report);
  $("monitor").hidden = false;
}

function renderMonitor(report) {
  const num = (v) => (typeof v === "number" ? String(+v.toPrecision(4)) : "–");
  const pct = (v) => (typeof v === "number" ? `${(100 * v).toFixed(1)} %` : "–");
  const facts = [];
  if (report.enabled === false) {
    facts.push(["Monitoring", `off: ${report.reason || "disabled"}`]);
  } else {
    let drift = "too few samples yet";
    if (report.drift !== null && report.drift !== undefined) drift = report.drift ? "yes" : "no";
    facts.push(["Drift", drift]);
    facts.push(["Score / threshold", `${num(report.score)} / ${num(report.threshold)}`]);
    facts.push(["False-alarm rate", `${pct(report.false_alarm_rate)} of clean windows`]);
    facts.push([
      "Window",
      `${report.samples_in_window} of ${report.window_size} samples (${report.samples_seen} seen)`,
    ]);
    const range = report.input_out_of_range;
    if (range) facts.push(["Inputs out of range", `${pct(range.rate)} (clean data ${pct(range.clean_rate)})`]);
    const classes = report.predictions;
    if (classes && typeof classes.total_variation === "number") {
      facts.push(["Predicted vs training classes", `total variation ${num(classes.total_variation)}`]);
    }
    const shifted = (report.most_shifted_channels || []).slice(0, 3);
    if (shifted.length) {
      facts.push(["Most shifted channels", shifted.map((c) => `${c.name} ${num(c.value)}`).join(", ")]);
    }
  }
  const dl = $("monitor-facts");
  dl.replaceChildren();
  for (const [term, value] of facts) dl.append(el("dt", term), el("dd", value));
  const body = $("monitor-components").querySelector("tbody");
  body.replaceChildren();
  for (const c of report.components || []) {
    const row = el("tr", undefined, c.shifted ? "shifted" : "");
    row.append(el("td", c.name), el("td", num(c.score)), el("td", num(c.surprise)), el("td", c.shifted ? "yes" : "no"));
    body.append(row);
  }
  $("monitor-components").hidden = !(report.components || []).length;
}

start().catch((err) => showError(String(err)));
