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
  /** Console errors and uncaught exceptions so far, as text (less the ones `expectFailedLoad` allowed). */
  errors: string[];
  /**
   * Allows the browser's "Failed to load resource: ... status of <status>" console error for the
   * next such answer: Chromium logs every 4xx a page's fetch gets, so a test of an expected
   * refusal (a wrong password) names it.
   */
  expectFailedLoad(status: number): void;
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
  const expected: number[] = [];
  page.on("console", (msg) => {
    if (msg.type() !== "error" && msg.type() !== "warning") return;
    const status = /Failed to load resource: .* status of (\d{3})/.exec(msg.text())?.[1];
    const i = status ? expected.indexOf(Number(status)) : -1;
    if (i >= 0) expected.splice(i, 1);
    else errors.push(`console ${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => errors.push(`uncaught: ${err.message}`));
  mkdirSync(SCREENSHOTS_DIR, { recursive: true });
  return {
    page,
    errors,
    expectFailedLoad: (status) => void expected.push(status),
    screenshot: async (name) => {
      await page.screenshot({ path: path.join(SCREENSHOTS_DIR, `${name}.png`), fullPage: true });
    },
    close: () => context.close(),
  };
}

/**
 * The pages of one test at a time: `open` opens one on the launched browser; `closeAll` (in an
 * afterEach) closes them and returns their console errors, which the test file asserts empty.
 */
export function pageTracker(browser: () => Browser) {
  let open: BrowserPage[] = [];
  return {
    async open(viewport?: { width: number; height: number }): Promise<BrowserPage> {
      const p = await openPage(browser(), viewport);
      open.push(p);
      return p;
    },
    async closeAll(): Promise<string[]> {
      const errors = open.flatMap((p) => p.errors);
      for (const p of open) await p.close();
      open = [];
      return errors;
    },
  };
}
