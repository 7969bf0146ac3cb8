// The demo page's drawing canvas, for image models (demo.js calls setupImage). The drawing is
// averaged down to the card's H x W grid and mapped to the model's values.
"use strict";

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

// Canvas ink (white on black) 0..1 -> the model's values, per channel: the card's file rule
// (pixel x scale) when the model takes files, else the training range the card records for
// the drift monitor, else the range of the model's own example input.
function valueRange(image) {
  const same = (v) => Array(image.channels).fill(v);
  const round = (v) => +v.toFixed(4);
  if (image.files) {
    const hi = 255 * image.files.scale;
    return { lo: same(0), hi: same(hi), note: `Ink 0..255 × ${image.files.scale} (the card's file rule) = 0..${round(hi)}.` };
  }
  const ranges = state.card.monitor ? state.card.monitor.ranges : null;
  if (ranges && ranges.length === image.channels) {
    const lo = ranges.map((r) => r.min);
    const hi = ranges.map((r) => r.max);
    const shown = ranges.map((r) => `${round(r.min)}..${round(r.max)}`).join(", ");
    return { lo, hi, note: `Ink maps to ${shown}, the training range in the model card.` };
  }
  const flat = state.example ? state.example.flat(3) : [];
  const lo = flat.length ? flat.reduce((a, b) => Math.min(a, b)) : 0;
  const hi = flat.length ? flat.reduce((a, b) => Math.max(a, b)) : 1;
  return { lo: same(lo), hi: same(hi), note: `Ink maps to ${lo}..${hi}, the range of the model's example input.` };
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
        row.push(Math.round((lo[c] + ink * (hi[c] - lo[c])) * 1000) / 1000);
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

function gray(value, lo, hi) {
  return Math.round((255 * (value - lo)) / (hi - lo || 1));
}

function paintInput(ctx, image, cell) {
  const { lo, hi } = state.range;
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      const g = state.input.map((ch, c) => gray(ch[y][x], lo[c], hi[c]));
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
        const c = image.channels === 1 ? 0 : k;
        pixels.data[i + k] = gray(state.input[c][y][x], lo[c], hi[c]);
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

