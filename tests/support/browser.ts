// Debian's Chromium driven through playwright-core, for the dashboard's browser tests. `npm test`
// installs Chromium and passes its path in STEPLINE_TEST_CHROMIUM. Every page records its console
// errors and uncaught exceptions: a test calls `expectNoConsoleErrors()` and fails on any.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { requiredEnv } from "@stepline/internal/testing";
import type { Browser, Page } from "playwright-core";
import { chromium } from "playwright-core";

/** Where the browser tests save a screenshot of each page they visit (the README names it). */
export const SCREENSHOTS_DIR = path.join(import.meta.dirname, "..", "screenshots");

export interface BrowserPage {
  page: Page;
  /** Console errors and uncaught exceptions so far, as text. */
  errors: string[];
  /** Saves a full-page screenshot as `<name>.png` in SCREENSHOTS_DIR. */
  screenshot(name: string): Promise<void>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: requiredEnv("STEPLINE_TEST_CHROMIUM"),
    // Root in a CI container has no user namespaces for Chromium's sandbox.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/** A page of a fresh context (its own storage) at `viewport`. */
export async function openPage(
  browser: Browser,
  viewport: { width: number; height: number } = { width: 1280, height: 800 },
): Promise<BrowserPage> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error" || msg.type() === "warning")
      errors.push(`console ${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => errors.push(`uncaught: ${err.message}`));
  mkdirSync(SCREENSHOTS_DIR, { recursive: true });
  return {
    page,
    errors,
    screenshot: async (name) => {
      await page.screenshot({ path: path.join(SCREENSHOTS_DIR, `${name}.png`), fullPage: true });
    },
    close: () => context.close(),
  };
}
