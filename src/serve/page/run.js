// diffuse playground, part 1: helpers, the prompt checks and completion, the tabs, and a
// streamed run (cards of canvases, the timeline, the event stream). app.js uses them.
"use strict";

const $ = (id) => document.getElementById(id);
let MODEL = null;

// ---------- helpers ----------
function drawURL(canvas, url) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      resolve();
    };
    img.src = url;
  });
}

// A view with no picture yet (step 0 has no x0 guess and no predicted noise): grey, with
// the words the CLI's frames use.
function drawEmpty(canvas, text) {
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#e4e4e4";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#555";
  ctx.font = "bold 22px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, canvas.width / 2, canvas.height / 2);
  canvas.setAttribute("aria-label", text);
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  const data = await r.json();
  if (!r.ok) {
    const e = new Error(data.error || r.statusText);
    e.field = data.field;
    throw e;
  }
  return data;
}

// The words of a prompt as the server reads them: lower case, split on spaces and commas,
// without the punctuation that carries no meaning (. ! ? ; : and quotes).
function words(text) {
  return text.toLowerCase().split(/[\s,]+/)
    .map((w) => w.replace(/[.!?;:"'\u201c\u201d\u2018\u2019]/g, ""))
    .filter((w) => w.length > 0);
}

function vocabulary() {
  const all = new Set();
  for (const [, ws] of MODEL.vocabulary) ws.forEach((w) => all.add(w));
  if (MODEL.prompts === "text") return all;
  ["a", "an", "the"].forEach((w) => all.add(w));
  return all;
}

// Flags unknown words before anything is sent; returns true when the prompt may be sent.
// While `typing`, the word under the cursor is not judged until it is finished.
function checkPrompt(input, errorEl, button, typing = false) {
  const vocab = vocabulary();
  const all = words(input.value);
  const done = typing && /[^\s,.!?;:]$/.test(input.value) ? all.slice(0, -1) : all;
  const unknown = done.filter((w) => !vocab.has(w));
  const bad = unknown.length > 0;
  const quoted = unknown.map((w) => `"${w}"`).join(", ");
  errorEl.textContent = bad ? `Unknown word${unknown.length > 1 ? "s" : ""}: ${quoted}. The model only knows its own words.` : "";
  input.setAttribute("aria-invalid", bad ? "true" : "false");
  if (button) button.disabled = bad;
  return !bad;
}

// Suggestions for the word being typed; Tab takes the first.
function setupCompletion(input, box, errorEl, button) {
  const render = () => {
    box.textContent = "";
    const text = input.value;
    const partial = /\S$/.test(text) ? words(text).pop() || "" : "";
    const vocab = [...vocabulary()].sort();
    const matches = vocab.filter((w) => w.startsWith(partial) && w !== partial).slice(0, 12);
    for (const w of matches) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = w;
      b.setAttribute("role", "option");
      b.addEventListener("click", () => { complete(w); input.focus(); });
      box.appendChild(b);
    }
    checkPrompt(input, errorEl, button, true);
  };
  const complete = (w) => {
    const text = input.value;
    const cut = /\S$/.test(text) ? text.replace(/\S+$/, "") : text;
    input.value = cut + w + " ";
    render();
  };
  input.addEventListener("input", render);
  input.addEventListener("keydown", (e) => {
    const first = box.querySelector("button");
    if (e.key === "Tab" && !e.shiftKey && first && /\S$/.test(input.value)) {
      e.preventDefault();
      complete(first.textContent);
    }
  });
  render();
}

function fillSelect(select, values, chosen) {
  select.textContent = "";
  for (const v of values) {
    const o = document.createElement("option");
    o.value = v; o.textContent = v; o.selected = v === chosen;
    select.appendChild(o);
  }
}

function randomSeed() { return Math.floor(Math.random() * 2 ** 31); }

// ---------- tabs ----------
function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    tab.focus();
    if (tab.id === "tab-forward") forward.update();
  };
  tabs.forEach((t, i) => {
    t.addEventListener("click", () => select(t));
    t.addEventListener("keydown", (e) => {
      const d = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (d) { e.preventDefault(); select(tabs[(i + d + tabs.length) % tabs.length]); }
    });
  });
}

// ---------- a streamed run: cards, timeline, downloads ----------
// `columns` cards, each with `images` rows of x_t / x0 / noise canvases.
class Run {
  constructor(prefix, titles, images, views) {
    this.prefix = prefix;
    this.frames = []; // frames[s] = per column {x_t, x0, eps} (s = 0 is the pure noise)
    this.views = views;
    this.out = $(`${prefix}-out`) || $(`${prefix}-images-out`);
    this.out.textContent = "";
    this.canvases = titles.map((title) => {
      const card = document.createElement("article");
      card.className = "card";
      const h = document.createElement("h3");
      h.textContent = title;
      card.appendChild(h);
      const rows = [];
      for (let k = 0; k < images; k++) {
        const grid = document.createElement("div");
        grid.className = "views";
        const row = {};
        for (const [key, caption] of views) {
          const fig = document.createElement("figure");
          const c = document.createElement("canvas");
          c.width = 256; c.height = 256;
          c.dataset.view = key;
          const cap = document.createElement("figcaption");
          cap.textContent = caption;
          fig.append(c, cap);
          grid.appendChild(fig);
          row[key] = c;
        }
        card.appendChild(grid);
        rows.push(row);
      }
      this.out.appendChild(card);
      return rows;
    });
    this.timeline = $(`${prefix}-timeline`);
    this.counter = $(`${prefix}-step-counter`);
    this.timeline.oninput = () => this.show(Number(this.timeline.value));
  }

  push(columns) {
    this.frames.push(columns);
    const s = this.frames.length - 1;
    this.timeline.max = String(s);
    this.timeline.value = String(s);
    this.show(s);
  }

  show(s) {
    const cols = this.frames[s];
    if (!cols) return;
    cols.forEach((col, c) => col.x_t.forEach((_, k) => {
      for (const [key] of this.views) {
        const url = col[key] && col[key][k];
        const canvas = this.canvases[c][k][key];
        if (url) { drawURL(canvas, url); canvas.removeAttribute("aria-label"); }
        else drawEmpty(canvas, "no guess yet");
      }
    }));
    const steps = this.frames.length > 0 ? this.total : 0;
    this.counter.textContent = `${s} / ${steps}` + (cols[0].t !== undefined ? ` (t = ${cols[0].t})` : "");
    this.counter.dataset.step = String(s);
    this.counter.dataset.steps = String(steps);
  }
}

const VIEWS = [
  ["x_t", "x_t: the noisy image now"],
  ["x0", "x0 guess: the model's current estimate of the final image"],
  ["eps", "predicted noise: what the model will remove (±2σ)"],
];

// The views of `model`: a latent model also shows z_t, what it really denoises.
function viewsFor(model) {
  if (!model || !model.latent) return VIEWS;
  return [
    ["z_t", "z_t: the 4 latent channels the model denoises (blue −, red +)"],
    ["x_t", "decode(z_t): the noisy latent as a picture"],
    ["x0", "decode(x0 guess): the model's current estimate of the final image"],
    ["eps", "predicted noise in the latent (4 channels, ±2σ)"],
  ];
}

// Opens the event stream of an accepted run and feeds `run`; returns a stop function.
function stream(id, run, statusEl, onDone) {
  const es = new EventSource(`/api/jobs/${id}/events`);
  const began = performance.now();
  let firstFrame = null;
  es.addEventListener("queued", () => { statusEl.textContent = "Queued…"; });
  es.addEventListener("start", (e) => {
    const d = JSON.parse(e.data);
    run.total = d.spec.steps;
    run.seeds = d.spec.variants.map((v) => v.seed);
    run.push(d.x_t.map((x_t, c) => (d.z_t ? { x_t, z_t: d.z_t[c] } : { x_t })));
    statusEl.textContent = `Started from pure noise (seed ${run.seeds.join(", ")}).`;
  });
  es.addEventListener("step", (e) => {
    const d = JSON.parse(e.data);
    if (firstFrame === null) firstFrame = performance.now() - began;
    run.push(d.columns);
    statusEl.textContent = `Step ${d.step} of ${d.steps} (${d.ms.toFixed(0)} ms)`;
  });
  es.addEventListener("done", (e) => {
    const d = JSON.parse(e.data);
    es.close();
    statusEl.textContent = `Done: ${run.total} steps in ${(d.total_ms / 1000).toFixed(2)} s; first frame after ${firstFrame.toFixed(0)} ms.`;
    run.timeline.disabled = false;
    onDone(d);
  });
  es.addEventListener("error", (e) => {
    if (e.data) statusEl.textContent = `Error: ${JSON.parse(e.data).error}`;
    else if (es.readyState === EventSource.CLOSED) statusEl.textContent = "The connection closed.";
    es.close();
    onDone(null);
  });
  return () => { es.close(); statusEl.textContent = "Stopped."; onDone(null); };
}
