// Drives the dashboard in headless Chromium, in step with integration-tests/tests/dashboard.rs:
//   node dashboard.mjs <base-url> <screenshot-dir>
// It finds the failed booking from the overview, prints `FOUND <id>`, waits for `FIXED` on
// stdin (the test deploys the fix meanwhile), clicks "Retry failed tasks", waits for the page
// to show the instance completed, visits the dead letters, and prints `DONE`. Any failure
// exits non-zero with the reason.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node dashboard.mjs <base-url> <screenshot-dir>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
async function expectLine(word) {
  const { value, done } = await lines.next();
  if (done || value.trim() !== word) throw new Error(`expected ${word} on stdin, got ${done ? "end of input" : value}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(20000);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));

  // The overview: counts per workflow and status, then the failed booking.
  await page.goto(base + "/");
  const failedCount = page.getByTestId("count-Booking-failed");
  await failedCount.waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="count-Booking-failed"]')?.textContent === "1");
  await page.screenshot({ path: join(shots, "dashboard-instances.png"), fullPage: true });
  await failedCount.click();
  const row = page.getByTestId("instance-row").first();
  await row.waitFor();
  const id = await row.getAttribute("data-id");
  await row.getByRole("link").first().click();

  // The instance page: failed, with the error chain, and its history.
  await page.locator('[data-testid="instance-status"] [data-status="failed"]').waitFor();
  await page.getByTestId("failure").first().waitFor();
  await page.getByTestId("timeline").locator("li").first().waitFor();
  const failure = await page.getByTestId("failure").first().textContent();
  if (!failure.includes("hotel system rejected")) throw new Error("the failure does not show its error: " + failure);
  await page.screenshot({ path: join(shots, "dashboard-failed-instance.png"), fullPage: true });
  console.log("FOUND " + id);

  await expectLine("FIXED");
  const retry = page.getByTestId("retry-tasks");
  if (await retry.isDisabled()) throw new Error("retry failed tasks is disabled on a failed instance");
  await retry.click();
  // The page refreshes by itself while the run resumes and completes.
  await page.locator('[data-testid="instance-status"] [data-status="completed"]').waitFor();
  await page.screenshot({ path: join(shots, "dashboard-completed-instance.png"), fullPage: true });

  await page.goto(base + "/#/dead-letters");
  await page.getByTestId("dead-letter").first().waitFor();
  await page.screenshot({ path: join(shots, "dashboard-dead-letters.png"), fullPage: true });

  if (errors.length) throw new Error("the page threw: " + errors.join("; "));
  console.log("DONE");
} catch (e) {
  console.error("dashboard test failed: " + (e && e.stack ? e.stack : e));
  process.exitCode = 1;
} finally {
  input.close();
  await browser.close();
}
