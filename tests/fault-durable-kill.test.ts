// Fault test: SIGKILL the executor, the queue and the runner (one at a time) while runs sleep,
// wait for an event and wait on an invoked child. Every run finishes once, the events sent while
// a service was down still resume their waits, and no saved step runs again.
//
// The kill must land while every run is parked, with no step in flight: a step the app ran but
// whose result the dead service never saved runs again by design (at-least-once until saved).
// So each park is observed (a wait in the index, a Sleeping step in the run's history) before
// the kill, the invoked child waits for an event the test sends after the restart, and the one
// timer left, the sleepy runs' nap, starts last.

import { callUnary, createClient } from "@stepline/internal/grpc";
import { waitFor } from "@stepline/internal/testing";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventRuns, sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster, ServiceName } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";

const DEV_ENV = "00000000000000000000DEVENV";
/** Long enough that the sleepy runs are still asleep when the kill lands (checked before it). */
const NAP = "6s";
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
    await s.waitForEvent("gate", {
      event: "fault/child-go",
      timeout: "2m",
      if: "async.data.tag == event.data.tag",
    });
    return s.run("work", step(event.data.tag, "work"));
  });
  const fns = [
    child,
    client.createFunction(
      { id: "sleepy", triggers: [{ event: "fault/sleepy" }] },
      async ({ event, step: s }: any) => {
        await s.run("before", step(event.data.tag, "before"));
        await s.sleep("nap", NAP);
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

/** The waits in the index for events named `eventName`, as the executor lists them. */
const waits = async (eventName: string) =>
  (
    await callUnary(executor.listPauses.bind(executor), {
      queries: [{ environmentId: DEV_ENV, eventName }],
    })
  ).pauses;

/** True once every tag has a wait for `eventName` in the index. */
const allWaiting = async (eventName: string, tags: string[]) => {
  const listed = await waits(eventName);
  return tags.every((t) => listed.some((p) => p.triggerEventJson.includes(`"${t}"`)));
};

/** True once the event's run has a step `name` recorded as Sleeping (saved, and its timer set). */
const asleep = async (eventId: string, name: string) => {
  const [run] = await eventRuns(cluster.apiUrl, eventId);
  if (!run) return false;
  const res = await fetch(`${cluster.apiUrl}/v1/runs/${run.run_id}/steps`);
  const steps = ((await res.json()) as { data: Array<{ name: string; status: string }> }).data;
  return steps.some((st) => st.name === name && st.status === "Sleeping");
};

describe.each<ServiceName>(["executor", "queue", "runner"])("SIGKILL of the %s", (service) => {
  it("lets every sleeping, waiting and invoking run finish once, with no saved step run again", async () => {
    const tags = Array.from({ length: 3 }, (_, i) => `${service}-${i}`);
    const sent: Array<{ kind: string; tag: string; eventId: string }> = [];
    const send = async (kind: string) => {
      for (const t of tags) {
        const tag = `${kind}-${t}`;
        const res = await sendEvents(cluster.apiUrl, "any-key", { name: `fault/${kind}`, data: { tag } });
        expect(res.status).toBe(200);
        sent.push({ kind, tag, eventId: res.body.ids[0] });
      }
    };
    const tagsOf = (kind: string) => sent.filter((s) => s.kind === kind).map((s) => s.tag);
    const parked = { timeoutMs: 30_000, intervalMs: 50 };

    // Runs parked on an event: the waiters, and the parents waiting on children that wait.
    await send("waiter");
    await send("parent");
    const childTags = tagsOf("parent").map((t) => `${t}-child`);
    await waitFor("the waiters' waits to be indexed", () => allWaiting("fault/go", tagsOf("waiter")), parked);
    await waitFor(
      "the children's waits to be indexed",
      () => allWaiting("fault/child-go", childTags),
      parked,
    );
    // Then the sleepers, whose timers run from now.
    await send("sleepy");
    for (const s of sent.filter((x) => x.kind === "sleepy")) {
      await waitFor(`${s.tag} to be asleep`, () => asleep(s.eventId, "nap"), parked);
    }
    expect(
      sent.filter((s) => counts.has(`${s.tag}:after`)).map((s) => s.tag),
      "runs past their park before the kill (the machine parked them too slowly for the nap)",
    ).toEqual([]);

    await cluster.kill(service, "SIGKILL");
    // Sent while the service is down: accepted by event-api, matched once it is back.
    for (const tag of tagsOf("waiter")) {
      const res = await sendEvents(cluster.apiUrl, "any-key", { name: "fault/go", data: { tag } });
      expect(res.status).toBe(200);
    }
    await cluster.restart(service);
    for (const tag of childTags) {
      const res = await sendEvents(cluster.apiUrl, "any-key", { name: "fault/child-go", data: { tag } });
      expect(res.status).toBe(200);
    }

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
