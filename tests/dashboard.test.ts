// The dashboard in a real browser (Debian's Chromium through playwright-core) against a real dev-mode
// cluster and an app on the official SDK v4: each test clicks through one thing a user does, saves
// a screenshot of each page it visits (tests/screenshots/), and fails on any console error.
import { waitFor } from "@stepline/internal/testing";
import type { Browser } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import { launchBrowser, pageTracker } from "./support/browser.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";

const APP_ID = "shop";
let attempts = 0;

function functions(client: any) {
  return [
    client.createFunction(
      { id: "checkout", name: "Checkout", triggers: [{ event: "shop/order.placed" }], concurrency: 5 },
      async ({ event, step }: any) => {
        const reserved = await step.run("reserve", () => ({ sku: event.data.sku }));
        // Fails its first attempt, so the timeline shows an errored attempt and then the retry.
        const charged = await step.run("charge", () => {
          attempts += 1;
          if (attempts === 1) throw new Error("card network timeout");
          return { amount: event.data.total };
        });
        return { ...reserved, ...charged };
      },
    ),
    client.createFunction(
      { id: "broken", name: "Broken", triggers: [{ event: "shop/order.broken" }], retries: 0 },
      async () => {
        throw new Error("inventory service said no");
      },
    ),
    client.createFunction(
      { id: "nightly", name: "Nightly", triggers: [{ cron: "0 3 * * *" }, { event: "shop/slow" }] },
      async ({ step }: any) => {
        await step.sleep("long-nap", "1h");
      },
    ),
  ];
}

let cluster: Cluster;
let app: SdkApp;
let browser: Browser;
const pages = pageTracker(() => browser);

beforeAll(async () => {
  cluster = await startCluster({ name: "dashboard", dev: true, env: { STEPLINE_HISTORY_FLUSH_MS: "100" } });
  const opts = { sdk: "v4" as const, id: APP_ID, baseUrl: cluster.apiUrl };
  const client = makeClient(opts);
  app = await serveAndSync(opts, client, functions(client));
  browser = await launchBrowser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await app?.close();
  await cluster?.stop();
});

afterEach(async () => {
  expect(await pages.closeAll(), "console errors in the page").toEqual([]);
});

const page = (viewport?: { width: number; height: number }) => pages.open(viewport);

/**
 * Waits until the REST API (what the dashboard reads) answers `path` with 200, and a non-empty
 * `data` list where it is one (history lags behind the engine by a flush).
 */
async function untilApiHas(path: string): Promise<any> {
  return waitFor(
    `GET ${path}`,
    async () => {
      const res = await fetch(`${cluster.apiUrl}${path}`);
      if (res.status !== 200) return undefined;
      const body = (await res.json()) as { data: unknown };
      return Array.isArray(body.data) && body.data.length === 0 ? undefined : body;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
}

async function sendOne(name: string, data: object): Promise<string> {
  const sent = await sendEvents(cluster.apiUrl, "dashboard-test", { name, data });
  expect(sent.status).toBe(200);
  return sent.body.ids[0];
}

describe("dashboard", () => {
  it("lists the synced app with its URL and SDK, and its functions with triggers and flow control", async () => {
    const { page: p, screenshot } = await page();
    await p.goto(cluster.apiUrl);
    const row = p.getByTestId("app-row").filter({ hasText: APP_ID });
    await expect.poll(() => row.textContent()).toContain(app.url);
    expect(await row.textContent()).toContain("v4.");
    await screenshot("apps");

    await p.getByTestId("nav-functions").click();
    const checkout = p.locator('[data-testid="function-row"][data-function-id="shop-checkout"]');
    await checkout.waitFor();
    expect(await checkout.textContent()).toContain("shop/order.placed");
    expect(await checkout.textContent()).toContain("concurrency 5");
    const nightly = p.locator('[data-testid="function-row"][data-function-id="shop-nightly"]');
    expect(await nightly.textContent()).toContain("0 3 * * *");
    await screenshot("functions");
  });

  it("pauses and resumes a function", async () => {
    const { page: p, screenshot } = await page();
    await p.goto(`${cluster.apiUrl}/functions`);
    const row = p.locator('[data-testid="function-row"][data-function-id="shop-broken"]');
    await row.getByTestId("pause-button").click();
    await row.getByTestId("resume-button").waitFor();
    const paused = await untilApiHas("/v1/functions");
    expect(paused.data.find((f: any) => f.id === "shop-broken").paused).toBe(true);
    await screenshot("functions-paused");
    await row.getByTestId("resume-button").click();
    await row.getByTestId("pause-button").waitFor();
    const resumed = await untilApiHas("/v1/functions");
    expect(resumed.data.find((f: any) => f.id === "shop-broken").paused).toBe(false);
  });

  it("sends an event from the editor (refusing invalid JSON), then shows its payload and the run it started", async () => {
    const { page: p, screenshot } = await page();
    await p.goto(`${cluster.apiUrl}/send`);
    const editor = p.getByTestId("send-editor");
    await editor.fill('{"name": "shop/order.placed", "data": ');
    await expect.poll(() => p.getByTestId("send-error").textContent()).toContain("Invalid JSON");
    expect(await p.getByTestId("send-submit").isDisabled()).toBe(true);
    await editor.fill(JSON.stringify({ name: "shop/order.placed", data: { sku: "mug", total: 12 } }));
    await p.getByTestId("send-submit").click();
    const link = p.getByTestId("sent-ids").locator("a").first();
    const eventId = (await link.textContent())?.trim() ?? "";
    expect(eventId).toMatch(/^[0-9A-Z]{26}$/);
    await screenshot("send-event");

    const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
    expect(run?.status).toBe("Completed");
    await untilApiHas(`/v1/events/${eventId}`);
    await link.click();
    await expect.poll(() => p.getByTestId("event-payload").textContent()).toContain('"mug"');
    await p.getByTestId("run-row").first().waitFor();
    await screenshot("event");

    // The run's page: output, and a timeline with the failed attempt of `charge` and its retry.
    await p.getByTestId("run-row").first().click();
    await expect.poll(() => p.getByTestId("run-status").textContent()).toContain("Completed");
    expect(await p.getByTestId("run-output").textContent()).toContain('"amount"');
    const bars = p.getByTestId("timeline-bar");
    await expect.poll(() => bars.count()).toBeGreaterThanOrEqual(3);
    const errored = p.locator('[data-testid="timeline-bar"][data-name="charge"][data-status="Errored"]');
    expect(await errored.count()).toBe(1);
    await errored.click();
    await expect.poll(() => p.getByTestId("step-error").textContent()).toContain("card network timeout");
    await screenshot("run-completed");
  });

  it("shows a failed run's error with its stack", async () => {
    const eventId = await sendOne("shop/order.broken", { sku: "lamp" });
    const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
    expect(run?.status).toBe("Failed");
    await untilApiHas(`/v1/runs/${run?.run_id}`);
    const { page: p, screenshot } = await page();
    await p.goto(`${cluster.apiUrl}/runs/${run?.run_id}`);
    await expect.poll(() => p.getByTestId("run-status").textContent()).toContain("Failed");
    const error = await p.getByTestId("run-error").textContent();
    expect(error).toContain("inventory service said no");
    expect(error).toMatch(/at .*dashboard\.test/);
    await screenshot("run-failed");
  });

  it("lists new events live, without a reload, and filters them by name", async () => {
    const { page: p, screenshot } = await page();
    await p.goto(`${cluster.apiUrl}/events`);
    await p.getByTestId("event-name-filter").waitFor();
    const eventId = await sendOne("shop/order.placed", { sku: "live", total: 3 });
    const row = p.locator(`[data-testid="event-row"][data-event-id="${eventId}"]`);
    await row.waitFor({ timeout: 30_000 });
    await screenshot("events");
    await p.getByTestId("event-name-filter").fill("shop/order.broken");
    await p.getByTestId("event-name-filter").press("Enter");
    await expect.poll(() => row.count()).toBe(0);
    const names = await p.getByTestId("event-row").allTextContents();
    expect(names.length).toBeGreaterThan(0);
    for (const text of names) expect(text).toContain("shop/order.broken");
  });

  it("filters runs by status and function, and cancels a running run from its page", async () => {
    const eventId = await sendOne("shop/slow", {});
    const running = await untilApiHas(`/v1/events/${eventId}/runs`);
    const runId = running.data[0]?.run_id;
    expect(runId).toBeTruthy();
    await untilApiHas(`/v1/runs/${runId}`);

    const { page: p, screenshot } = await page();
    await p.goto(`${cluster.apiUrl}/runs?status=Running&function_id=shop-nightly`);
    const row = p.getByTestId("run-row").filter({ hasText: runId });
    await row.waitFor();
    expect(await p.getByTestId("run-row").count()).toBe(1);
    await screenshot("runs-filtered");

    await row.click();
    await expect.poll(() => p.getByTestId("run-status").textContent()).toContain("Running");
    await p.locator('[data-testid="timeline-bar"][data-status="Sleeping"]').waitFor();
    await p.getByTestId("cancel-run").click();
    await expect
      .poll(() => p.getByTestId("run-status").textContent(), { timeout: 30_000 })
      .toContain("Cancelled");
    await screenshot("run-cancelled");
  });

  it("pages the runs list, and filters it by time range and event id from the form", async () => {
    const events = Array.from({ length: 55 }, (_, n) => ({ name: "shop/order.broken", data: { n } }));
    const sent = await sendEvents(cluster.apiUrl, "dashboard-test", events);
    expect(sent.status).toBe(200);
    const ids: string[] = sent.body.ids;
    await expect
      .poll(async () => (await untilApiHas("/v1/runs?function_id=shop-broken&limit=200")).data.length, {
        timeout: 30_000,
      })
      .toBeGreaterThanOrEqual(55);

    const { page: p, screenshot } = await page();
    await p.goto(`${cluster.apiUrl}/runs?function_id=shop-broken`);
    await expect.poll(() => p.getByTestId("run-row").count()).toBe(50);
    await p.getByTestId("load-more").click();
    await expect.poll(() => p.getByTestId("run-row").count()).toBeGreaterThanOrEqual(55);
    await screenshot("runs-paged");

    await p.getByTestId("filter-range").selectOption("15m");
    await expect.poll(() => p.url()).toContain("range=15m");
    await expect.poll(() => p.getByTestId("run-row").count()).toBe(50);
    await p.getByTestId("filter-event").fill(ids[7] ?? "");
    await p.getByTestId("filter-event").press("Enter");
    await expect.poll(() => p.getByTestId("run-row").count()).toBe(1);
    await p.getByTestId("run-row").first().click();
    await expect.poll(() => p.getByTestId("trigger-payload").textContent()).toContain('"n": 7');
  });

  it("sends an event again from the last payloads", async () => {
    const { page: p } = await page();
    await p.goto(`${cluster.apiUrl}/send`);
    await p
      .getByTestId("send-editor")
      .fill(JSON.stringify({ name: "shop/order.placed", data: { sku: "again" } }));
    await p.getByTestId("send-submit").click();
    await p.getByTestId("sent-ids").waitFor();
    await p.getByTestId("send-editor").fill(JSON.stringify({ name: "shop/other", data: {} }));
    await p.getByTestId("history-item").filter({ hasText: "shop/order.placed" }).first().click();
    expect(await p.getByTestId("send-editor").inputValue()).toContain('"again"');
  });

  it("works in a narrow window", async () => {
    const { page: p, screenshot } = await page({ width: 400, height: 800 });
    await p.goto(`${cluster.apiUrl}/runs`);
    await p.getByTestId("run-row").first().waitFor();
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    expect(width).toBeLessThanOrEqual(400);
    await screenshot("runs-narrow");
    await p.getByTestId("nav-events").click();
    await p.getByTestId("event-row").first().waitFor();
    await screenshot("events-narrow");
  });
});
