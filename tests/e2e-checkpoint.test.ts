// SDK v4 checkpointing end to end: with `ctx.fn_id` and `ctx.qi_id` in the call, the official SDK
// runs steps inside one call and POSTs each to /v1/checkpoint/<run>/async before it goes on, so a
// 3-step function runs in one request; async steps end the request as they would without it.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";

/** Per run tag: how many times the function body ran (one per request) and each step ran. */
const calls = new Map<string, number>();
const stepRuns = new Map<string, number>();
const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

function functions(client: any) {
  return [
    client.createFunction(
      { id: "three", triggers: [{ event: "ckpt/three" }] },
      async ({ event, step }: any) => {
        const tag = event.data.tag;
        bump(calls, tag);
        const a = await step.run("a", () => {
          bump(stepRuns, `${tag}:a`);
          return 1;
        });
        const b = await step.run("b", () => {
          bump(stepRuns, `${tag}:b`);
          return a + 1;
        });
        return step.run("c", () => {
          bump(stepRuns, `${tag}:c`);
          return { sum: a + b + 1 };
        });
      },
    ),
    client.createFunction({ id: "nap", triggers: [{ event: "ckpt/nap" }] }, async ({ event, step }: any) => {
      const tag = event.data.tag;
      bump(calls, tag);
      const a = await step.run("before", () => {
        bump(stepRuns, `${tag}:before`);
        return "x";
      });
      await step.sleep("nap", "1s");
      return step.run("after", () => {
        bump(stepRuns, `${tag}:after`);
        return `${a}y`;
      });
    }),
    client.createFunction(
      { id: "flaky", triggers: [{ event: "ckpt/flaky" }], retries: 2 },
      async ({ event, step }: any) => {
        const tag = event.data.tag;
        bump(calls, tag);
        await step.run("first", () => {
          bump(stepRuns, `${tag}:first`);
          return 1;
        });
        return step.run("second", () => {
          bump(stepRuns, `${tag}:second`);
          if ((stepRuns.get(`${tag}:second`) ?? 0) < 2) throw new Error("not yet");
          return "ok";
        });
      },
    ),
  ];
}

let cluster: Cluster;
let app: SdkApp;

async function run(name: string, tag: string) {
  const res = await sendEvents(cluster.apiUrl, "test-key", { name, data: { tag } });
  expect(res.status).toBe(200);
  const [ended] = await waitForEndedRuns(cluster.apiUrl, res.body.ids[0], { timeoutMs: 60_000 });
  return ended;
}

beforeAll(async () => {
  cluster = await startCluster({ name: "ckpt", dev: true });
  const opts = { sdk: "v4" as const, id: "ckpt-app", baseUrl: cluster.apiUrl, checkpointing: true };
  const client = makeClient(opts);
  app = await serveAndSync(opts, client, functions(client));
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
});

describe("SDK v4 checkpointing", () => {
  it("runs a 3-step function in one request, each step once, and completes with its output", async () => {
    const ended = await run("ckpt/three", "t1");
    expect(ended?.status).toBe("Completed");
    expect(ended?.output).toEqual({ sum: 4 });
    expect(calls.get("t1")).toBe(1);
    for (const s of ["a", "b", "c"]) expect(stepRuns.get(`t1:${s}`), s).toBe(1);
  });

  it("ends the request at a sleep and goes on after it, running no step twice", async () => {
    const ended = await run("ckpt/nap", "n1");
    expect(ended?.status).toBe("Completed");
    expect(ended?.output).toBe("xy");
    expect(calls.get("n1")).toBe(2);
    expect(stepRuns.get("n1:before")).toBe(1);
    expect(stepRuns.get("n1:after")).toBe(1);
  });

  it("retries a failing step without running the checkpointed one again", async () => {
    const ended = await run("ckpt/flaky", "f1");
    expect(ended?.status).toBe("Completed");
    expect(ended?.output).toBe("ok");
    expect(stepRuns.get("f1:first")).toBe(1);
    expect(stepRuns.get("f1:second")).toBe(2);
  });
});
