// Flow control end to end: functions written with the official SDK (v4) declare concurrency,
// throttle and priority in createFunction, and the cluster enforces them; a function can be
// paused and resumed over gRPC; a config Stepline cannot enforce is refused at sync.

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { callUnary, createClient } from "@stepline/internal/grpc";
import { waitFor } from "@stepline/internal/testing";
import { QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync, serveSdkApp } from "./support/sdk-app.js";

const APP = "flow-app";
/** Dev mode's fixed tenant (services/event-api/src/tenancy.ts). */
const DEV_ACCOUNT_ID = "00000000000000000000DEVACC";
const DEV_ENVIRONMENT_ID = "00000000000000000000DEVENV";

/** When each run's "work" step ran, by function: [start, end] in ms, and in what order. */
const work = new Map<string, Array<{ tag: string; start: number; end: number }>>();
/** Tags of steps that have started (and maybe not ended). */
const started = new Set<string>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function record(fn: string, tag: string, ms: number) {
  return async () => {
    const start = Date.now();
    started.add(tag);
    await sleep(ms);
    const list = work.get(fn) ?? [];
    list.push({ tag, start, end: Date.now() });
    work.set(fn, list);
    return tag;
  };
}

/** The most intervals of `list` that overlap at one moment. */
function maxOverlap(list: Array<{ start: number; end: number }>): number {
  const edges = list.flatMap((w) => [
    { t: w.start, d: 1 },
    { t: w.end, d: -1 },
  ]);
  // Ends sort before starts at the same instant: touching intervals do not overlap.
  edges.sort((a, b) => a.t - b.t || a.d - b.d);
  let cur = 0;
  let max = 0;
  for (const e of edges) {
    cur += e.d;
    max = Math.max(max, cur);
  }
  return max;
}

function functions(client: any) {
  return [
    client.createFunction(
      { id: "serial", triggers: [{ event: "flow/serial" }], concurrency: 1 },
      async ({ event, step }: any) => {
        await step.run("work", record("serial", event.data.tag, 250));
        return step.run("after", record("serial", `${event.data.tag}-after`, 50));
      },
    ),
    client.createFunction(
      { id: "sleepy", triggers: [{ event: "flow/sleepy" }], concurrency: 1 },
      async ({ event, step }: any) => {
        await step.run("a", record("sleepy", `${event.data.tag}-a`, 10));
        await step.sleep("nap", "2s");
        return step.run("b", record("sleepy", `${event.data.tag}-b`, 10));
      },
    ),
    client.createFunction(
      {
        id: "per-user",
        triggers: [{ event: "flow/per-user" }],
        concurrency: { limit: 1, key: "event.data.user" },
      },
      async ({ event, step }: any) => step.run("work", record("per-user", event.data.tag, 400)),
    ),
    client.createFunction(
      { id: "throttled", triggers: [{ event: "flow/throttled" }], throttle: { limit: 1, period: "1s" } },
      async ({ event, step }: any) => step.run("work", record("throttled", event.data.tag, 1)),
    ),
    client.createFunction(
      {
        id: "prioritized",
        triggers: [{ event: "flow/prioritized" }],
        concurrency: 1,
        priority: { run: "event.data.pri" },
      },
      async ({ event, step }: any) =>
        step.run("work", record("prioritized", event.data.tag, event.data.ms ?? 10)),
    ),
    client.createFunction(
      { id: "pausable", triggers: [{ event: "flow/pausable" }] },
      async ({ event, step }: any) => step.run("work", record("pausable", event.data.tag, 1)),
    ),
    client.createFunction(
      { id: "debounced", triggers: [{ event: "flow/debounced" }], debounce: { period: "1s" } },
      async ({ event, step }: any) => step.run("work", record("debounced", event.data.tag, 1)),
    ),
    client.createFunction(
      { id: "batched", triggers: [{ event: "flow/batched" }], batchEvents: { maxSize: 3, timeout: "2s" } },
      async ({ events, step }: any) =>
        step.run("work", record("batched", events.map((e: any) => e.data.tag).join(","), 1)),
    ),
    client.createFunction(
      { id: "rated", triggers: [{ event: "flow/rated" }], rateLimit: { limit: 2, period: "1m" } },
      async ({ event, step }: any) => step.run("work", record("rated", event.data.tag, 1)),
    ),
    client.createFunction(
      { id: "once", triggers: [{ event: "flow/once" }], idempotency: "event.data.order" },
      async ({ event, step }: any) => step.run("work", record("once", event.data.tag, 1)),
    ),
    client.createFunction(
      {
        id: "single-skip",
        triggers: [{ event: "flow/single-skip" }],
        singleton: { mode: "skip", key: "event.data.user" },
      },
      async ({ event, step }: any) => {
        await step.run("work", record("single-skip", event.data.tag, 1));
        await step.sleep("hold", "1500ms");
        return event.data.tag;
      },
    ),
    client.createFunction(
      { id: "single-cancel", triggers: [{ event: "flow/single-cancel" }], singleton: { mode: "cancel" } },
      async ({ event, step }: any) => {
        await step.run("work", record("single-cancel", event.data.tag, 1));
        await step.sleep("hold", "30s");
        return event.data.tag;
      },
    ),
  ];
}

let cluster: Cluster;
let app: SdkApp;

async function send(name: string, ...data: Array<Record<string, unknown>>): Promise<string[]> {
  const res = await sendEvents(
    cluster.apiUrl,
    "test-key",
    data.map((d) => ({ name, data: d })),
  );
  expect(res.status).toBe(200);
  return res.body.ids as string[];
}

async function allEnded(ids: string[]) {
  for (const id of ids) {
    const runs = await waitForEndedRuns(cluster.apiUrl, id, { timeoutMs: 60_000 });
    expect(runs.map((r) => r.status)).toEqual(["Completed"]);
  }
}

const tags = (fn: string) => (work.get(fn) ?? []).map((w) => w.tag);

const CLI = fileURLToPath(new URL("../services/event-api/dist/cli.js", import.meta.url));

/** Runs the operator's CLI against the cluster; resolves with its stdout (rejects on failure). */
function cli(...args: string[]): Promise<string> {
  const addrs = ["--addr", cluster.tenantAddr, "--queue", cluster.queueAddrs[0] as string];
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [CLI, ...addrs, ...args], (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout),
    ),
  );
}

interface SkipView {
  function_id: string;
  reason: string;
  detail: string;
}

/** Why an event started no run (GET /v1/events/:id/skips), once history has it. */
async function skipsOf(eventId: string): Promise<SkipView[]> {
  return waitFor(`skips of ${eventId}`, async () => {
    const res = await fetch(`${cluster.apiUrl}/v1/events/${eventId}/skips`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: SkipView[] };
    return body.data.length > 0 ? body.data : undefined;
  });
}

async function runsOf(eventId: string): Promise<Array<{ status: string }>> {
  const res = await fetch(`${cluster.apiUrl}/v1/events/${eventId}/runs`);
  return ((await res.json()) as { data: Array<{ status: string }> }).data;
}

beforeAll(async () => {
  cluster = await startCluster({ name: "flow", dev: true, env: { STEPLINE_QUEUE_LIMITS_TTL_MS: "500" } });
  const opts = { sdk: "v4" as const, id: APP, baseUrl: cluster.apiUrl };
  const client = makeClient(opts);
  app = await serveAndSync(opts, client, functions(client));
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
});

describe("flow control with the official SDK", () => {
  it("concurrency: 1 runs one step at a time across runs, and runs them all", async () => {
    const ids = await send("flow/serial", { tag: "s1" }, { tag: "s2" }, { tag: "s3" }, { tag: "s4" });
    await allEnded(ids);
    const runs = work.get("serial") ?? [];
    expect(runs).toHaveLength(8);
    expect(maxOverlap(runs)).toBe(1);
  });

  it("a sleeping run holds no concurrency slot", async () => {
    const ids = await send("flow/sleepy", { tag: "x" });
    await waitFor("x's first step", () => tags("sleepy").includes("x-a"));
    const more = await send("flow/sleepy", { tag: "y" });
    await allEnded([...ids, ...more]);
    const at = (tag: string) => work.get("sleepy")?.find((w) => w.tag === tag)?.start ?? Number.NaN;
    // y's first step ran while x slept, not after x's last step.
    expect(at("y-a")).toBeLessThan(at("x-b"));
  });

  it("a keyed limit holds back one key's runs and never another key's", async () => {
    const ids = await send(
      "flow/per-user",
      { user: "u1", tag: "u1-1" },
      { user: "u1", tag: "u1-2" },
      { user: "u2", tag: "u2-1" },
    );
    await allEnded(ids);
    const runs = work.get("per-user") ?? [];
    const of = (user: string) => runs.filter((w) => w.tag.startsWith(user));
    expect(maxOverlap(of("u1"))).toBe(1);
    // u2 ran alongside u1, not after both of its runs.
    expect(maxOverlap(runs)).toBe(2);
  });

  it("throttle starts runs no faster than the limit allows, and drops none", async () => {
    const ids = await send("flow/throttled", { tag: "t1" }, { tag: "t2" }, { tag: "t3" });
    await allEnded(ids);
    const starts = (work.get("throttled") ?? []).map((w) => w.start).sort((a, b) => a - b);
    expect(starts).toHaveLength(3);
    // One start per second (GCRA); the app sees them a little later, never earlier.
    expect((starts[1] ?? 0) - (starts[0] ?? 0)).toBeGreaterThanOrEqual(900);
    expect((starts[2] ?? 0) - (starts[1] ?? 0)).toBeGreaterThanOrEqual(900);
  });

  it("priority.run puts a higher-priority run ahead of one queued before it", async () => {
    const blocker = await send("flow/prioritized", { tag: "blocker", pri: 0, ms: 1_000 });
    // The blocker holds the only slot while the other two queue up behind it.
    await waitFor("the blocker's step to start", () => started.has("blocker"));
    const low = await send("flow/prioritized", { tag: "low", pri: 0 });
    // A JSON number is a CEL double: priority takes it (Inngest's server reads it as 0).
    const high = await send("flow/prioritized", { tag: "high", pri: 300 });
    await allEnded([...blocker, ...low, ...high]);
    expect(tags("prioritized")).toEqual(["blocker", "high", "low"]);
  });

  it("a paused function runs nothing until resumed (gRPC), then runs what queued up", async () => {
    const queue = createClient(QueueServiceClient, cluster.queueAddrs[0] as string);
    const fn = {
      accountId: DEV_ACCOUNT_ID,
      environmentId: DEV_ENVIRONMENT_ID,
      functionId: `${APP}-pausable`,
    };
    try {
      expect(await callUnary(queue.pauseFunction.bind(queue), { function: fn })).toEqual({ changed: true });
      const paused = await callUnary(queue.getFunctionPauses.bind(queue), { functions: [fn] });
      expect(paused.functions[0]?.paused).toBe(true);
      const ids = await send("flow/pausable", { tag: "p1" }, { tag: "p2" });
      // The evidence of "nothing runs" is time passing without a call.
      await sleep(1_500);
      expect(tags("pausable")).toEqual([]);
      expect(await callUnary(queue.resumeFunction.bind(queue), { function: fn })).toEqual({ changed: true });
      await allEnded(ids);
      expect(tags("pausable").sort()).toEqual(["p1", "p2"]);
    } finally {
      queue.close();
    }
  });

  it("the CLI pauses, reports and resumes a function", async () => {
    const fnId = `${APP}-pausable`;
    expect(await cli("functions", "pause", DEV_ENVIRONMENT_ID, fnId)).toBe(`${fnId} paused\n`);
    expect(await cli("functions", "status", DEV_ENVIRONMENT_ID, fnId)).toBe(`${fnId} is paused\n`);
    const [id] = await send("flow/pausable", { tag: "p3" });
    await sleep(1_000);
    expect(tags("pausable")).not.toContain("p3");
    expect(await cli("functions", "resume", DEV_ENVIRONMENT_ID, fnId)).toBe(`${fnId} resumed\n`);
    await allEnded([id as string]);
    expect(await cli("functions", "status", DEV_ENVIRONMENT_ID, fnId)).toBe(`${fnId} is running\n`);
  });

  it("rateLimit starts `limit` runs per period and skips the rest, saying why", async () => {
    const ids = await send("flow/rated", { tag: "r1" }, { tag: "r2" }, { tag: "r3" });
    await allEnded(ids.slice(0, 2));
    expect(await skipsOf(ids[2] as string)).toEqual([
      expect.objectContaining({
        function_id: `${APP}-rated`,
        reason: "rate_limited",
        detail: "rate limit of 2 runs per 60s reached",
      }),
    ]);
    expect(await runsOf(ids[2] as string)).toEqual([]);
    expect(tags("rated").sort()).toEqual(["r1", "r2"]);
  });

  it("idempotency runs one run per key value in 24 h, and says which run had it", async () => {
    const [first, dup, other] = await send(
      "flow/once",
      { order: 1, tag: "o1" },
      { order: 1, tag: "o1-again" },
      { order: 2, tag: "o2" },
    );
    await allEnded([first as string, other as string]);
    const [run] = await waitForEndedRuns(cluster.apiUrl, first as string);
    expect(await skipsOf(dup as string)).toEqual([
      expect.objectContaining({
        reason: "idempotent",
        detail: `run ${run?.run_id} has the same idempotency key`,
      }),
    ]);
    expect(tags("once").sort()).toEqual(["o1", "o2"]);
  });

  it("singleton skip drops an event whose key has a run in progress (sleeping counts), not another key's", async () => {
    const [a] = await send("flow/single-skip", { user: "u1", tag: "a" });
    await waitFor("a's first step", () => started.has("a"));
    const [b, c] = await send("flow/single-skip", { user: "u1", tag: "b" }, { user: "u2", tag: "c" });
    await allEnded([a as string, c as string]);
    expect((await skipsOf(b as string))[0]).toMatchObject({ reason: "singleton" });
    expect(tags("single-skip").sort()).toEqual(["a", "c"]);
  });

  it("singleton cancel cancels the running run and starts the new one", async () => {
    const [old] = await send("flow/single-cancel", { tag: "old" });
    await waitFor("the old run's first step", () => started.has("old"));
    const [fresh] = await send("flow/single-cancel", { tag: "new" });
    const [oldRun] = await waitForEndedRuns(cluster.apiUrl, old as string);
    expect(oldRun?.status).toBe("Cancelled");
    await waitFor("the new run's first step", () => started.has("new"));
    expect((await runsOf(fresh as string)).map((r) => r.status)).toEqual(["Running"]);
  });

  it("debounce starts one run, with the last event, once events stop for the period", async () => {
    const ids = await send("flow/debounced", { tag: "d1" }, { tag: "d2" });
    await sleep(300);
    const [last] = await send("flow/debounced", { tag: "d3" });
    await allEnded([last as string]);
    expect(tags("debounced")).toEqual(["d3"]);
    expect(await runsOf(ids[0] as string)).toEqual([]);
  });

  it("batchEvents starts a full batch at once and the rest at the timeout, each run with its events", async () => {
    const ids = await send("flow/batched", { tag: "b1" }, { tag: "b2" }, { tag: "b3" }, { tag: "b4" });
    await waitFor("the full batch's run", () => tags("batched").includes("b1,b2,b3"), { timeoutMs: 10_000 });
    // The fourth event waits for its batch's timeout (2 s), then runs alone.
    expect(tags("batched")).toEqual(["b1,b2,b3"]);
    await allEnded([ids[0] as string, ids[3] as string]);
    expect(tags("batched")).toEqual(["b1,b2,b3", "b4"]);
  });

  it("refuses at sync a config Stepline cannot enforce, naming the function and the field", async () => {
    const opts = { sdk: "v4" as const, id: "bad-flow-app", baseUrl: cluster.apiUrl };
    const client = makeClient(opts);
    const bad = await serveSdkApp(opts, client, [
      client.createFunction(
        { id: "too-slow", triggers: [{ event: "flow/never" }], throttle: { limit: 1, period: "30d" } },
        async () => null,
      ),
    ]);
    try {
      const res = await bad.sync();
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(JSON.stringify(res.body)).toContain(
        "function bad-flow-app-too-slow: throttle.period must be from 1s to 7d",
      );
    } finally {
      await bad.close();
    }
  });
});
