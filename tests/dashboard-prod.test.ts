// The dashboard in production mode, in a real browser against a real cluster and apps on the
// official SDK v4: sign-in, environments, sync by URL, invoke, replay, bulk cancel and replay,
// metrics. Screenshots go to tests/screenshots/; any console error fails the test.
import type { Environment } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { BrowserPage } from "./support/browser.js";
import { launchBrowser, pageTracker } from "./support/browser.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync, serveSdkApp } from "./support/sdk-app.js";
import { createEnvironment, createTenant, createUser } from "./support/tenants.js";

const USER = "ops@acme.test";
const PASSWORD = "correct horse battery staple";

let cluster: Cluster;
let prod: Environment;
let staging: Environment;
let shop: SdkApp;
let billing: SdkApp;
let browser: Browser;
const pages = pageTracker(() => browser);

beforeAll(async () => {
  cluster = await startCluster({
    name: "dashboard-prod",
    dev: false,
    env: {
      STEPLINE_HISTORY_FLUSH_MS: "100",
      STEPLINE_EXECUTOR_EGRESS_ALLOW: "127.0.0.1",
      STEPLINE_EVENT_API_EGRESS_ALLOW: "127.0.0.1",
    },
  });
  prod = await createTenant(cluster.tenantAddr, "acme", "production");
  staging = await createEnvironment(cluster.tenantAddr, prod.accountId, "staging");
  await createUser(cluster.tenantAddr, prod.accountId, USER, PASSWORD);
  const keys = { baseUrl: cluster.apiUrl, signingKey: prod.signingKey, eventKey: prod.eventKeys[0] };
  const shopOpts = { sdk: "v4" as const, id: "shop", ...keys };
  const shopClient = makeClient(shopOpts);
  shop = await serveAndSync(shopOpts, shopClient, [
    shopClient.createFunction(
      { id: "greet", triggers: [{ event: "shop/greet" }] },
      async ({ event, step }: any) => step.run("hello", () => `hello ${event.data.name}`),
    ),
    shopClient.createFunction(
      { id: "sleepy", triggers: [{ event: "shop/sleepy" }] },
      async ({ step }: any) => {
        await step.sleep("nap", "1h");
      },
    ),
  ]);
  // Served but not synced: the dashboard syncs it by URL.
  const billingOpts = { sdk: "v4" as const, id: "billing", ...keys };
  const billingClient = makeClient(billingOpts);
  billing = await serveSdkApp(billingOpts, billingClient, [
    billingClient.createFunction(
      { id: "invoice", triggers: [{ event: "billing/invoice" }] },
      async () => "ok",
    ),
  ]);
  browser = await launchBrowser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await shop?.close();
  await billing?.close();
  await cluster?.stop();
});

afterEach(async () => {
  expect(await pages.closeAll(), "console errors in the page").toEqual([]);
});

const page = () => pages.open();

/** A page signed in as the account's user. */
async function signedIn(path = "/"): Promise<BrowserPage> {
  const bp = await page();
  await bp.page.goto(`${cluster.apiUrl}${path}`);
  await bp.page.getByTestId("signin-user").fill(USER);
  await bp.page.getByTestId("signin-password").fill(PASSWORD);
  await bp.page.getByTestId("signin-submit").click();
  await bp.page.getByTestId("signout").waitFor();
  return bp;
}

const auth = () => ({ authorization: `Bearer ${prod.signingKey}` });

async function send(name: string, data: object): Promise<string> {
  const sent = await sendEvents(cluster.apiUrl, prod.eventKeys[0] ?? "", { name, data });
  expect(sent.status).toBe(200);
  return sent.body.ids[0];
}

/** Waits until the REST API answers `path` with a non-empty `data` (history lags by a flush). */
async function untilApiHas(path: string): Promise<any> {
  let body: any;
  await expect
    .poll(
      async () => {
        const res = await fetch(`${cluster.apiUrl}${path}`, { headers: auth() });
        body = res.status === 200 ? await res.json() : undefined;
        return body !== undefined && !(Array.isArray(body.data) && body.data.length === 0);
      },
      { timeout: 30_000, interval: 100 },
    )
    .toBe(true);
  return body;
}

async function runStatus(p: Page): Promise<string> {
  return (await p.getByTestId("run-status").textContent()) ?? "";
}

describe("dashboard, production mode", () => {
  it("asks for a sign-in, refuses a wrong password, and signs in and out", async () => {
    const bp = await page();
    const p = bp.page;
    await p.goto(cluster.apiUrl);
    await p.getByTestId("signin-user").fill(USER);
    await p.getByTestId("signin-password").fill("not the password");
    bp.expectFailedLoad(401);
    await p.getByTestId("signin-submit").click();
    await expect
      .poll(() => p.getByTestId("error-banner").textContent())
      .toContain("wrong username or password");
    await bp.screenshot("signin");
    // The API refuses the data to a browser without a session.
    expect((await fetch(`${cluster.apiUrl}/v1/runs`)).status).toBe(401);

    await p.getByTestId("signin-password").fill(PASSWORD);
    await p.getByTestId("signin-submit").click();
    await p.getByTestId("signout").waitFor();
    await p.getByTestId("signout").click();
    await p.getByTestId("signin-submit").waitFor();
  });

  it("switches environments, each showing only its own apps", async () => {
    const { page: p, screenshot } = await signedIn("/apps");
    await p.getByTestId("app-row").filter({ hasText: "shop" }).waitFor();
    const picker = p.getByTestId("env-picker");
    await picker.selectOption(staging.id);
    await expect.poll(() => p.getByTestId("app-row").count()).toBe(0);
    await screenshot("apps-staging");
    await picker.selectOption(prod.id);
    await p.getByTestId("app-row").filter({ hasText: "shop" }).waitFor();
  });

  it("syncs a new app by its URL, and re-syncs it", async () => {
    const { page: p, screenshot } = await signedIn("/apps");
    await p.getByTestId("sync-url").fill(billing.url);
    await p.getByTestId("sync-submit").click();
    await p.getByTestId("sync-result").waitFor();
    const row = p.getByTestId("app-row").filter({ hasText: "billing" });
    await row.waitFor();
    expect(await row.textContent()).toContain(billing.url);
    await row.getByTestId("resync-button").click();
    await expect.poll(() => p.getByTestId("sync-result").textContent()).toMatch(/billing|sync/i);
    await screenshot("apps-synced");
  });

  it("invokes a function with a payload, then replays its run", async () => {
    const { page: p, screenshot } = await signedIn("/functions");
    const row = p.locator('[data-testid="function-row"][data-function-id="shop-greet"]');
    await row.getByTestId("invoke-button").click();
    const editor = p.getByTestId("invoke-data");
    await editor.fill("[1]");
    expect(await p.getByTestId("invoke-submit").isDisabled()).toBe(true);
    await editor.fill('{"name": "Ada"}');
    await p.getByTestId("invoke-submit").click();
    const result = p.getByTestId("invoke-result");
    await result.waitFor();
    const eventId = ((await result.locator("a").first().textContent()) ?? "").trim();
    await screenshot("invoke");
    const [run] = await waitForEndedRuns(cluster.apiUrl, eventId, { auth: prod.signingKey });
    expect(run).toMatchObject({ status: "Completed", output: "hello Ada" });

    await untilApiHas(`/v1/runs/${run?.run_id}`);
    await p.goto(`${cluster.apiUrl}/runs/${run?.run_id}`);
    await expect.poll(() => runStatus(p)).toContain("Completed");
    await p.getByTestId("replay-run").click();
    // The replay answers once history has the new run (up to 10 s on a busy machine, the
    // endpoint's REPLAY_VISIBLE_WAIT_MS), and only then does the page move to it.
    await expect.poll(() => p.url(), { timeout: 20_000 }).not.toContain(run?.run_id ?? "");
    const replayId = p.url().split("/runs/")[1] ?? "";
    expect(replayId).toMatch(/^[0-9A-Z]{26}$/);
    await untilApiHas(`/v1/runs/${replayId}`);
    await expect.poll(() => runStatus(p), { timeout: 30_000 }).toContain("Completed");
    expect(await p.getByTestId("run-output").textContent()).toContain("hello Ada");
    await screenshot("run-replayed");
  });

  it("cancels every running run of a filter, then replays the cancelled ones", async () => {
    const ids = [await send("shop/sleepy", { n: 1 }), await send("shop/sleepy", { n: 2 })];
    for (const id of ids) await untilApiHas(`/v1/events/${id}/runs`);
    const { page: p, screenshot } = await signedIn("/runs?status=Running&function_id=shop-sleepy");
    await expect.poll(() => p.getByTestId("run-row").count()).toBe(2);
    await p.getByTestId("bulk-cancel").click();
    await p.getByTestId("confirm-ok").click();
    await expect.poll(() => p.getByTestId("bulk-result").textContent()).toContain("2");
    await screenshot("runs-bulk-cancelled");
    for (const id of ids) {
      const [run] = await waitForEndedRuns(cluster.apiUrl, id, { auth: prod.signingKey });
      expect(run?.status).toBe("Cancelled");
    }

    await untilApiHas("/v1/runs?status=Cancelled&function_id=shop-sleepy&limit=2");
    await p.goto(`${cluster.apiUrl}/runs?status=Cancelled&function_id=shop-sleepy`);
    await expect.poll(() => p.getByTestId("run-row").count()).toBe(2);
    await p.getByTestId("bulk-replay").click();
    await p.getByTestId("confirm-ok").click();
    await expect.poll(() => p.getByTestId("bulk-result").textContent()).toContain("2");
    // Two new runs of the function, started by the replays, sleeping.
    const running = await untilApiHas("/v1/runs?status=Running&function_id=shop-sleepy");
    await expect
      .poll(async () => (await untilApiHas("/v1/runs?status=Running&function_id=shop-sleepy")).data.length)
      .toBe(2);
    expect(running.data.every((r: any) => r.function_id === "shop-sleepy")).toBe(true);
  });

  it("draws a function's metrics from history", async () => {
    const eventId = await send("shop/greet", { name: "Grace" });
    await waitForEndedRuns(cluster.apiUrl, eventId, { auth: prod.signingKey });
    await expect
      .poll(async () => {
        const fns = await untilApiHas("/v1/functions");
        return fns.data.find((f: any) => f.id === "shop-greet")?.stats.hour.runs ?? 0;
      })
      .toBeGreaterThan(0);
    const { page: p, screenshot } = await signedIn("/functions");
    const row = p.locator('[data-testid="function-row"][data-function-id="shop-greet"]');
    await row.getByTestId("metrics-link").click();
    await expect.poll(() => p.getByTestId("metrics-chart").count()).toBe(3);
    await expect.poll(() => p.locator('[data-testid="metrics-chart"] canvas').count()).toBe(3);
    await screenshot("metrics");
  });
});
