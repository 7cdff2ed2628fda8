// Fault test: SIGKILL the runner while a stream of events is being sent and consumed. The promise
// under test: an event the API acknowledged is never lost, and redelivery creates no duplicate
// run. Events sent while the runner is down wait in Kafka; before the restart the test rewinds
// the runner's consumer group to the start of the topic, so every event consumed before the kill
// is delivered again (the worst case of a crash between ScheduleRuns and the offset commit), and
// each must map back to the run it already has.

import { requiredEnv, waitFor } from "@stepline/internal/testing";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { eventRuns, sendEvents } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";

const EVENT = "fault/stream";
/** Events acknowledged (at least) before the kill, while the runner is down, and after it is back. */
const BEFORE_KILL = 30;
const WHILE_DOWN = 20;
const AFTER = 10;
/** A short consumer session, so the killed runner's partitions free up in 10 s, not 30 s; the
 * retry waits and the ScheduleRuns deadline must fit in it (the runner checks). */
const SESSION_TIMEOUT_MS = 10_000;

let cluster: Cluster;
let app: SdkApp;
/** Step bodies that ran, by step and the event's sequence number. */
const calls = { a: new Map<number, number>(), b: new Map<number, number>() };
/** The event id each function call saw, by sequence number (the id the API acknowledged). */
const seenIds = new Map<number, Set<string>>();
const count = (m: Map<number, number>, seq: number) => m.set(seq, (m.get(seq) ?? 0) + 1);

beforeAll(async () => {
  cluster = await startCluster({
    name: "runnerkill",
    dev: true,
    env: {
      STEPLINE_RUNNER_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
      STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS: "5000",
      STEPLINE_RUNNER_RETRY_MAX_MS: "2000",
    },
  });
  const opts = { sdk: "v4" as const, id: "runner-fault-app", baseUrl: cluster.apiUrl };
  const client = makeClient(opts);
  const fn = client.createFunction(
    { id: "two-steps", triggers: [{ event: EVENT }] },
    async ({ event, step }: any) => {
      const seq = event.data.seq as number;
      if (!seenIds.has(seq)) seenIds.set(seq, new Set());
      seenIds.get(seq)?.add(event.id);
      const a = await step.run("a", () => {
        count(calls.a, seq);
        return seq;
      });
      const b = await step.run("b", () => {
        count(calls.b, seq);
        return a * 2;
      });
      return { seq, b };
    },
  );
  app = await serveAndSync(opts, client, [fn]);
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
});

/** Sends one event and records the id the API acknowledged for its sequence number. */
async function sendOne(seq: number, acked: Map<number, string>): Promise<void> {
  const res = await sendEvents(cluster.apiUrl, "any-key", { name: EVENT, data: { seq } });
  expect(res.status, `event ${seq}`).toBe(200);
  const id = res.body?.ids?.[0];
  expect(typeof id, `id of event ${seq}`).toBe("string");
  acked.set(seq, id as string);
}

/**
 * Sends events one request at a time, numbered from 0, until `until()` holds. A short pause
 * between requests makes it a stream over seconds rather than one burst (pacing, not a wait for
 * anything to happen). Resolves with the number of events sent.
 */
async function stream(acked: Map<number, string>, until: () => boolean): Promise<number> {
  let seq = 0;
  while (!until()) {
    await sendOne(seq++, acked);
    await new Promise((r) => setTimeout(r, 20));
  }
  return seq;
}

it("loses no acknowledged event and creates no duplicate run when the runner is killed mid-stream", async () => {
  const acked = new Map<number, string>();
  let abort = false;
  const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");
  const groupId = `${cluster.topicPrefix}stepline-runner`;
  const topic = `${cluster.topicPrefix}events`;
  const admin = new Kafka({
    clientId: "fault-runner-kill",
    brokers: brokers.split(","),
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    // The stream keeps going while the runner dies, and stops only once enough events were
    // acknowledged while it was down: Kafka holds what the API accepts while nobody consumes it.
    let sentAtKill = -1;
    const sending = stream(acked, () => abort || (sentAtKill >= 0 && acked.size >= sentAtKill + WHILE_DOWN));
    sending.catch(() => undefined); // a failed send is reported where `sending` is awaited
    await waitFor(
      "some runs to start, with the stream well under way",
      () => calls.a.size >= 5 && acked.size >= BEFORE_KILL,
      { timeoutMs: 30_000, intervalMs: 20 },
    );
    await cluster.kill("runner", "SIGKILL");
    sentAtKill = acked.size;
    const sent = await sending;

    // The dead member leaves the group only when its session times out; then the group can be
    // rewound, so the restarted runner sees every event again.
    await waitFor(
      "the killed runner to leave its consumer group",
      async () => (await admin.describeGroups([groupId])).groups[0]?.state === "Empty",
      // Well under kafkajs' default 30 s: the runner really uses the configured session.
      { timeoutMs: SESSION_TIMEOUT_MS + 12_000, intervalMs: 250 },
    );
    await admin.resetOffsets({ groupId, topic, earliest: true });
    await cluster.restart("runner");

    for (let seq = sent; seq < sent + AFTER; seq++) await sendOne(seq, acked);

    const total = sent + AFTER;
    expect(acked.size).toBe(total);
    expect(total).toBeGreaterThanOrEqual(BEFORE_KILL + WHILE_DOWN + AFTER);
    await waitFor(
      "every acknowledged event's run to complete",
      async () => {
        let done = 0;
        for (const id of acked.values()) {
          const runs = await eventRuns(cluster.apiUrl, id);
          if (runs.length > 0 && runs.every((r) => r.status !== "Running")) done++;
        }
        return done === total;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );

    for (const [seq, id] of acked) {
      const runs = await eventRuns(cluster.apiUrl, id);
      expect(runs.length, `runs of event ${seq} (${id})`).toBe(1);
      expect(runs[0]?.status, `run of event ${seq}`).toBe("Completed");
      expect(runs[0]?.output, `output of event ${seq}`).toEqual({ seq, b: seq * 2 });
      expect(calls.a.get(seq), `step a of event ${seq}`).toBe(1);
      expect(calls.b.get(seq), `step b of event ${seq}`).toBe(1);
      expect([...(seenIds.get(seq) ?? [])], `event id seen for ${seq}`).toEqual([id]);
    }
    // Nothing ran that the API did not acknowledge.
    expect(calls.a.size).toBe(total);
    expect(calls.b.size).toBe(total);
  } finally {
    abort = true;
    await admin.disconnect();
  }
}, 240_000);
