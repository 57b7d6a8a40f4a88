// diffuse playground, part 2: the Generate, Compare and Forward tabs and the start-up. Talks
// to the JSON API of `diffuse serve` (see the README); no framework, no network access beyond
// this server. run.js comes first.
"use strict";

// ---------- Generate tab ----------
const generate = {
  stop: null,
  setup() {
    setupCompletion($("gen-prompt"), $("gen-suggest"), $("gen-prompt-error"), $("gen-go"));
    $("gen-dice").addEventListener("click", () => { $("gen-seed").value = randomSeed(); });
    $("gen-form").addEventListener("submit", (e) => { e.preventDefault(); this.start(); });
    $("gen-stop").addEventListener("click", () => this.stop && this.stop());
  },
  async start() {
    if (!checkPrompt($("gen-prompt"), $("gen-prompt-error"), $("gen-go"))) return;
    const body = {
      prompt: $("gen-prompt").value.trim(),
      sampler: $("gen-sampler").value,
      steps: Number($("gen-steps").value),
      guidance: Number($("gen-guidance").value),
      num_images: Number($("gen-images").value),
      attention: MODEL.attention && $("gen-attention").checked,
    };
    if ($("gen-seed").value !== "") body.seed = Number($("gen-seed").value);
    let job;
    try {
      job = await api("/api/generate", body);
    } catch (err) {
      $("gen-prompt-error").textContent = `${err.field ? err.field + ": " : ""}${err.message}`;
      return;
    }
    $("gen-prompt-error").textContent = "";
    $("gen-downloads").textContent = "";
    $("gen-new").textContent = "";
    $("gen-attention-out").hidden = true;
    const run = new Run("gen", [body.prompt], body.num_images, viewsFor(MODEL));
    $("gen-timeline").disabled = true;
    $("gen-go").disabled = true;
    $("gen-stop").disabled = false;
    this.stop = stream(job.id, run, $("gen-status"), (done) => {
      $("gen-go").disabled = false;
      $("gen-stop").disabled = true;
      $("gen-timeline").disabled = run.frames.length < 2;
      this.stop = null;
      if (done) this.finish(done, body.prompt, run.seeds[0]);
    });
  },
  finish(done, prompt, seed) {
    const name = prompt.replace(/\s+/g, "-") + `-seed${seed}`;
    const links = $("gen-downloads");
    const link = (href, text, file) => {
      const a = document.createElement("a");
      a.href = href; a.textContent = text; a.download = file;
      links.appendChild(a);
    };
    link(done.gifs[0], "Download the GIF (image 1)", `${name}.gif`);
    done.finals[0].forEach((url, k) => link(url, `Download image ${k + 1} (PNG)`, `${name}-${k + 1}.png`));
    if (MODEL.nearest) done.finals[0].forEach((url, k) => isItNew($("gen-new"), url, k));
    if (done.attention.length > 0) {
      const box = $("gen-words");
      box.textContent = "";
      done.attention.forEach(([word, url], i) => {
        const b = document.createElement("button");
        b.type = "button"; b.textContent = word;
        b.setAttribute("aria-pressed", i === 0 ? "true" : "false");
        b.addEventListener("click", () => {
          box.querySelectorAll("button").forEach((x) => x.setAttribute("aria-pressed", "false"));
          b.setAttribute("aria-pressed", "true");
          $("gen-heat").src = url;
          $("gen-heat").alt = `where the image attends to "${word}"`;
        });
        box.appendChild(b);
      });
      $("gen-heat").src = done.attention[0][1];
      $("gen-attention-out").hidden = false;
    }
  },
};

// "Is it new?": a button under a final image that finds its nearest training scenes.
function isItNew(box, url, k) {
  const block = document.createElement("div");
  block.className = "new-block";
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = `Is it new? (image ${k + 1})`;
  b.dataset.image = String(k);
  const out = document.createElement("div");
  out.className = "new-out";
  b.addEventListener("click", async () => {
    b.disabled = true;
    out.textContent = "Searching every scene the model was trained on…";
    try {
      const r = await api("/api/nearest", { image: url, top: 4 });
      out.textContent = "";
      const note = document.createElement("p");
      note.textContent = `The nearest of ${r.searched} training scenes (RMS distance in [0, 1]; 0 would be a copy), found in ${r.ms.toFixed(0)} ms:`;
      out.appendChild(note);
      for (const n of r.neighbours) {
        const fig = document.createElement("figure");
        const img = document.createElement("img");
        img.src = n.picture; img.width = 128; img.height = 128;
        img.alt = `training scene ${n.index}: ${n.caption}`;
        const cap = document.createElement("figcaption");
        cap.textContent = `#${n.index} "${n.caption}", distance ${n.distance.toFixed(3)}`;
        fig.append(img, cap);
        out.appendChild(fig);
      }
    } catch (err) {
      out.textContent = `Is it new? ${err.message}`;
    }
    b.disabled = false;
  });
  block.append(b, out);
  box.appendChild(block);
}

// ---------- Compare tab ----------
const compare = {
  stop: null,
  setup() {
    $("cmp-prompt").addEventListener("input", () => checkPrompt($("cmp-prompt"), $("cmp-prompt-error"), $("cmp-go"), true));
    $("cmp-by").addEventListener("change", () => {
      const by = $("cmp-by").value;
      $("cmp-values").value = by === "guidance" ? "0, 1, 3, 7" : by === "seed" ? "1, 2, 3, 4" : MODEL.samplers.join(", ");
    });
    $("cmp-form").addEventListener("submit", (e) => { e.preventDefault(); this.start(); });
    $("cmp-stop").addEventListener("click", () => this.stop && this.stop());
  },
  async start() {
    if (!checkPrompt($("cmp-prompt"), $("cmp-prompt-error"), $("cmp-go"))) return;
    const by = $("cmp-by").value;
    const raw = $("cmp-values").value.split(",").map((s) => s.trim()).filter((s) => s);
    const values = by === "sampler" ? raw : raw.map(Number);
    const body = {
      prompt: $("cmp-prompt").value.trim(),
      steps: Number($("cmp-steps").value),
      compare: { [by]: values },
    };
    if ($("cmp-seed").value !== "") body.seed = Number($("cmp-seed").value);
    let job;
    try {
      job = await api("/api/generate", body);
    } catch (err) {
      $("cmp-prompt-error").textContent = `${err.field ? err.field + ": " : ""}${err.message}`;
      return;
    }
    $("cmp-prompt-error").textContent = "";
    const titles = values.map((v) => `${by} ${v}`);
    const run = new Run("cmp", titles, 1, viewsFor(MODEL).filter(([k]) => k !== "eps"));
    $("cmp-go").disabled = true;
    $("cmp-stop").disabled = false;
    this.stop = stream(job.id, run, $("cmp-status"), () => {
      $("cmp-go").disabled = false;
      $("cmp-stop").disabled = true;
      $("cmp-timeline").disabled = run.frames.length < 2;
      this.stop = null;
    });
  },
};

// ---------- Forward tab ----------
const forward = {
  upload: null,
  curves: null,
  pending: false,
  again: false,
  setup() {
    fillSelect($("fwd-picture"), MODEL.pictures, MODEL.pictures[0]);
    fillSelect($("fwd-schedule"), MODEL.schedules, MODEL.schedule);
    $("fwd-t").max = String(MODEL.train_timesteps - 1);
    $("fwd-t").value = String(Math.floor(MODEL.train_timesteps / 4));
    $("fwd-t").addEventListener("input", () => this.update());
    $("fwd-picture").addEventListener("change", () => { this.upload = null; $("fwd-upload").value = ""; this.update(); });
    $("fwd-schedule").addEventListener("change", () => { this.curves = null; this.update(); });
    $("fwd-upload").addEventListener("change", () => this.readUpload());
  },
  // Shrinks the chosen file in the browser (at most 256 px) and keeps it as a PNG data URL.
  readUpload() {
    const file = $("fwd-upload").files[0];
    if (!file) return;
    const img = new Image();
    img.onload = () => {
      const s = Math.min(1, 256 / Math.max(img.width, img.height));
      const c = document.createElement("canvas");
      c.width = Math.max(1, Math.round(img.width * s));
      c.height = Math.max(1, Math.round(img.height * s));
      c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
      this.upload = c.toDataURL("image/png");
      URL.revokeObjectURL(img.src);
      this.update();
    };
    img.onerror = () => { $("fwd-numbers").textContent = "That file is not a picture this browser can read."; };
    img.src = URL.createObjectURL(file);
  },
  // One request at a time; the latest slider position wins.
  async update() {
    if (this.pending) { this.again = true; return; }
    this.pending = true;
    const t = Number($("fwd-t").value);
    $("fwd-t-value").textContent = String(t);
    const body = { t, schedule: $("fwd-schedule").value, seed: 0 };
    if (this.upload) body.image = this.upload; else body.picture = $("fwd-picture").value;
    try {
      if (!this.curves) this.curves = await api(`/api/schedule?schedule=${encodeURIComponent(body.schedule)}`);
      const d = await api("/api/noise", body);
      await drawURL($("fwd-x0"), d.x0);
      await drawURL($("fwd-xt"), d.x_t);
      $("fwd-xt").dataset.t = String(d.t);
      $("fwd-numbers").textContent = `At t = ${d.t}: ᾱ_t = ${d.alpha_cumprod.toFixed(4)}, SNR = ${d.snr.toPrecision(3)}, signal ×${d.signal.toFixed(3)}, noise ×${d.noise.toFixed(3)}.`;
      this.plot(t);
    } catch (err) {
      $("fwd-numbers").textContent = `Error: ${err.message}`;
    }
    this.pending = false;
    if (this.again) { this.again = false; this.update(); }
  },
  plot(t) {
    const c = $("fwd-plot"), ctx = c.getContext("2d");
    const { alphas_cumprod: a, snr } = this.curves;
    const W = c.width, H = c.height, pad = 24;
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    ctx.strokeStyle = "#999"; ctx.strokeRect(pad, 8, W - pad - 8, H - pad - 8);
    const x = (i) => pad + (i / (a.length - 1)) * (W - pad - 8);
    const line = (vals, color, y) => {
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
      vals.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
      ctx.stroke();
    };
    const h = H - pad - 16;
    line(a, "#2457c5", (v) => 8 + (1 - v) * h);
    const logs = snr.map((v) => Math.log10(Math.max(v, 1e-8)));
    const lo = Math.min(...logs), hi = Math.max(...logs);
    line(logs, "#e07b00", (v) => 8 + (1 - (v - lo) / (hi - lo || 1)) * h);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.beginPath();
    ctx.moveTo(x(t), 8); ctx.lineTo(x(t), H - pad); ctx.stroke();
    ctx.fillStyle = "#333"; ctx.font = "12px sans-serif";
    ctx.fillText("0", pad, H - 6); ctx.fillText(String(a.length - 1), W - 40, H - 6); ctx.fillText("t", W / 2, H - 6);
  },
};

// ---------- start ----------
async function init() {
  setupTabs();
  try {
    MODEL = await api("/api/model");
  } catch (err) {
    $("model-line").textContent = `Cannot reach the server: ${err.message}`;
    return;
  }
  $("model-line").textContent = `Model: ${MODEL.name}, ${MODEL.resolution}×${MODEL.resolution} px.`;
  $("model-vocab").textContent = MODEL.vocabulary.map(([slot, ws]) => `${slot}: ${ws.join(", ")}`).join("; ");
  if (MODEL.held_out.length > 0) {
    $("model-held-out").textContent = `Never seen together in training (so a picture of both is new): ${MODEL.held_out.map((p) => p.join(" + ")).join(", ")}.`;
    $("model-held-out").hidden = false;
  }
  for (const p of ["gen", "cmp"]) {
    $(`${p}-prompt`).value = MODEL.example;
    $(`${p}-steps`).value = MODEL.defaults.steps;
    $(`${p}-steps`).max = MODEL.limits.max_steps;
  }
  fillSelect($("gen-sampler"), MODEL.samplers, MODEL.defaults.sampler);
  $("gen-guidance").value = MODEL.defaults.guidance;
  $("gen-guidance").max = MODEL.max_guidance;
  $("gen-images").max = MODEL.limits.max_images;
  $("gen-seed").value = randomSeed();
  $("cmp-seed").value = $("gen-seed").value;
  $("gen-attention-label").hidden = !MODEL.attention;
  generate.setup();
  compare.setup();
  forward.setup();
}

init();
