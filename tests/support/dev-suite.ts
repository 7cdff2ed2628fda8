// The dev-mode end-to-end suite: real services, real Kafka/Redis/ClickHouse, functions served by
// the official inngest SDK, driven over HTTP only. Each SDK major runs it from its own test file,
// because v3 and v4 cannot serve from one process (both claim the same global async context).

import { NonRetriableError as NonRetriable4 } from "inngest";
import { NonRetriableError as NonRetriable3 } from "inngest-v3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventRuns, sendEvents, waitForEndedRuns } from "./api.js";
import type { Cluster } from "./cluster.js";
import { startCluster } from "./cluster.js";
import type { SdkApp, SdkVersion } from "./sdk-app.js";
import { makeClient, serveAndSync } from "./sdk-app.js";

/** Builds an app whose functions count how often each step body ran. */
function defineApp(sdk: SdkVersion, client: any, calls: Map<string, number>) {
  const count = (k: string) => calls.set(k, (calls.get(k) ?? 0) + 1);
  const fn = (id: string, event: string, handler: (ctx: any) => Promise<unknown>) =>
    sdk === "v4"
      ? client.createFunction({ id, triggers: [{ event }] }, handler)
      : client.createFunction({ id }, { event }, handler);
  const NonRetriable = sdk === "v4" ? NonRetriable4 : NonRetriable3;
  let flakyFailures = 0;
  return [
    fn("three-steps", `${sdk}/three`, async ({ event, step }) => {
      const a = await step.run("a", () => {
        count("a");
        return event.data.n + 1;
      });
      const b = await step.run("b", () => {
        count("b");
        return a * 2;
      });
      const c = await step.run("c", () => {
        count("c");
        return `${b}!`;
      });
      return { a, b, c };
    }),
    fn("flaky", `${sdk}/flaky`, async ({ step }) => {
      const first = await step.run("first", () => {
        count("first");
        return "ok";
      });
      const second = await step.run("second", () => {
        count("second");
        if (flakyFailures < 2) {
          flakyFailures++;
          throw new Error(`flaky failure ${flakyFailures}`);
        }
        return "recovered";
      });
      return [first, second];
    }),
    fn("doomed", `${sdk}/doomed`, async ({ step }) => {
      await step.run("only", () => {
        count("doomed");
        throw new NonRetriable("this cannot work");
      });
      return "unreachable";
    }),
  ];
}

/** Registers the suite for one SDK major, against a cluster of its own. */
export function devModeSuite(sdk: SdkVersion): void {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({
      name: `dev${sdk}`,
      dev: true,
      env: { STEPLINE_EXECUTOR_BACKOFF_BASE_MS: "50" },
    });
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  describe(`with the official SDK ${sdk} in dev mode`, () => {
    const calls = new Map<string, number>();
    let app: SdkApp;

    beforeAll(async () => {
      const client = makeClient({ sdk, id: `app-${sdk}`, baseUrl: cluster.apiUrl });
      app = await serveAndSync(
        { sdk, id: `app-${sdk}`, baseUrl: cluster.apiUrl },
        client,
        defineApp(sdk, client, calls),
      );
    });

    afterAll(async () => {
      await app?.close();
    });

    it("runs a three-step function to completion, each step once, with its output visible through the REST API", async () => {
      const sent = await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/three`, data: { n: 1 } });
      expect(sent.status).toBe(200);
      expect(sent.body.ids).toHaveLength(1);
      const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0]);
      expect(run?.status).toBe("Completed");
      expect(run?.function_id).toBe(`app-${sdk}-three-steps`);
      expect(run?.output).toEqual({ a: 2, b: 4, c: "4!" });
      expect([calls.get("a"), calls.get("b"), calls.get("c")]).toEqual([1, 1, 1]);
    });

    it("retries a step that throws twice and completes on the third attempt without re-running earlier steps", async () => {
      const sent = await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/flaky`, data: {} });
      const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0]);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toEqual(["ok", "recovered"]);
      expect(calls.get("first")).toBe(1);
      expect(calls.get("second")).toBe(3);
    });

    it("fails a run at once on NonRetriableError, with the error visible through the REST API", async () => {
      const sent = await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/doomed`, data: {} });
      const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0]);
      expect(run?.status).toBe("Failed");
      expect(JSON.stringify(run?.error)).toContain("this cannot work");
      expect(calls.get("doomed")).toBe(1);
    });

    it("starts one run when the same event id is sent twice", async () => {
      const id = `dedupe-${sdk}-${Date.now()}`;
      const first = await sendEvents(cluster.apiUrl, "any-key", {
        id,
        name: `${sdk}/three`,
        data: { n: 10 },
      });
      const second = await sendEvents(cluster.apiUrl, "any-key", {
        id,
        name: `${sdk}/three`,
        data: { n: 10 },
      });
      expect(first.body.ids).toEqual([id]);
      expect(second.body.ids).toEqual([id]);
      const runs = await waitForEndedRuns(cluster.apiUrl, id);
      expect(runs).toHaveLength(1);
      // A later event of the same name proves the second copy was consumed, not merely slow.
      const later = await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/three`, data: { n: 0 } });
      await waitForEndedRuns(cluster.apiUrl, later.body.ids[0]);
      expect(await eventRuns(cluster.apiUrl, id)).toHaveLength(1);
    });

    it("leases a new run's start straight back to the executor that created it when the engine is idle", async () => {
      const handed = 'stepline_queue_hand_offs_total{op="start",outcome="handed"}';
      const before = await cluster.metric("queue", handed);
      const sent = await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/three`, data: { n: 2 } });
      const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0]);
      expect(run?.status).toBe("Completed");
      // No round of the queue's scheduler: the enqueue leased it (services/queue/README.md).
      expect(await cluster.metric("queue", handed)).toBe(before + 1);
    });
  });
}
