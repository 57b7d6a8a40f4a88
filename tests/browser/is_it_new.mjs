// Clicks the playground's "Is it new?" button in Debian's Chromium (playwright-core): runs a
// short generation, waits for the server's index of the training scenes, clicks the button
// under the first final image and waits for its nearest training scenes. Prints one JSON line.
// Usage: node is_it_new.mjs URL [STEPS]
import { chromium } from "playwright-core";

const [url, stepsArg] = process.argv.slice(2);
if (!url) {
  console.error("usage: node is_it_new.mjs URL [STEPS]");
  process.exit(2);
}
const fail = (msg) => { console.error(`browser test: ${msg}`); process.exit(1); };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById("model-line").textContent.startsWith("Model:"));
  await page.fill("#gen-steps", String(Number(stepsArg || 5)));
  await page.fill("#gen-seed", "1");
  await page.click("#gen-go");
  await page.waitForFunction(() => document.getElementById("gen-status").textContent.startsWith("Done"), null, { timeout: 120000 });
  const buttons = await page.$$eval("#gen-new button", (bs) => bs.map((b) => b.textContent));
  if (buttons.length < 1 || !buttons[0].startsWith("Is it new?")) fail(`no "Is it new?" button (found ${JSON.stringify(buttons)})`);
  await page.click("#gen-new button");
  await page.waitForFunction(() => document.querySelectorAll("#gen-new .new-out figure").length > 0
    || document.querySelector("#gen-new .new-out").textContent.startsWith("Is it new?"), null, { timeout: 60000 });
  const captions = await page.$$eval("#gen-new .new-out figcaption", (cs) => cs.map((c) => c.textContent));
  const note = await page.$eval("#gen-new .new-out", (e) => e.textContent);
  if (captions.length !== 4) fail(`the search showed ${captions.length} scenes: ${note}`);
  if (!captions.every((c) => /^#\d+ ".*", distance \d\.\d{3}$/.test(c))) fail(`captions: ${captions.join(" | ")}`);
  const loaded = await page.$$eval("#gen-new .new-out img", (is) => is.every((i) => i.complete && i.naturalWidth > 0));
  if (!loaded) fail("a neighbour's picture did not load");
  if (errors.length) fail(`the page threw: ${errors.join("; ")}`);
  console.log(JSON.stringify({ buttons: buttons.length, captions }));
} finally {
  await browser.close();
}
