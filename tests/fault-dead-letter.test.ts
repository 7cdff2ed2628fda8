// Fault tests for releases and dead letters, in production mode with the official SDK:
// - an outage of the signing-key source (event-api) far longer than the delivery limit allows
//   only releases the item, with a growing backoff; the run completes once it is back;
// - an item that kills its executor on every delivery is dead-lettered, its run fails with an
//   error naming it, and the CLI lists and redrives it.

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { waitFor } from "@stepline/internal/testing";
import type { Environment } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";
import { createTenant } from "./support/tenants.js";

const CLI = fileURLToPath(new URL("../services/event-api/dist/cli.js", import.meta.url));
/** Deliveries that end in a lost lease before the queue gives an item up. */
const MAX_DELIVERIES = 2;
let cluster: Cluster;
let env: Environment;
let app: SdkApp;
const calls = { before: 0, after: 0, hang: 0 };
let openGate: () => void = () => {};
const gate = new Promise<void>((resolve) => {
  openGate = resolve;
});

beforeAll(async () => {
  cluster = await startCluster({
    name: "dead",
    dev: false,
    env: {
      STEPLINE_QUEUE_MAX_DELIVERIES: String(MAX_DELIVERIES),
      STEPLINE_QUEUE_LEASE_MS: "2000",
      // Every call looks the signing key up, so an outage of event-api stops every call.
      STEPLINE_EXECUTOR_KEY_CACHE_MS: "0",
      // Releases back off from 0.2 s, so the outage below sees several of them quickly.
      STEPLINE_EXECUTOR_BACKOFF_BASE_MS: "200",
    },
  });
  env = await createTenant(cluster.tenantAddr, "dead-corp", "production");
  const opts = { sdk: "v4" as const, id: "dead-app", baseUrl: cluster.apiUrl, signingKey: env.signingKey };
  const client = makeClient(opts);
  const outage = client.createFunction(
    { id: "outage", triggers: [{ event: "dead/outage" }] },
    async ({ step }: any) => {
      const a = await step.run("before", () => ++calls.before);
      await step.sleep("pause", "1s");
      const b = await step.run("after", () => ++calls.after);
      return { a, b };
    },
  );
  const poison = client.createFunction(
    { id: "poison", triggers: [{ event: "dead/poison" }], retries: 0 },
    async ({ step }: any) =>
      step.run("hang", async () => {
        calls.hang++;
        await gate; // held until the executor that called it is dead
        return "never seen";
      }),
  );
  app = await serveAndSync(opts, client, [outage, poison]);
});

afterAll(async () => {
  openGate();
  await app?.close();
  await cluster?.stop();
});

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, "--addr", cluster.tenantAddr, "--queue", cluster.queueAddrs[0] ?? "", ...args],
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

it("only releases an item while the signing-key source is down, however long, and completes the run after", async () => {
  const sent = await sendEvents(cluster.apiUrl, env.eventKeys[0] ?? "", { name: "dead/outage", data: {} });
  expect(sent.status).toBe(200);
  await waitFor("the first step", () => calls.before === 1, { timeoutMs: 30_000, intervalMs: 50 });
  const releasedBefore = await cluster.metric("executor", "stepline_executor_releases_total");
  await cluster.kill("event-api");
  // The sleep's end finds no signing key: each delivery is released. Twice the delivery limit
  // (plus one) would have dead-lettered the item if releases counted as deliveries.
  const want = releasedBefore + 2 * MAX_DELIVERIES + 1;
  await waitFor(
    `${want - releasedBefore} releases`,
    async () => (await cluster.metric("executor", "stepline_executor_releases_total")) >= want,
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  expect(calls.after).toBe(0);
  await cluster.restart("event-api");

  const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0], { auth: env.signingKey });
  expect(run?.status).toBe("Completed");
  expect(run?.output).toEqual({ a: 1, b: 1 });
  expect(calls).toMatchObject({ before: 1, after: 1 });
  const listed = await cli("dead-letters", "list");
  expect([listed.code, listed.stdout]).toEqual([0, "(no dead letters)\n"]);
});

it("dead-letters an item that kills its executor on every delivery, fails its run, and lists and redrives it", async () => {
  const sent = await sendEvents(cluster.apiUrl, env.eventKeys[0] ?? "", { name: "dead/poison", data: {} });
  expect(sent.status).toBe(200);
  for (let delivery = 1; delivery <= MAX_DELIVERIES; delivery++) {
    await waitFor(`delivery ${delivery}`, () => calls.hang === delivery, {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    await cluster.kill("executor");
    await cluster.restart("executor");
  }

  const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0], { auth: env.signingKey });
  expect(run?.status).toBe("Failed");
  const startItem = `${run?.run_id}:start`;
  expect(JSON.stringify(run?.error)).toContain(`its queue item ${startItem} was delivered too many times`);
  expect(calls.hang).toBe(MAX_DELIVERIES);

  const listed = await cli("--json", "dead-letters", "list", "--account", env.accountId);
  expect(listed.code, listed.stderr).toBe(0);
  expect(JSON.parse(listed.stdout)).toEqual({
    items: [
      expect.objectContaining({
        itemId: startItem,
        runId: run?.run_id,
        accountId: env.accountId,
        environmentId: env.id,
        functionId: "dead-app-poison",
        deliveries: MAX_DELIVERIES + 1,
      }),
    ],
    more: false,
  });
  const table = await cli("dead-letters", "list");
  expect(table.stdout).toMatch(new RegExp(`${startItem}\\s+start\\s+${run?.run_id}\\s+dead-app-poison\\s+3`));

  const completed = `stepline_queue_ops_total{op="complete",result="ok"}`;
  const completedBefore = await cluster.metric("queue", completed);
  const redriven = await cli("dead-letters", "redrive", env.accountId, startItem, "no-such-item");
  expect(redriven.code).toBe(1);
  expect(redriven.stdout).toBe(
    `1 of 2 items redriven\nnot a dead letter of ${env.accountId}: no-such-item\n`,
  );
  // The run has failed, so its redriven item is acked without a call.
  await waitFor(
    "the redriven item to be acked",
    async () => (await cluster.metric("queue", completed)) > completedBefore,
    {
      timeoutMs: 15_000,
      intervalMs: 100,
    },
  );
  expect(calls.hang).toBe(MAX_DELIVERIES);
  expect((await cli("dead-letters", "list")).stdout).toBe("(no dead letters)\n");
});
