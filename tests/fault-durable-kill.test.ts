// Fault test: SIGKILL the executor, the queue and the runner (one at a time) while runs sleep,
// wait for an event and wait on an invoked child. Every run finishes once, the events sent while
// a service was down still resume their waits, and no saved step runs again.

import { callUnary, createClient } from "@stepline/internal/grpc";
import { waitFor } from "@stepline/internal/testing";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster, ServiceName } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";

const DEV_ENV = "00000000000000000000DEVENV";
const counts = new Map<string, number>();
const count = (key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);

let cluster: Cluster;
let app: SdkApp;
let executor: ExecutorServiceClient;

beforeAll(async () => {
  cluster = await startCluster({
    name: "durablekill",
    dev: true,
    env: {
      STEPLINE_QUEUE_LEASE_MS: "3000",
      STEPLINE_EXECUTOR_BACKOFF_BASE_MS: "50",
      STEPLINE_EXECUTOR_BACKOFF_MAX_MS: "1000",
      STEPLINE_RUNNER_SESSION_TIMEOUT_MS: "10000",
      STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS: "5000",
      STEPLINE_RUNNER_RETRY_MAX_MS: "2000",
    },
  });
  executor = createClient(ExecutorServiceClient, cluster.executorAddr);
  const opts = { sdk: "v4" as const, id: "durable-fault", baseUrl: cluster.apiUrl };
  const client = makeClient(opts);
  const step = (tag: string, name: string) => () => {
    count(`${tag}:${name}`);
    return name;
  };
  const child = client.createFunction({ id: "child", triggers: [] }, async ({ event, step: s }: any) => {
    await s.sleep("child-nap", "3s");
    return s.run("work", step(event.data.tag, "work"));
  });
  const fns = [
    child,
    client.createFunction(
      { id: "sleepy", triggers: [{ event: "fault/sleepy" }] },
      async ({ event, step: s }: any) => {
        await s.run("before", step(event.data.tag, "before"));
        await s.sleep("nap", "4s");
        return s.run("after", step(event.data.tag, "after"));
      },
    ),
    client.createFunction(
      { id: "waiter", triggers: [{ event: "fault/waiter" }] },
      async ({ event, step: s }: any) => {
        await s.run("before", step(event.data.tag, "before"));
        const got = await s.waitForEvent("go", {
          event: "fault/go",
          timeout: "2m",
          if: "async.data.tag == event.data.tag",
        });
        await s.run("after", step(event.data.tag, "after"));
        return got?.data.tag ?? null;
      },
    ),
    client.createFunction(
      { id: "parent", triggers: [{ event: "fault/parent" }] },
      async ({ event, step: s }: any) => {
        await s.run("before", step(event.data.tag, "before"));
        const out = await s.invoke("call", { function: child, data: { tag: `${event.data.tag}-child` } });
        await s.run("after", step(event.data.tag, "after"));
        return out;
      },
    ),
  ];
  app = await serveAndSync(opts, client, fns);
});

afterAll(async () => {
  executor?.close();
  await app?.close();
  await cluster?.stop();
});

/** Waits of the waiter runs, as the executor lists them. */
const waits = async () =>
  (
    await callUnary(executor.listPauses.bind(executor), {
      queries: [{ environmentId: DEV_ENV, eventName: "fault/go" }],
    })
  ).pauses;

describe.each<ServiceName>(["executor", "queue", "runner"])("SIGKILL of the %s", (service) => {
  it("lets every sleeping, waiting and invoking run finish once, with no saved step run again", async () => {
    const tags = Array.from({ length: 3 }, (_, i) => `${service}-${i}`);
    const sent: Array<{ kind: string; tag: string; eventId: string }> = [];
    for (const kind of ["sleepy", "waiter", "parent"]) {
      for (const t of tags) {
        const tag = `${kind}-${t}`;
        const res = await sendEvents(cluster.apiUrl, "any-key", { name: `fault/${kind}`, data: { tag } });
        expect(res.status).toBe(200);
        sent.push({ kind, tag, eventId: res.body.ids[0] });
      }
    }
    // Every run is past its first step: sleeping, waiting (indexed) or waiting on its child.
    await waitFor("every first step", () => sent.every((s) => counts.get(`${s.tag}:before`) === 1), {
      timeoutMs: 30_000,
    });
    const waiterTags = sent.filter((s) => s.kind === "waiter").map((s) => s.tag);
    await waitFor(
      "the waits to be indexed",
      async () => {
        const listed = await waits();
        return waiterTags.every((t) => listed.some((p) => p.triggerEventJson.includes(t)));
      },
      { timeoutMs: 30_000 },
    );

    await cluster.kill(service, "SIGKILL");
    // Sent while the service is down: accepted by event-api, matched once it is back.
    for (const tag of waiterTags) {
      const res = await sendEvents(cluster.apiUrl, "any-key", { name: "fault/go", data: { tag } });
      expect(res.status).toBe(200);
    }
    await cluster.restart(service);

    for (const s of sent) {
      const [run] = await waitForEndedRuns(cluster.apiUrl, s.eventId, { timeoutMs: 90_000 });
      expect(run?.status, `${s.tag}`).toBe("Completed");
      expect(counts.get(`${s.tag}:before`), `${s.tag} before`).toBe(1);
      expect(counts.get(`${s.tag}:after`), `${s.tag} after`).toBe(1);
      if (s.kind === "waiter") expect(run?.output).toBe(s.tag);
      if (s.kind === "parent") {
        expect(run?.output).toBe("work");
        expect(counts.get(`${s.tag}-child:work`), `${s.tag} child`).toBe(1);
      }
    }
  }, 180_000);
});
