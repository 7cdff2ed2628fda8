// The app the durable suite serves: functions written with the official SDK (v4 or v3) that record
// what their step bodies saw, so tests can tell how often and when each step ran.

import { NonRetriableError as NonRetriable4, referenceFunction as reference4 } from "inngest";
import { NonRetriableError as NonRetriable3, referenceFunction as reference3 } from "inngest-v3";
import type { SdkVersion } from "./sdk-app.js";

/** The dev-mode environment every event of the durable suite lands in. */
export const DEV_ENV = "00000000000000000000DEVENV";

/** What the app's step bodies saw: how often each ran, and when each began and ended. */
export interface Trace {
  count: Map<string, number>;
  spans: Map<string, Array<{ start: number; end: number }>>;
  runIds: Map<string, string>;
  /** What onFailure handlers and a function.finished trigger saw, by the trigger's tag. */
  failures: Map<string, string>;
  finished: Map<string, any>;
  cancelled: Map<string, string>;
}

export function defineApp(sdk: SdkVersion, client: any, trace: Trace, otherAppId: string) {
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
