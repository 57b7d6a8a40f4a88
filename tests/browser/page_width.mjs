// Opens output folders' index.html pages in Debian's Chromium (playwright-core) at a 1280-px
// screen and a 390-px phone, and prints, per page and width, how wide the page is laid out
// and its heading, as one JSON line.
// Usage: node page_width.mjs PAGE.html [PAGE.html ...]
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";

const pages = process.argv.slice(2);
if (pages.length === 0) {
  console.error("usage: node page_width.mjs PAGE.html [PAGE.html ...]");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
});
try {
  const report = [];
  for (const file of pages) {
    for (const width of [1280, 390]) {
      const page = await browser.newPage({ viewport: { width, height: 800 } });
      await page.goto(pathToFileURL(file).href);
      const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
      const heading = await page.textContent("h1");
      report.push({ file, width, scroll, heading });
      await page.close();
    }
  }
  console.log(JSON.stringify(report));
} finally {
  await browser.close();
}
