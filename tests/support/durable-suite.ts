// The durable-primitives end-to-end suite: sleeps, parallel steps and waits for events (more
// step tools join it as they land), on a real cluster in dev mode with functions served by the official SDK. Each SDK
// major runs it from its own test file (v3 and v4 cannot share one process).

import { callUnary, createClient } from "@stepline/internal/grpc";
import { waitFor } from "@stepline/internal/testing";
import type { Pause } from "@stepline/proto/stepline/executor/v1/executor_service";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";

const execFileP = promisify(execFile);
const CLI = fileURLToPath(new URL("../../services/event-api/dist/cli.js", import.meta.url));

/** The dev-mode environment every event of this suite lands in. */
const DEV_ENV = "00000000000000000000DEVENV";

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { NonRetriableError as NonRetriable4, referenceFunction as reference4 } from "inngest";
import { NonRetriableError as NonRetriable3, referenceFunction as reference3 } from "inngest-v3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventRuns, getRun, sendEvents, waitForEndedRuns } from "./api.js";
import type { Cluster } from "./cluster.js";
import { startCluster } from "./cluster.js";
import type { SdkApp, SdkVersion } from "./sdk-app.js";
import { makeClient, serveAndSync } from "./sdk-app.js";

/** What the app's step bodies saw: how often each ran, and when each began and ended. */
interface Trace {
  count: Map<string, number>;
  spans: Map<string, Array<{ start: number; end: number }>>;
  runIds: Map<string, string>;
  /** What onFailure handlers and a function.finished trigger saw, by the trigger's tag. */
  failures: Map<string, string>;
  finished: Map<string, any>;
  cancelled: Map<string, string>;
}

function defineApp(sdk: SdkVersion, client: any, trace: Trace, otherAppId: string) {
  const fn = (id: string, handler: (ctx: any) => Promise<unknown>) =>
    sdk === "v4"
      ? client.createFunction({ id, retries: 3, triggers: [{ event: `${sdk}/${id}` }] }, handler)
      : client.createFunction({ id, retries: 3 }, { event: `${sdk}/${id}` }, handler);
  /** A step body that counts itself and records its span under `key`. */
  const body =
    (key: string, ms: number, value: () => unknown = () => key) =>
    async () => {
      trace.count.set(key, (trace.count.get(key) ?? 0) + 1);
      const start = Date.now();
      if (ms > 0) await new Promise((r) => setTimeout(r, ms));
      const spans = trace.spans.get(key) ?? [];
      spans.push({ start, end: Date.now() });
      trace.spans.set(key, spans);
      return value();
    };
  const referenceFunction: (ref: { appId: string; functionId: string }) => unknown =
    sdk === "v4" ? (reference4 as any) : (reference3 as any);
  const NonRetriable = sdk === "v4" ? NonRetriable4 : NonRetriable3;
  const child = fn("child", async ({ event, step }) => {
    const doubled = await step.run(
      "double",
      body(`${event.data.tag}:child`, 0, () => event.data.n * 2),
    );
    if (event.data.fail) throw new NonRetriable(`child of ${event.data.tag} broke`);
    if (event.data.nap) await step.sleep("nap", event.data.nap);
    return { doubled, invoker: event.data._inngest?.correlation_id ? "invoked" : "event" };
  });
  /** Invokes `target` and returns what came back, or what was thrown. */
  const invoker = (id: string, target: () => unknown) =>
    fn(id, async ({ event, step }) => {
      try {
        return {
          ok: await step.invoke("call", {
            function: target(),
            data: { tag: event.data.tag, n: event.data.n, fail: event.data.fail, nap: event.data.nap },
            ...(event.data.timeout ? { timeout: event.data.timeout } : {}),
          }),
        };
      } catch (err) {
        return { caught: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
      }
    });
  /** Runs a step, then sleeps long enough to be cancelled; the step after the sleep must never run. */
  const sleepy = async ({ event, step, runId }: any) => {
    const tag = event.data.tag as string;
    trace.runIds.set(tag, runId);
    await step.run("first", body(`${tag}:first`, 0));
    await step.sleep("long", event.data.nap ?? "1h");
    await step.run("never", body(`${tag}:never`, 0));
    return "finished";
  };
  const cancelOn = [{ event: `${sdk}/stop`, if: "async.data.tag == event.data.tag" }];
  return [
    sdk === "v4"
      ? client.createFunction(
          { id: "cancellable", cancelOn, triggers: [{ event: `${sdk}/cancellable` }] },
          sleepy,
        )
      : client.createFunction({ id: "cancellable", cancelOn }, { event: `${sdk}/cancellable` }, sleepy),
    sdk === "v4"
      ? client.createFunction(
          { id: "bounded", timeouts: { finish: "2s" }, triggers: [{ event: `${sdk}/bounded` }] },
          sleepy,
        )
      : client.createFunction(
          { id: "bounded", timeouts: { finish: "2s" } },
          { event: `${sdk}/bounded` },
          sleepy,
        ),
    sdk === "v4"
      ? client.createFunction(
          {
            id: "cancel-watcher",
            triggers: [
              {
                event: "inngest/function.cancelled",
                if: `event.data.function_id == 'durable-${sdk}-cancellable'`,
              },
            ],
          },
          async ({ event }: any) => {
            trace.cancelled.set(event.data.event.data.tag, event.data.run_id);
          },
        )
      : client.createFunction(
          { id: "cancel-watcher" },
          {
            event: "inngest/function.cancelled",
            if: `event.data.function_id == 'durable-${sdk}-cancellable'`,
          },
          async ({ event }: any) => {
            trace.cancelled.set(event.data.event.data.tag, event.data.run_id);
          },
        ),
    child,
    invoker("invoker", () => child),
    invoker("invoke-remote", () => referenceFunction({ appId: otherAppId, functionId: "remote" })),
    invoker("invoke-missing", () => referenceFunction({ appId: otherAppId, functionId: "missing" })),
    sdk === "v4"
      ? client.createFunction(
          {
            id: "fragile",
            retries: 0,
            triggers: [{ event: `${sdk}/fragile` }],
            onFailure: async ({ event, error }: any) => {
              trace.failures.set(event.data.event.data.tag, `${error.message} @ ${event.data.function_id}`);
            },
          },
          async () => {
            throw new Error("fragile broke");
          },
        )
      : client.createFunction(
          {
            id: "fragile",
            retries: 0,
            onFailure: async ({ event, error }: any) => {
              trace.failures.set(event.data.event.data.tag, `${error.message} @ ${event.data.function_id}`);
            },
          },
          { event: `${sdk}/fragile` },
          async () => {
            throw new Error("fragile broke");
          },
        ),
    sdk === "v4"
      ? client.createFunction(
          {
            id: "watcher",
            triggers: [
              { event: "inngest/function.finished", if: `event.data.function_id == 'durable-${sdk}-child'` },
            ],
          },
          async ({ event }: any) => {
            trace.finished.set(event.data.event.data.tag, event.data);
          },
        )
      : client.createFunction(
          { id: "watcher" },
          { event: "inngest/function.finished", if: `event.data.function_id == 'durable-${sdk}-child'` },
          async ({ event }: any) => {
            trace.finished.set(event.data.event.data.tag, event.data);
          },
        ),
    fn("sleeper", async ({ event, step, runId }) => {
      const tag = event.data.tag as string;
      trace.runIds.set(tag, runId);
      const before = await step.run("before", body(`${tag}:before`, 0, Date.now));
      await step.sleep("nap", event.data.duration);
      const after = await step.run("after", body(`${tag}:after`, 0, Date.now));
      return { before, after };
    }),
    fn("sleep-until", async ({ event, step }) => {
      await step.sleepUntil("until", new Date(event.data.at));
      return step.run("woke", body(`${event.data.tag}:woke`, 0, Date.now));
    }),
    fn("parallel", async ({ event, step }) => {
      const tag = event.data.tag as string;
      const [a, b] = await Promise.all([
        step.run(
          "p1",
          body(`${tag}:p1`, 400, () => 1),
        ),
        step.run(
          "p2",
          body(`${tag}:p2`, 400, () => 2),
        ),
      ]);
      return step.run(
        "sum",
        body(`${tag}:sum`, 0, () => a + b),
      );
    }),
    fn("parallel-mixed", async ({ event, step }) => {
      const tag = event.data.tag as string;
      const [work] = await Promise.all([
        step.run(
          "work",
          body(`${tag}:work`, 0, () => "worked"),
        ),
        step.sleep("pause", "1s"),
      ]);
      return step.run(
        "after",
        body(`${tag}:after`, 0, () => `${work} and slept`),
      );
    }),
    fn("parallel-flaky", async ({ event, step }) => {
      const tag = event.data.tag as string;
      return Promise.all([
        step.run(
          "steady",
          body(`${tag}:steady`, 0, () => "steady"),
        ),
        step.run("shaky", async () => {
          const n = (trace.count.get(`${tag}:shaky`) ?? 0) + 1;
          trace.count.set(`${tag}:shaky`, n);
          if (n < 2) throw new Error("shaky fails once");
          return "shaky";
        }),
      ]);
    }),
    fn("waiter", async ({ event, step }) => {
      const tag = event.data.tag as string;
      await step.run("armed", body(`${tag}:armed`, 0, Date.now));
      const paid = await step.waitForEvent("paid", {
        event: `${sdk}/paid`,
        timeout: event.data.timeout ?? "30s",
        ...(event.data.match ? { match: "data.order" } : { if: "async.data.order == event.data.order" }),
      });
      await step.run("after", body(`${tag}:after`, 0));
      return paid ? { order: paid.data.order, name: paid.name } : null;
    }),
    fn("crowd", async ({ event, step }) => {
      const tag = event.data.tag as string;
      const go = await step.waitForEvent("go", {
        event: `${sdk}/go`,
        timeout: "1h",
        if: "async.data.group == event.data.group",
      });
      await step.run("after", body(`${tag}:after`, 0));
      return go?.data.group;
    }),
    fn("oversleep", async ({ step }) => {
      await step.sleep("forever", "400d");
      return "unreachable";
    }),
  ];
}

/** Registers the suite for one SDK major, against a cluster of its own. */
export function durableSuite(sdk: SdkVersion): void {
  let cluster: Cluster;
  let app: SdkApp;
  let executor: ExecutorServiceClient;
  const trace: Trace = {
    count: new Map(),
    spans: new Map(),
    runIds: new Map(),
    failures: new Map(),
    finished: new Map(),
    cancelled: new Map(),
  };
  let other: SdkApp;
  let n = 0;
  const tag = () => `${sdk}-${++n}`;
  const send = async (fnId: string, data: Record<string, unknown>) => {
    const sent = await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/${fnId}`, data });
    expect(sent.status).toBe(200);
    return sent.body.ids[0] as string;
  };

  beforeAll(async () => {
    cluster = await startCluster({
      name: `durable${sdk}`,
      dev: true,
      // Few slots on purpose: sleeping and waiting runs must hold none of them.
      env: { STEPLINE_EXECUTOR_BACKOFF_BASE_MS: "50", STEPLINE_EXECUTOR_CONCURRENCY: "4" },
    });
    executor = createClient(ExecutorServiceClient, cluster.executorAddr);
    const id = `durable-${sdk}`;
    const otherId = `durable-${sdk}-other`;
    const client = makeClient({ sdk, id, baseUrl: cluster.apiUrl });
    app = await serveAndSync(
      { sdk, id, baseUrl: cluster.apiUrl },
      client,
      defineApp(sdk, client, trace, otherId),
    );
    // A second app of the environment, whose function the first one invokes.
    const otherClient = makeClient({ sdk, id: otherId, baseUrl: cluster.apiUrl });
    const remote =
      sdk === "v4"
        ? otherClient.createFunction(
            { id: "remote", triggers: [] },
            async ({ event }: any) => `remote got ${event.data.n}`,
          )
        : otherClient.createFunction(
            { id: "remote" },
            { event: `${sdk}/remote` },
            async ({ event }: any) => `remote got ${event.data.n}`,
          );
    other = await serveAndSync({ sdk, id: otherId, baseUrl: cluster.apiUrl }, otherClient, [remote]);
  });

  afterAll(async () => {
    executor?.close();
    await other?.close();
    await app?.close();
    await cluster?.stop();
  });

  /** The waits on this suite's event names, through ExecutorService.ListPauses (dev environment). */
  const listPauses = async () => {
    const queries = [`${sdk}/paid`, `${sdk}/go`].map((eventName) => ({ environmentId: DEV_ENV, eventName }));
    return (await callUnary(executor.listPauses.bind(executor), { queries })).pauses;
  };
  const waitForPauses = (count: number, which: (p: Pause) => boolean, timeoutMs = 20_000) =>
    waitFor(`${count} waits to be indexed`, async () => (await listPauses()).filter(which).length >= count, {
      timeoutMs,
      intervalMs: 100,
    });

  describe(`durable step tools with the official SDK ${sdk}`, () => {
    it("sleeps: the run is Running with no end while it sleeps, and resumes once the time has passed", async () => {
      const t = tag();
      const eventId = await send("sleeper", { tag: t, duration: "3s" });
      await waitFor("the step before the sleep", () => trace.count.get(`${t}:before`) === 1, {
        timeoutMs: 20_000,
      });
      const runId = await waitFor("the run id", () => trace.runIds.get(t));
      const sleeping = await waitFor(
        "the sleeping run in history",
        async () => {
          const r = await getRun(cluster.apiUrl, runId).catch(() => undefined);
          return r?.status === "Running" ? r : undefined;
        },
        { timeoutMs: 10_000 },
      );
      expect(sleeping.ended_at).toBeNull();
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      const { before, after } = (run?.output ?? {}) as { before: number; after: number };
      const late = after - before - 3_000;
      expect(late).toBeGreaterThanOrEqual(0);
      // Resumed by its own wake-up, not by a periodic sweep (STEPLINE_QUEUE_SWEEP_MS is 5 s).
      expect(late).toBeLessThan(2_000);
      expect([trace.count.get(`${t}:before`), trace.count.get(`${t}:after`)]).toEqual([1, 1]);
    });

    it("sleeps until a date", async () => {
      const t = tag();
      const at = Date.now() + 2_000;
      const eventId = await send("sleep-until", { tag: t, at: new Date(at).toISOString() });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output as number).toBeGreaterThanOrEqual(at);
    });

    it("runs parallel steps at the same time, each once, and continues when both are done", async () => {
      const t = tag();
      const eventId = await send("parallel", { tag: t });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toBe(3);
      expect([`${t}:p1`, `${t}:p2`, `${t}:sum`].map((k) => trace.count.get(k))).toEqual([1, 1, 1]);
      const [p1] = trace.spans.get(`${t}:p1`) ?? [];
      const [p2] = trace.spans.get(`${t}:p2`) ?? [];
      const [sum] = trace.spans.get(`${t}:sum`) ?? [];
      // Overlapping spans: the second began before the first ended.
      expect(Math.max(p1?.start ?? 0, p2?.start ?? 0)).toBeLessThan(Math.min(p1?.end ?? 0, p2?.end ?? 0));
      expect(sum?.start).toBeGreaterThanOrEqual(Math.max(p1?.end ?? 0, p2?.end ?? 0));
    });

    it("runs a step and a sleep in parallel and goes on once both are done", async () => {
      const t = tag();
      const sentAt = Date.now();
      const eventId = await send("parallel-mixed", { tag: t });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toBe("worked and slept");
      expect([trace.count.get(`${t}:work`), trace.count.get(`${t}:after`)]).toEqual([1, 1]);
      expect(trace.spans.get(`${t}:after`)?.[0]?.start).toBeGreaterThanOrEqual(sentAt + 1_000);
    });

    it("retries a failing parallel step alone", async () => {
      const t = tag();
      const eventId = await send("parallel-flaky", { tag: t });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toEqual(["steady", "shaky"]);
      expect([trace.count.get(`${t}:steady`), trace.count.get(`${t}:shaky`)]).toEqual([1, 2]);
    });

    it("waits for an event: resumes with the first one whose `if` matches, received after the wait began", async () => {
      const t = tag();
      const order = `${t}-order`;
      // Sent before the run exists, so before its wait began: it must not count.
      await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/paid`, data: { order } });
      const eventId = await send("waiter", { tag: t, order });
      await waitFor("the wait to be armed", () => trace.count.get(`${t}:armed`) === 1, { timeoutMs: 20_000 });
      await waitForPauses(1, (p) => p.triggerEventJson.includes(order));
      await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/paid`, data: { order: `${order}-other` } });
      await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/paid`, data: { order } });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toEqual({ order, name: `${sdk}/paid` });
      expect(trace.count.get(`${t}:after`)).toBe(1);
    });

    it("waits with `match`, and resumes with null at the timeout when nothing matches", async () => {
      const matched = tag();
      const matchedId = await send("waiter", { tag: matched, order: matched, match: true });
      const timedOut = tag();
      const timedOutId = await send("waiter", { tag: timedOut, order: timedOut, timeout: "2s" });
      await waitFor(
        "both waits to be armed",
        () => trace.count.get(`${timedOut}:armed`) === 1 && trace.count.get(`${matched}:armed`) === 1,
        { timeoutMs: 20_000 },
      );
      await waitForPauses(1, (p) => p.triggerEventJson.includes(matched));
      await waitForPauses(1, (p) => p.triggerEventJson.includes(timedOut));
      await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/paid`, data: { order: matched } });
      const [m] = await waitForEndedRuns(cluster.apiUrl, matchedId);
      expect(m?.output).toEqual({ order: matched, name: `${sdk}/paid` });
      const [t] = await waitForEndedRuns(cluster.apiUrl, timedOutId);
      expect(t?.status).toBe("Completed");
      expect(t?.output).toBeNull();
      expect([trace.count.get(`${matched}:after`), trace.count.get(`${timedOut}:after`)]).toEqual([1, 1]);
    });

    it("resumes each wait exactly once when its event and its timeout arrive together", async () => {
      // Each run's event is sent within ±200 ms of its wait's 2 s timeout; whichever wins, the
      // code after the wait runs once and the result is the event or null, never both.
      const tags = Array.from({ length: 8 }, () => tag());
      const ids = await Promise.all(tags.map((t) => send("waiter", { tag: t, order: t, timeout: "2s" })));
      await Promise.all(
        tags.map(async (t, i) => {
          const armedAt = await waitFor(`${t} armed`, () => trace.spans.get(`${t}:armed`)?.[0]?.end, {
            timeoutMs: 20_000,
          });
          const at = armedAt + 2_000 + (i % 2 === 0 ? -1 : 1) * 25 * i;
          await new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));
          await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/paid`, data: { order: t } });
        }),
      );
      for (const [i, t] of tags.entries()) {
        const [run] = await waitForEndedRuns(cluster.apiUrl, ids[i] as string);
        expect(run?.status).toBe("Completed");
        expect([null, JSON.stringify({ order: t, name: `${sdk}/paid` })]).toContain(
          run?.output === null ? null : JSON.stringify(run?.output),
        );
        expect(trace.count.get(`${t}:after`)).toBe(1);
      }
    });

    it("with 1,000 runs waiting on one event name, one event resumes exactly the 10 whose `if` it matches", async () => {
      const base = tag();
      const groups = Array.from({ length: 1_000 }, (_, i) => i % 100);
      const sent = await sendEvents(
        cluster.apiUrl,
        "any-key",
        groups.map((group, i) => ({ name: `${sdk}/crowd`, data: { tag: `${base}-${i}`, group } })),
      );
      expect(sent.status).toBe(200);
      await waitForPauses(1_000, (p) => p.eventName === `${sdk}/go`, 120_000);
      await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/go`, data: { group: 7 } });
      // A later event on the same partition (one account) proves the first was fully handled.
      const sentinel = tag();
      const sentinelId = await send("crowd", { tag: sentinel, group: 1_000 });
      await waitForPauses(1, (p) => p.eventName === `${sdk}/go` && p.triggerEventJson.includes(sentinel));
      await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/go`, data: { group: 1_000 } });
      await waitForEndedRuns(cluster.apiUrl, sentinelId);
      const resumed = groups.flatMap((group, i) => (trace.count.get(`${base}-${i}:after`) ? [group] : []));
      expect(resumed).toEqual(Array.from({ length: 10 }, () => 7));
      expect((await listPauses()).filter((p) => p.eventName === `${sdk}/go`)).toHaveLength(990);
    }, 180_000);

    it("invokes a function of the same app as a child run and resumes with its output", async () => {
      const t = tag();
      const eventId = await send("invoker", { tag: t, n: 21 });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toEqual({ ok: { doubled: 42, invoker: "invoked" } });
      expect(trace.count.get(`${t}:child`)).toBe(1);
    });

    it("invokes a function of another app of the environment", async () => {
      const eventId = await send("invoke-remote", { tag: tag(), n: 5 });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.output).toEqual({ ok: "remote got 5" });
    });

    it("hands the child's error to the parent as a thrown error", async () => {
      const t = tag();
      const eventId = await send("invoker", { tag: t, n: 1, fail: true });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(JSON.stringify(run?.output)).toContain(`child of ${t} broke`);
    });

    it("throws a timeout error in the parent when the child does not finish in time", async () => {
      const t = tag();
      const eventId = await send("invoker", { tag: t, n: 1, nap: "30s", timeout: "2s" });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(JSON.stringify(run?.output)).toContain("Timed out waiting for invoked function to complete");
    });

    it("throws a clear error in the parent when the invoked function does not exist", async () => {
      const eventId = await send("invoke-missing", { tag: tag(), n: 1 });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(JSON.stringify(run?.output)).toContain(`no function with that id is synced`);
    });

    it("runs onFailure handlers with the error, and functions triggered by inngest/function.finished", async () => {
      const t = tag();
      const failed = await send("fragile", { tag: t });
      const [run] = await waitForEndedRuns(cluster.apiUrl, failed);
      expect(run?.status).toBe("Failed");
      const seen = await waitFor("the onFailure handler", () => trace.failures.get(t), { timeoutMs: 20_000 });
      expect(seen).toBe(`fragile broke @ durable-${sdk}-fragile`);

      const c = tag();
      await send("child", { tag: c, n: 4 });
      const finished = await waitFor("the function.finished trigger", () => trace.finished.get(c), {
        timeoutMs: 20_000,
      });
      expect(finished).toMatchObject({
        function_id: `durable-${sdk}-child`,
        result: { doubled: 8, invoker: "event" },
        _inngest: { status: "Completed" },
      });
    });

    /** Starts a `cancellable` (or other sleepy) run and waits until it sleeps; returns its ids. */
    const sleepingRun = async (fnId = "cancellable") => {
      const t = tag();
      const eventId = await send(fnId, { tag: t });
      await waitFor(`${t} to sleep`, () => trace.count.get(`${t}:first`) === 1, { timeoutMs: 20_000 });
      const runId = await waitFor(`${t}'s run id`, () => trace.runIds.get(t));
      return { t, eventId, runId };
    };

    it("holds no executor slot while runs sleep: with 4 slots, 8 sleeping runs leave room for a new one", async () => {
      const sleeping = [];
      for (let i = 0; i < 8; i++) sleeping.push(await sleepingRun());
      const quick = await send("child", { tag: tag(), n: 3 });
      const [run] = await waitForEndedRuns(cluster.apiUrl, quick, { timeoutMs: 10_000 });
      expect(run?.output).toEqual({ doubled: 6, invoker: "event" });
      // History is written in batches: wait until each sleeping run is listed, then it must be Running.
      for (const s of sleeping) {
        const [listed] = await waitFor(`${s.t} in history`, async () => {
          const runs = await eventRuns(cluster.apiUrl, s.eventId);
          return runs.length > 0 ? runs : undefined;
        });
        expect(listed?.status).toBe("Running");
      }
    });

    it("cancels a run when its cancelOn event matches, sends inngest/function.cancelled, and calls the app no more", async () => {
      const { t, eventId, runId } = await sleepingRun();
      // Another run's cancel event does not touch this one.
      await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/stop`, data: { tag: `${t}-other` } });
      await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/stop`, data: { tag: t } });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Cancelled");
      expect(run?.ended_at).not.toBeNull();
      const seen = await waitFor("the function.cancelled trigger", () => trace.cancelled.get(t), {
        timeoutMs: 20_000,
      });
      expect(seen).toBe(runId);
      expect(trace.count.get(`${t}:never`)).toBeUndefined();
    });

    it("cancels a run with DELETE /v1/runs/:id; a second DELETE is fine, and an ended run answers 409", async () => {
      const { t, eventId, runId } = await sleepingRun();
      const del = () => fetch(`${cluster.apiUrl}/v1/runs/${runId}`, { method: "DELETE" });
      const first = await del();
      expect(first.status).toBe(200);
      expect(await first.json()).toEqual({ data: { run_id: runId, status: "Cancelled" } });
      expect((await del()).status).toBe(200);
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Cancelled");
      expect(trace.count.get(`${t}:never`)).toBeUndefined();

      const done = await send("child", { tag: tag(), n: 1 });
      const [ended] = await waitForEndedRuns(cluster.apiUrl, done);
      const late = await fetch(`${cluster.apiUrl}/v1/runs/${ended?.run_id}`, { method: "DELETE" });
      expect(late.status).toBe(409);
      expect(
        (await fetch(`${cluster.apiUrl}/v1/runs/01J000000000000000000NOPE9`, { method: "DELETE" })).status,
      ).toBe(404);
    });

    it("cancels a function's running runs in bulk with the CLI", async () => {
      const runs = [await sleepingRun(), await sleepingRun()];
      const { stdout } = await execFileP(process.execPath, [
        CLI,
        "--executor",
        cluster.executorAddr,
        "runs",
        "cancel-function",
        DEV_ENV,
        `durable-${sdk}-cancellable`,
      ]);
      expect(stdout).toMatch(/^\d+ runs of durable-.*-cancellable cancelled\n$/);
      for (const r of runs) {
        const [run] = await waitForEndedRuns(cluster.apiUrl, r.eventId);
        expect(run?.status).toBe("Cancelled");
        expect(trace.count.get(`${r.t}:never`)).toBeUndefined();
      }
    });

    it("cancels a run that outlives timeouts.finish", async () => {
      const { t, eventId } = await sleepingRun("bounded");
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Cancelled");
      expect(trace.count.get(`${t}:never`)).toBeUndefined();
    });

    it("gives a step.sendEvent's events ids from the run and step, so a retried step sends nothing twice", async () => {
      const id = `durable-${sdk}-sender`;
      const t = tag();
      const heard: string[] = [];
      let lost = 0;
      // Every answer to the first five sends is lost after Kafka took the events: the SDK's own
      // retries fail, the step fails, and the executor retries the step, which sends again.
      const lossy: typeof fetch = async (input, init) => {
        const res = await fetch(input, init);
        if (String(input).includes("/e/") && String(init?.body).includes(t) && lost < 5) {
          lost++;
          throw new Error("connection reset after the send");
        }
        return res;
      };
      const c = makeClient({ sdk, id, baseUrl: cluster.apiUrl, fetch: lossy });
      const on = (fnId: string, event: string, handler: (ctx: any) => Promise<unknown>) =>
        sdk === "v4"
          ? c.createFunction({ id: fnId, retries: 3, triggers: [{ event }] }, handler)
          : c.createFunction({ id: fnId, retries: 3 }, { event }, handler);
      const sender = await serveAndSync({ sdk, id, baseUrl: cluster.apiUrl }, c, [
        on("announcer", `${sdk}/announce`, async ({ event, step }) =>
          step.sendEvent("announce", [
            { name: `${sdk}/announced`, data: { tag: event.data.tag, n: 1 } },
            { name: `${sdk}/announced`, data: { tag: event.data.tag, n: 2 } },
          ]),
        ),
        on("listener", `${sdk}/announced`, async ({ event }) => {
          if (event.data.tag === t) heard.push(event.id);
        }),
      ]);
      try {
        const eventId = await send("announce", { tag: t });
        const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
        expect(run?.status).toBe("Completed");
        expect(lost).toBe(5);
        const ids = (run?.output as { ids?: string[] } | undefined)?.ids ?? [];
        expect(ids).toHaveLength(2);
        // Both events reached the listener once each, under the ids the step returned.
        await waitFor("both announcements", () => heard.length >= 2, { timeoutMs: 20_000 });
        const later = await send("announce", { tag: `${t}-later` });
        await waitFor(
          "a later announcer run",
          async () => (await eventRuns(cluster.apiUrl, later)).length > 0,
        );
        expect([...heard].sort()).toEqual([...ids].sort());
      } finally {
        await sender.close();
      }
    });

    it("runs a cron function once per tick (the cron is removed again afterwards)", async () => {
      const id = `durable-${sdk}-cron`;
      const seen = new Map<number, number>();
      const serve = async (withCron: boolean) => {
        const c = makeClient({ sdk, id, baseUrl: cluster.apiUrl });
        const handler = async ({ event }: any) => {
          seen.set(event.ts, (seen.get(event.ts) ?? 0) + 1);
          return event.data.cron;
        };
        const fnDef =
          sdk === "v4"
            ? c.createFunction(
                { id: "tick", triggers: [withCron ? { cron: "* * * * * *" } : { event: "x/never" }] },
                handler,
              )
            : c.createFunction(
                { id: "tick" },
                withCron ? { cron: "* * * * * *" } : { event: "x/never" },
                handler,
              );
        return serveAndSync({ sdk, id, baseUrl: cluster.apiUrl }, c, [fnDef]);
      };
      const ticking = await serve(true);
      try {
        await waitFor("three ticks", () => seen.size >= 3, { timeoutMs: 20_000 });
      } finally {
        await ticking.close();
      }
      const quiet = await serve(false);
      await quiet.close();
      const ticks = [...seen.keys()].sort((x, y) => x - y);
      expect([...seen.values()].every((count) => count === 1)).toBe(true);
      ticks.slice(1).forEach((t, i) => {
        expect(t - (ticks[i] ?? 0)).toBe(1_000);
      });
    });

    it("refuses a sync with an invalid cron, cancelOn or CEL expression, naming the function and field", async () => {
      const id = `durable-${sdk}-bad`;
      const c = makeClient({ sdk, id, baseUrl: cluster.apiUrl });
      const cases: Array<[object, string]> = [
        // The answer arrives JSON-encoded, quotes escaped.
        [{ cron: "61 * * * *" }, `function ${id}-bad: triggers[0].cron \\"61 * * * *\\" is not a valid cron`],
        [
          { event: "x/y", if: "event.data ==" },
          `function ${id}-bad: triggers[0].expression is not valid CEL`,
        ],
      ];
      for (const [trigger, message] of cases) {
        const bad =
          sdk === "v4"
            ? c.createFunction({ id: "bad", triggers: [trigger] }, async () => null)
            : c.createFunction({ id: "bad" }, trigger, async () => null);
        await expect(serveAndSync({ sdk, id, baseUrl: cluster.apiUrl }, c, [bad])).rejects.toThrow(message);
      }
      const badCancel =
        sdk === "v4"
          ? c.createFunction(
              { id: "bad", cancelOn: [{ event: "x/z", if: "async.x ==" }], triggers: [{ event: "x/y" }] },
              async () => null,
            )
          : c.createFunction(
              { id: "bad", cancelOn: [{ event: "x/z", if: "async.x ==" }] },
              { event: "x/y" },
              async () => null,
            );
      await expect(serveAndSync({ sdk, id, baseUrl: cluster.apiUrl }, c, [badCancel])).rejects.toThrow(
        `function ${id}-bad: cancel[0].if is not valid CEL`,
      );
    });

    it("fails a run whose wait has a timeout longer than a year, saying so", async () => {
      const eventId = await send("waiter", { tag: tag(), order: "x", timeout: "400d" });
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Failed");
      expect(JSON.stringify(run?.error)).toContain("waitForEvent timeout");
      expect(JSON.stringify(run?.error)).toContain("longer than the maximum of a year");
    });

    it("fails a run whose sleep is longer than a year, saying so", async () => {
      const eventId = await send("oversleep", {});
      const [run] = await waitForEndedRuns(cluster.apiUrl, eventId);
      expect(run?.status).toBe("Failed");
      expect(JSON.stringify(run?.error)).toContain("longer than the maximum of a year");
    });
  });
}
