// Fault test: SIGKILL the queue while runs are mid-flight. Its items and leases live in Redis, so
// the restarted queue retakes its shards, reclaims the leases that expired meanwhile and hands the
// work out again. Every run completes, and no step whose result was saved runs again: only a step
// whose call was in flight at the kill (result not saved yet) may run a second time.
//
// The executor has 4 slots and every run's step "b" blocks on its first attempt, so at the kill
// exactly 4 calls are in flight (4 blocked "b" bodies) and the other runs wait in the queue. Two of
// the blocked bodies are let go while the queue is down (their results are saved, the completions
// wait for the queue), two only once it is back. Two scenarios: the queue restarted at once (the
// executor extends and completes its leases on the new process), and restarted only after every
// lease has expired (the new process reclaims them; the executor has given up the calls it could
// not extend, so those steps run again).

import { waitFor } from "@stepline/internal/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";

const RUNS = 10;
const STEPS = ["a", "b", "c"] as const;
type StepName = (typeof STEPS)[number];
const SLOTS = 4;

/** One execution of a step body. */
interface BodyRun {
  run: number;
  step: StepName;
  /** 1 for the step's first execution, 2 for its second, ... */
  n: number;
  value: string;
  /** Step results of the run already saved in state when the body started. */
  savedAtStart: number;
}

let cluster: Cluster;
let app: SdkApp;
let redis: Redis;
const bodyRuns: BodyRun[] = [];
const runIds = new Map<number, string>();
const gates = new Map<number, () => void>();
/** Runs below this number never block (their scenario is over). */
let ungatedBelow = 0;

const runsOf = (run: number, step: StepName) => bodyRuns.filter((b) => b.run === run && b.step === step);
/** Results saved in the run's state (executor key `s:{<runId>}:s`, one field per step). */
const savedSteps = async (run: number) => {
  const runId = runIds.get(run);
  return runId ? redis.hlen(`s:{${runId}}:s`) : 0;
};
const release = (run: number) => {
  gates.get(run)?.();
  gates.delete(run);
};

beforeAll(async () => {
  cluster = await startCluster({
    name: "queuekill",
    dev: true,
    env: {
      STEPLINE_QUEUE_LEASE_MS: "3000",
      // The killed queue's owner leases on the shards must lapse before the new process can claim.
      STEPLINE_QUEUE_OWNER_LEASE_MS: "3000",
      STEPLINE_QUEUE_SWEEP_MS: "1000",
      STEPLINE_EXECUTOR_CONCURRENCY: String(SLOTS),
    },
  });
  redis = new Redis(cluster.redisUrl);
  const opts = { sdk: "v4" as const, id: "queue-fault-app", baseUrl: cluster.apiUrl };
  const client = makeClient(opts);
  const fn = client.createFunction(
    { id: "chain", triggers: [{ event: "fault/chain" }] },
    async ({ event, step, runId }: any) => {
      const run = event.data.run as number;
      runIds.set(run, runId);
      // Each body records itself (and how much of the run was saved when it began) before its work.
      const body = async (name: StepName, index: number, input: string) => {
        const n = runsOf(run, name).length + 1;
        const value = `${input}${name}${n}`;
        const entry: BodyRun = { run, step: name, n, value, savedAtStart: 0 };
        bodyRuns.push(entry);
        entry.savedAtStart = await savedSteps(run);
        if (entry.savedAtStart > index) return value; // recorded as a violation below
        if (name === "b" && n === 1 && run >= ungatedBelow) await new Promise<void>((r) => gates.set(run, r));
        return value;
      };
      const a = await step.run("a", () => body("a", 0, `r${run}:`));
      const b = await step.run("b", () => body("b", 1, `${a}>`));
      const c = await step.run("c", () => body("c", 2, `${b}>`));
      return { a, b, c };
    },
  );
  app = await serveAndSync(opts, client, [fn]);
}, 120_000);

afterAll(async () => {
  ungatedBelow = Number.POSITIVE_INFINITY;
  for (const run of [...gates.keys()]) release(run);
  await app?.close();
  redis?.disconnect();
  await cluster?.stop();
});

/** Sends RUNS events (runs `first`..), kills the queue mid-flight, restarts it, checks the runs. */
async function killQueueMidFlight(first: number, downUntilLeasesExpire: boolean): Promise<void> {
  const range = Array.from({ length: RUNS }, (_, i) => first + i);
  const eventIds: string[] = [];
  for (const run of range) {
    const sent = await sendEvents(cluster.apiUrl, "any-key", { name: "fault/chain", data: { run } });
    expect(sent.status).toBe(200);
    eventIds.push(sent.body.ids[0]);
  }

  // Every slot holds a blocked "b": nothing else can be in flight, the other runs wait in the queue.
  await waitFor(`${SLOTS} blocked "b" bodies`, () => gates.size === SLOTS, {
    timeoutMs: 60_000,
    intervalMs: 100,
  });
  const startedBeforeKill = bodyRuns.length;
  await cluster.kill("queue", "SIGKILL");
  const killedAt = Date.now();

  // The steps in flight at the kill: started, result not saved (state only grows, in step order).
  const inFlight: { run: number; step: StepName }[] = [];
  for (const run of range) {
    const saved = await savedSteps(run);
    for (const [index, name] of STEPS.entries()) {
      if (index >= saved && runsOf(run, name).length > 0) inFlight.push({ run, step: name });
    }
  }
  const blocked = [...gates.keys()].sort((x, y) => x - y);
  expect(inFlight).toEqual(blocked.map((run) => ({ run, step: "b" })));
  expect(bodyRuns.length).toBe(startedBeforeKill); // no call started with the queue gone

  // Half of the blocked bodies finish while the queue is down: the executor saves their results
  // and holds the completions; the others finish only once the queue is back.
  for (const run of blocked.slice(0, SLOTS / 2)) release(run);
  await waitFor(
    "the released steps' results to be saved",
    async () => (await Promise.all(blocked.slice(0, SLOTS / 2).map(savedSteps))).every((n) => n >= 2),
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  // Optionally stay down until every lease taken before the kill has expired (by Redis time, as the
  // queue judges it): the restarted queue must reclaim them, and the executor gives up the calls it
  // could not extend.
  if (downUntilLeasesExpire)
    await waitFor(
      "the leases held at the kill to expire",
      async () => {
        const [sec, usec] = await redis.time();
        const now = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
        const leased = await Promise.all(
          (await redis.keys("q:*:L")).map((key) => redis.zcount(key, String(now), "+inf")),
        );
        return leased.reduce((sum, n) => sum + n, 0) === 0;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
  await cluster.restart("queue");
  const restartedInMs = Date.now() - killedAt;
  ungatedBelow = first + RUNS;
  for (const run of blocked) release(run);

  const runs = await Promise.all(
    eventIds.map((id) => waitForEndedRuns(cluster.apiUrl, id, { timeoutMs: 90_000 })),
  );
  const recoveredInMs = Date.now() - killedAt;
  const mine = bodyRuns.filter((b) => b.run >= first && b.run < first + RUNS);
  const again = mine.filter((b) => b.n > 1).length;
  console.info(
    `queue back ${restartedInMs} ms and all runs ended ${recoveredInMs} ms after the kill; ${again} bodies ran again`,
  );

  // Every run completed once, with the saved result of each step, chained through the memos.
  for (const [i, ended] of runs.entries()) {
    const run = first + i;
    expect(ended).toHaveLength(1);
    expect(ended[0]?.status).toBe("Completed");
    const output = ended[0]?.output as Record<StepName, string>;
    expect(output.a).toBe(`r${run}:a1`);
    for (const name of STEPS) expect(runsOf(run, name).map((b) => b.value)).toContain(output[name]);
    expect(output.b.startsWith(`${output.a}>b`)).toBe(true);
    expect(output.c).toBe(`${output.b}>c1`);
  }

  // No body ever started after its step's result was saved.
  const afterSave = mine.filter((b) => b.savedAtStart > STEPS.indexOf(b.step));
  expect(afterSave).toEqual([]);
  // Only the steps in flight at the kill ran again, and at most once more.
  const ranAgain = mine.filter((b) => b.n > 1).map((b) => ({ run: b.run, step: b.step }));
  for (const rerun of ranAgain) expect(inFlight).toContainEqual(rerun);
  expect(ranAgain.length).toBe(new Set(ranAgain.map((r) => `${r.run}:${r.step}`)).size);
  expect(mine.length).toBeLessThanOrEqual(RUNS * STEPS.length + inFlight.length);
  // The steps released while the queue was down had their results saved: they never ran again.
  for (const run of blocked.slice(0, SLOTS / 2)) expect(runsOf(run, "b")).toHaveLength(1);
}

it("completes every run after the queue is killed mid-flight and restarted at once, re-running only steps in flight at the kill", async () => {
  await killQueueMidFlight(0, false);
}, 180_000);

it("completes every run after the queue is killed mid-flight and its leases expired, re-running only steps in flight at the kill", async () => {
  await killQueueMidFlight(RUNS, true);
}, 180_000);
