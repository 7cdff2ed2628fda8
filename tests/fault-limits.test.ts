// Fault tests for the limits an app cannot exceed, on the real cluster with the official SDK v4:
// - an app that never sees its saved steps (a proxy drops them) answers a saved step again on
//   every call: the run spends its attempts on that and fails, instead of calling it forever;
// - a function that keeps planning new steps fails at the steps-per-run limit, naming it;
// - step results and outputs of several MiB reach history, a step over the output limit or an
//   answer over the response limit fails its run naming the limit, and later runs are recorded.

import { afterAll, beforeAll, expect, it } from "vitest";
import type { RunView } from "./support/api.js";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";

const MAX_STEPS = 10;
const MiB = 1024 * 1024;
let cluster: Cluster;
let app: SdkApp;
const calls = { forgetful: 0, endless: 0 };

beforeAll(async () => {
  cluster = await startCluster({
    name: "limits",
    dev: true,
    env: {
      STEPLINE_EXECUTOR_MAX_STEPS_PER_RUN: String(MAX_STEPS),
      STEPLINE_EXECUTOR_BACKOFF_BASE_MS: "50",
    },
  });
  const opts = {
    sdk: "v4" as const,
    id: "limits",
    baseUrl: cluster.apiUrl,
    // The forgetful function's calls reach the SDK without their saved steps.
    alterCallBody: (body: any, url: URL) =>
      url.searchParams.get("fnId") === "limits-forgetful" ? { ...body, steps: {} } : body,
  };
  const client = makeClient(opts);
  const forgetful = client.createFunction(
    { id: "forgetful", triggers: [{ event: "limits/forgetful" }], retries: 2 },
    async ({ step }: any) => {
      await step.run("a", () => ++calls.forgetful);
      return step.run("b", () => "never reached");
    },
  );
  const endless = client.createFunction(
    { id: "endless", triggers: [{ event: "limits/endless" }] },
    async ({ step }: any) => {
      for (let i = 0; ; i++) await step.run(`s${i}`, () => ++calls.endless);
    },
  );
  const big = client.createFunction(
    { id: "big", triggers: [{ event: "limits/big" }], retries: 0 },
    async ({ event, step }: any) => {
      const text: string = await step.run("make", () => "x".repeat(event.data.bytes));
      return { length: text.length, text };
    },
  );
  app = await serveAndSync(opts, client, [forgetful, endless, big]);
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
});

async function runOf(name: string, data: object = {}): Promise<RunView> {
  const sent = await sendEvents(cluster.apiUrl, "any-key", { name, data });
  expect(sent.status).toBe(200);
  const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0], { timeoutMs: 60_000 });
  if (!run) throw new Error(`no run of ${name}`);
  return run;
}

it("fails a run whose app answers a saved step again once its attempts are spent, instead of calling it forever", async () => {
  const run = await runOf("limits/forgetful");
  expect(run.status).toBe("Failed");
  expect(run.error).toMatchObject({
    name: "NonDeterministicStepError",
    message:
      "app answered StepRun for step a, whose saved result it was sent: the function must reach the same steps with the same ids on every call",
  });
  // The first call saved step a; each of the 3 attempts of the next call ran it again.
  expect(calls.forgetful).toBe(4);
});

it("fails a run that keeps planning new steps at the steps-per-run limit, naming it", async () => {
  const run = await runOf("limits/endless");
  expect(run.status).toBe("Failed");
  expect(run.error).toMatchObject({
    message: `the run reached its limit of ${MAX_STEPS} steps (STEPLINE_EXECUTOR_MAX_STEPS_PER_RUN)`,
  });
  // The app ran one step past the limit; its result was never saved.
  expect(calls.endless).toBe(MAX_STEPS + 1);
});

it("records results of several MiB in history, fails a step over the output limit naming it, and goes on", async () => {
  const large = await runOf("limits/big", { bytes: 3 * MiB });
  expect(large.status).toBe("Completed");
  expect(large.output).toMatchObject({ length: 3 * MiB });
  expect((large.output as { text: string }).text).toBe("x".repeat(3 * MiB));

  // Its memo `{"data":"x…"}` is 5 bytes over the limit; the answer around it is within its own.
  const overLimit = await runOf("limits/big", { bytes: 4 * MiB - 5 });
  expect(overLimit.status).toBe("Failed");
  expect(overLimit.error).toMatchObject({
    message: `a step result is larger than the limit of ${4 * MiB} bytes (STEPLINE_EXECUTOR_MAX_STEP_OUTPUT_BYTES)`,
  });
  const overAnswer = await runOf("limits/big", { bytes: 5 * MiB });
  expect(overAnswer.status).toBe("Failed");
  expect(overAnswer.error).toMatchObject({
    message: `app answered more than ${4 * MiB + 64 * 1024} bytes (STEPLINE_EXECUTOR_MAX_RESPONSE_BYTES)`,
  });

  const small = await runOf("limits/big", { bytes: 3 });
  expect(small).toMatchObject({ status: "Completed", output: { length: 3, text: "xxx" } });
});
