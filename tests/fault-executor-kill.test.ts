// Fault test: SIGKILL the executor while a slow step is in flight. The item's lease expires, the
// restarted executor picks the run up again, and the step whose result was saved does not re-run.

import { waitFor } from "@stepline/internal/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";

let cluster: Cluster;
let app: SdkApp;
const calls = { first: 0, slow: 0 };
let releaseSlow: () => void = () => {};
const slowGate = new Promise<void>((resolve) => {
  releaseSlow = resolve;
});

beforeAll(async () => {
  cluster = await startCluster({ name: "kill", dev: true, env: { STEPLINE_QUEUE_LEASE_MS: "3000" } });
  const opts = { sdk: "v4" as const, id: "fault-app", baseUrl: cluster.apiUrl };
  const client = makeClient(opts);
  const fn = client.createFunction(
    { id: "slow-chain", triggers: [{ event: "fault/slow" }] },
    async ({ step }: any) => {
      const first = await step.run("first", () => {
        calls.first++;
        return "saved";
      });
      const slow = await step.run("slow", async () => {
        calls.slow++;
        // Only the first attempt hangs: it is the one in flight when the executor dies.
        if (calls.slow === 1) await slowGate;
        return "done";
      });
      return { first, slow };
    },
  );
  app = await serveAndSync(opts, client, [fn]);
});

afterAll(async () => {
  releaseSlow();
  await app?.close();
  await cluster?.stop();
});

it("completes a run after the executor is killed mid-step, without re-running the saved step", async () => {
  const sent = await sendEvents(cluster.apiUrl, "any-key", { name: "fault/slow", data: {} });
  expect(sent.status).toBe(200);
  await waitFor("the slow step to start", () => calls.slow === 1, { timeoutMs: 30_000, intervalMs: 100 });

  await cluster.kill("executor", "SIGKILL");
  releaseSlow(); // the orphaned call finishes, but nobody is left to read its answer
  await cluster.restart("executor");

  const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0], { timeoutMs: 60_000 });
  expect(run?.status).toBe("Completed");
  expect(run?.output).toEqual({ first: "saved", slow: "done" });
  expect(calls.first).toBe(1);
  expect(calls.slow).toBe(2);
});
