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

// ---- image models: a canvas, what the model sees, an optional file picker ------------------------
function setupImage() {
  const image = state.card.input.image;
  $("image-input").hidden = false;
  const cell = Math.max(1, Math.floor(256 / Math.max(image.height, image.width)));
  const canvas = $("canvas");
  canvas.width = image.width * cell;
  canvas.height = image.height * cell;
  const preview = $("preview");
  preview.width = image.width;
  preview.height = image.height;
  state.range = valueRange(image);
  $("range-note").textContent = state.range.note;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  clearCanvas(ctx);

  let drawing = false;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [
      ((event.clientX - box.left) * canvas.width) / box.width,
      ((event.clientY - box.top) * canvas.height) / box.height,
    ];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    ctx.beginPath();
    ctx.moveTo(...at(event));
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    ctx.lineTo(...at(event));
    ctx.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    state.input = sampleCanvas(ctx, image, cell);
    showInput(image);
    predictImage();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);

  $("predict-image").addEventListener("click", predictImage);
  $("clear").addEventListener("click", () => {
    clearCanvas(ctx);
    state.input = sampleCanvas(ctx, image, cell);
    showInput(image);
  });
  $("example").hidden = !state.example;
  $("example").addEventListener("click", () => {
    state.input = toChannels(state.example, image);
    paintInput(ctx, image, cell);
    showInput(image);
    predictImage();
  });
  if (image.files) {
    $("file-picker").hidden = false;
    $("file").addEventListener("change", () => {
      const file = $("file").files[0];
      if (file) predict(file, file.type || "application/octet-stream");
    });
  }
  state.input = sampleCanvas(ctx, image, cell);
  showInput(image);
}

// Canvas ink (white on black) 0..1 -> the model's values: the card's file rule (pixel x scale)
// when the model takes files, else the range of the model's own example input.
function valueRange(image) {
  if (image.files) {
    const hi = 255 * image.files.scale;
    return { lo: 0, hi, note: `Ink 0..255 × ${image.files.scale} (the card's file rule) = 0..${+hi.toFixed(4)}.` };
  }
  const flat = state.example ? state.example.flat(3) : [];
  const lo = flat.length ? flat.reduce((a, b) => Math.min(a, b)) : 0;
  const hi = flat.length ? flat.reduce((a, b) => Math.max(a, b)) : 1;
  return { lo, hi, note: `Ink maps to ${lo}..${hi}, the range of the model's example input.` };
}

function clearCanvas(ctx) {
  const { width, height } = ctx.canvas;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, width, height);
  ctx.strokeStyle = "#fff";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = Math.max(2, Math.round(Math.min(width, height) / 11));
}

// Area average of each cell x cell block, per channel: the model input as [C][H][W].
function sampleCanvas(ctx, image, cell) {
  const { data } = ctx.getImageData(0, 0, ctx.canvas.width, ctx.canvas.height);
  const stride = ctx.canvas.width * 4;
  const { lo, hi } = state.range;
  const out = [];
  for (let c = 0; c < image.channels; c++) {
    const rows = [];
    for (let y = 0; y < image.height; y++) {
      const row = [];
      for (let x = 0; x < image.width; x++) {
        let sum = 0;
        for (let dy = 0; dy < cell; dy++) {
          for (let dx = 0; dx < cell; dx++) {
            const i = (y * cell + dy) * stride + (x * cell + dx) * 4;
            sum += image.channels === 1 ? (data[i] + data[i + 1] + data[i + 2]) / 3 : data[i + c];
          }
        }
        const ink = sum / (cell * cell * 255);
        row.push(Math.round((lo + ink * (hi - lo)) * 1000) / 1000);
      }
      rows.push(row);
    }
    out.push(rows);
  }
  return out;
}

function toChannels(value, image) {
  return image.channels === 1 && !Array.isArray(value[0][0]) ? [value] : value;
}

function paintInput(ctx, image, cell) {
  const { lo, hi } = state.range;
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      const g = state.input.map((ch) => Math.round((255 * (ch[y][x] - lo)) / (hi - lo || 1)));
      const [r, gr, b] = image.channels === 1 ? [g[0], g[0], g[0]] : g;
      ctx.fillStyle = `rgb(${r},${gr},${b})`;
      ctx.fillRect(x * cell, y * cell, cell, cell);
    }
  }
}

function showInput(image) {
  const ctx = $("preview").getContext("2d");
  const pixels = ctx.createImageData(image.width, image.height);
  const { lo, hi } = state.range;
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      const i = (y * image.width + x) * 4;
      for (let k = 0; k < 3; k++) {
        const ch = state.input[image.channels === 1 ? 0 : k];
        pixels.data[i + k] = Math.round((255 * (ch[y][x] - lo)) / (hi - lo || 1));
      }
      pixels.data[i + 3] = 255;
    }
  }
  ctx.putImageData(pixels, 0, 0);
}

function predictImage() {
  const image = state.card.input.image;
  const value = image.channels === 1 ? state.input[0] : state.input;
  predict(JSON.stringify({ image: value }), "application/json");
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

// ---- the drift monitor, where the service has one ----------------------------------------------
async function refreshMonitor() {
  const response = await api("monitor");
  if (!response.ok) {
    $("monitor").hidden = true;
    return;
  }
  const body = await response.json();
  const scalars = $("monitor-scalars");
  scalars.replaceChildren();
  const nested = {};
  for (const [key, value] of Object.entries(body)) {
    if (value === null || typeof value !== "object") {
      const text = typeof value === "number" ? String(+value.toPrecision(4)) : String(value);
      scalars.append(el("dt", key), el("dd", text));
    } else {
      nested[key] = value;
    }
  }
  $("monitor-details").textContent = Object.keys(nested).length ? JSON.stringify(nested, null, 1) : "";
  $("monitor").hidden = false;
}

start().catch((err) => showError(String(err)));
