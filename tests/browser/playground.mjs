// Drives the diffuse playground in a real browser (Debian's Chromium through playwright-core):
// types a sentence (no word flagged while it is typed, punctuation ignored), then a prompt,
// clicks Generate, waits for the last step, checks that the canvases are not
// blank and the step counter reached the end, moves the Forward tab's t slider and checks that
// x_t changed, checks that step 0 says "no guess yet" and that the seed box fits a 16-digit
// seed, checks a 390-px-wide screen and a run started from the keyboard alone, and saves
// a screenshot.
// Usage: node playground.mjs URL SCREENSHOT.png [PROMPT] [STEPS]
import { chromium } from "playwright-core";

const [url, shot, promptArg, stepsArg] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node playground.mjs URL SCREENSHOT.png [PROMPT] [STEPS]");
  process.exit(2);
}
const steps = Number(stepsArg || 10);
const fail = (msg) => { console.error(`browser test: ${msg}`); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById("model-line").textContent.startsWith("Model:"));
  const prompt = promptArg || await page.inputValue("#gen-prompt");

  // A sentence typed as people type it, key by key: no word is flagged while it is being
  // typed, punctuation is ignored, and a finished unknown word is quoted without doubling.
  await page.fill("#gen-prompt", "");
  for (const ch of `${prompt.charAt(0).toUpperCase()}${prompt.slice(1)}.`) {
    await page.type("#gen-prompt", ch);
    const shown = await page.textContent("#gen-prompt-error");
    if (shown) fail(`typing '${await page.inputValue("#gen-prompt")}' shows '${shown}'`);
  }
  await page.fill("#gen-prompt", "");
  await page.type("#gen-prompt", "a zzzz. ");
  const flagged = await page.textContent("#gen-prompt-error");
  if (!flagged.includes('"zzzz".') || flagged.includes("zzzz..")) fail(`an unknown word shows '${flagged}'`);

  // Type the prompt as a person would, then set the steps and a fixed seed.
  await page.fill("#gen-prompt", "");
  await page.type("#gen-prompt", prompt);
  if (await page.isDisabled("#gen-go")) fail(`the page flagged the prompt '${prompt}'`);
  await page.fill("#gen-steps", String(steps));
  await page.fill("#gen-seed", "1");
  const t0 = Date.now();
  await page.click("#gen-go");
  await page.waitForFunction(() => Number(document.getElementById("gen-step-counter").dataset.step) >= 1, null, { timeout: 120000 });
  const firstFrameMs = Date.now() - t0;
  await page.waitForFunction(() => document.getElementById("gen-status").textContent.startsWith("Done"), null, { timeout: 300000 });
  const totalMs = Date.now() - t0;
  const counter = await page.$eval("#gen-step-counter", (e) => [e.dataset.step, e.dataset.steps]);
  if (counter[0] !== String(steps) || counter[1] !== String(steps)) fail(`the step counter shows ${counter.join(" / ")}, not ${steps} / ${steps}`);

  // Every canvas holds a picture: its pixels vary.
  const spreads = await page.$$eval("#gen-images-out canvas", (cs) => cs.map((c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let lo = 255, hi = 0;
    for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i], d[i + 1], d[i + 2]); hi = Math.max(hi, d[i], d[i + 1], d[i + 2]); }
    return d[3] === 0 ? 0 : hi - lo;
  }));
  if (spreads.length !== 3) fail(`expected 3 canvases (x_t, x0, noise), found ${spreads.length}`);
  if (spreads.some((s) => s < 20)) fail(`a canvas is blank (pixel spreads ${spreads.join(", ")})`);
  await page.screenshot({ path: shot, fullPage: true });

  // Scrubbing back shows the pure noise again.
  await page.focus("#gen-timeline");
  await page.keyboard.press("Home");
  const back = await page.$eval("#gen-step-counter", (e) => e.dataset.step);
  if (back !== "0") fail(`the timeline did not go back to step 0 (step ${back})`);
  // Step 0 has no x0 guess and no predicted noise yet: those views say so, in words.
  const empty = await page.$$eval("#gen-images-out canvas", (cs) => cs.map((c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let lo = 255, hi = 0;
    for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
    return [c.dataset.view, c.getAttribute("aria-label"), d[3] === 0 ? 0 : hi - lo];
  }));
  for (const [view, label, spread] of empty.filter(([v]) => v !== "x_t")) {
    if (label !== "no guess yet" || spread < 20) fail(`at step 0 the ${view} view shows '${label}' (pixel spread ${spread})`);
  }
  // The seed box shows a 16-digit seed whole.
  await page.fill("#gen-seed", "9007199254740991");
  const seedBox = await page.$eval("#gen-seed", (e) => [e.scrollWidth, e.clientWidth]);
  if (seedBox[0] > seedBox[1]) fail(`the seed box is ${seedBox[1]} px wide for a ${seedBox[0]}-px seed`);

  // Forward tab: moving t changes x_t.
  await page.click("#tab-forward");
  const pixels = () => page.$eval("#fwd-xt", (c) => c.toDataURL());
  await page.waitForFunction(() => document.getElementById("fwd-xt").dataset.t !== undefined);
  const before = await pixels();
  const tBefore = await page.$eval("#fwd-xt", (c) => c.dataset.t);
  await page.focus("#fwd-t");
  for (let i = 0; i < 20; i++) await page.keyboard.press("PageUp");
  await page.waitForFunction((t) => document.getElementById("fwd-xt").dataset.t !== t, tBefore);
  const tAfter = await page.$eval("#fwd-xt", (c) => c.dataset.t);
  const after = await pixels();
  if (after === before) fail(`x_t did not change when t moved from ${tBefore} to ${tAfter}`);
  // A phone-sized screen: nothing wider than the viewport. The keyboard alone: Generate tab
  // by arrow keys from the focused tab, Enter in the prompt box starts a run.
  await page.setViewportSize({ width: 390, height: 844 });
  const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
  if (scroll > 390) fail(`at 390 px the page is ${scroll} px wide`);
  await page.focus("#tab-forward");
  await page.keyboard.press("ArrowLeft");
  await page.keyboard.press("ArrowLeft");
  const tab = await page.$eval("#tab-generate", (t) => t.getAttribute("aria-selected"));
  if (tab !== "true") fail("the arrow keys did not reach the Generate tab");
  await page.focus("#gen-prompt");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.getElementById("gen-status").textContent.startsWith("Started")
    || document.getElementById("gen-status").textContent.startsWith("Step"), null, { timeout: 60000 });
  await page.waitForFunction(() => document.getElementById("gen-status").textContent.startsWith("Done"), null, { timeout: 300000 });
  if (errors.length) fail(`the page threw: ${errors.join("; ")}`);
  console.log(JSON.stringify({ prompt, steps, first_frame_ms: firstFrameMs, total_ms: totalMs, spreads, t_before: Number(tBefore), t_after: Number(tAfter) }));
} finally {
  await browser.close();
}
