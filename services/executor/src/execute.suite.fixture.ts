// Shared test suite: the item handler end to end against a real SDK app and real Redis, with the
// queue played by a small in-test driver (each completion's next item is handled next, a retry
// hands the same item back) and history captured in memory.

import { systemClock } from "@stepline/internal/clock";
import { NotFoundError, UnavailableError } from "@stepline/internal/errors";
import { createLogger } from "@stepline/internal/log";
import { uniqueTag } from "@stepline/internal/testing";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { RunRecord, StepRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { RunStatus, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppClient } from "./app-client.js";
import { describeCallsOnLease } from "./calls-on-lease.suite.fixture.js";
import type { ExecuteDeps } from "./execute.js";
import { createItemHandler } from "./execute.js";
import type { ExecuteHarness, QueueOp, SentEvent } from "./execute-durable.suite.fixture.js";
import { describeDurableExecution } from "./execute-durable.suite.fixture.js";
import type { HistoryEntry } from "./history.js";
import { LiveRuns } from "./live-runs.js";
import { PauseStore } from "./pauses.js";
import { driveQueue, recordingCtx } from "./queue-driver.fixture.js";
import type { RunSpecInput } from "./schedule.js";
import { Scheduler } from "./schedule.js";
import type { FixtureApp, Sdk } from "./sdk-app.fixture.js";
import { EVENTS, startFixtureApp, testSigningKey } from "./sdk-app.fixture.js";
import { SigningKeys } from "./signing-keys.js";
import { SingletonLocks } from "./singleton.js";
import { DEFAULT_RUN_LIMITS, RunStore } from "./state.js";
import type { ItemHandler } from "./work-loop.js";
import { LEASE_LOST, SHUTDOWN } from "./work-loop.js";

/** The executor's item handler against a real SDK app of major `sdk`. */
export function describeExecuteAgainstSdk(sdk: Sdk, redisUrl: string): void {
  const prefix = `test-exec-${sdk}-${uniqueTag()}:s:`;
  const log = createLogger("executor-test", "silent");
  let redis: Redis;
  let store: RunStore;
  let pauses: PauseStore;
  let live: LiveRuns;
  let app: FixtureApp;
  let prodApp: FixtureApp;
  const key = testSigningKey();
  const devClient = new AppClient({ timeoutMs: 10_000, maxResponseBytes: 1 << 20, serverKind: "dev" });
  const cloudClient = new AppClient({ timeoutMs: 10_000, maxResponseBytes: 1 << 20, serverKind: "cloud" });
  let history: HistoryEntry[] = [];
  /** Events sent through EventService, and items enqueued outside a completion. */
  const sent: Array<{ accountId: string; environmentId: string; event: SentEvent }> = [];
  const enqueuedOutside: NewItem[] = [];
  const removedItems: string[] = [];
  let runN = 0;

  const deps = (over: Partial<ExecuteDeps> = {}): ExecuteDeps => ({
    store,
    pauses,
    events: {
      send: async (accountId, environmentId, events) =>
        void sent.push(
          ...events.map((e) => ({ accountId, environmentId, event: e as unknown as SentEvent })),
        ),
    },
    enqueue: async (items) => void enqueuedOutside.push(...items),
    remove: async (items) => void removedItems.push(...items.map((i) => i.itemId)),
    live,
    fireCron: async () => {
      throw new Error("no cron in this test");
    },
    fireDebounce: async () => {
      throw new Error("no debounce in this test");
    },
    fireBatch: async () => {
      throw new Error("no batch in this test");
    },
    app: devClient,
    keys: null,
    history: {
      record: async (e) => void history.push(...e),
      produce: async (e) => void history.push(...e),
    },
    singletons: new SingletonLocks(redis, prefix),
    clock: systemClock,
    log,
    backoff: { baseMs: 1, maxMs: 5 },
    random: () => 0,
    ...over,
  });

  /** Schedules a run of `fnId` and returns its start item (as ScheduleRuns would enqueue it). */
  async function schedule(
    target: FixtureApp,
    fnId: string,
    event: object,
    maxAttempts = 3,
    spec: Partial<RunSpecInput> = {},
  ): Promise<NewItem> {
    const enqueued: NewItem[] = [];
    const scheduler = new Scheduler({
      store,
      pauses,
      live,
      enqueueStarts: async (starts) => void enqueued.push(...starts.map((s) => s.item)),
      produce: async (e) => void history.push(...e),
      record: async (e) => void history.push(...e),
      clock: systemClock,
      defaultMaxAttempts: 5,
      singletons: new SingletonLocks(redis, prefix),
      cancel: async () => {
        throw new Error("no singleton cancel in this suite");
      },
      skipTtlMs: 60_000,
    });
    const runId = `run-${sdk}-${++runN}`;
    await scheduler.schedule([
      {
        runId,
        accountId: "acct",
        environmentId: "env-1",
        appId: target.appId,
        functionId: `${target.appId}-${fnId}`,
        functionVersion: "1",
        url: target.fnUrl(fnId),
        maxAttempts,
        eventsJson: [JSON.stringify({ id: `evt-${runId}`, ts: 1, ...event })],
        cancelOn: [],
        startTimeoutMs: 0,
        finishTimeoutMs: 0,
        traceParent: "",
        ...spec,
      },
    ]);
    const start = enqueued[0];
    if (!start) throw new Error("no start item enqueued");
    return start;
  }

  const drive = (
    handler: ItemHandler,
    first: NewItem,
    staleCompletions: number | ((item: NewItem) => boolean) = 0,
  ) => driveQueue({ store, redis, prefix }, handler, first, staleCompletions);

  const runs = (runId: string) =>
    history
      .filter((h): h is { $case: "run"; value: RunRecord } => h.$case === "run" && h.value.runId === runId)
      .map((h) => h.value);
  const steps = (runId: string) =>
    history
      .filter((h): h is { $case: "step"; value: StepRecord } => h.$case === "step" && h.value.runId === runId)
      .map((h) => h.value);

  beforeAll(async () => {
    redis = new Redis(redisUrl);
    store = new RunStore(redis, 60_000, prefix);
    pauses = new PauseStore(redis, prefix);
    live = new LiveRuns(redis, prefix);
    app = await startFixtureApp(sdk);
    prodApp = await startFixtureApp(sdk, { signingKey: key });
  });

  afterAll(async () => {
    await app?.close();
    await prodApp?.close();
    await devClient.close();
    await cloudClient.close();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    history = [];
  });

  const harness: ExecuteHarness = {
    sdk,
    log,
    get store() {
      return store;
    },
    get app() {
      return app;
    },
    deps,
    schedule,
    drive,
    runs,
    steps,
    sent,
    enqueuedOutside,
    removedItems,
  };

  describe(`executing items against a real SDK ${sdk} app`, () => {
    it("runs a three-step function to completion: each step once, saved before the item is completed", async () => {
      const start = await schedule(app, "three", { name: EVENTS.three, data: { n: 1 } });
      expect(start.id).toBe(`${start.runId}:start`);
      const ops = await drive(createItemHandler(deps()), start);
      expect(ops.map((o) => o.next?.map((n) => n.id))).toEqual([
        [`${start.runId}:c1`],
        [`${start.runId}:c2`],
        [`${start.runId}:c3`],
        [],
      ]);
      expect([app.counts.get("a"), app.counts.get("b"), app.counts.get("c")]).toEqual([1, 1, 1]);
      const s = await store.load(start.runId);
      expect(s?.status).toBe("completed");
      expect(JSON.parse(s?.output ?? "")).toEqual({ a: 2, b: 4, c: "4!" });
      expect(s?.stack).toHaveLength(3);
      expect(runs(start.runId).map((r) => [r.status, r.version])).toEqual([
        [RunStatus.RUN_STATUS_RUNNING, 1],
        [RunStatus.RUN_STATUS_COMPLETED, 2],
      ]);
      expect(runs(start.runId)[1]?.outputJson).toBe('{"a":2,"b":4,"c":"4!"}');
      expect(runs(start.runId)[1]?.eventId).toBe(`evt-${start.runId}`);
      expect(steps(start.runId).map((r) => [r.name, r.status, r.outputJson])).toEqual([
        ["a", StepStatus.STEP_STATUS_COMPLETED, "2"],
        ["b", StepStatus.STEP_STATUS_COMPLETED, "4"],
        ["c", StepStatus.STEP_STATUS_COMPLETED, '"4!"'],
      ]);
    });

    it("starts a handed-off call from the state its completion left: a sequential run is loaded once", async () => {
      const before = ["a", "b", "c"].map((k) => app.counts.get(k) ?? 0);
      const start = await schedule(app, "three", { name: EVENTS.three, data: { n: 2 } });
      let loads = 0;
      const counting = Object.create(store) as RunStore;
      counting.load = (runId) => {
        loads++;
        return store.load(runId);
      };
      await drive(createItemHandler(deps({ store: counting })), start);
      // The start item is loaded; c1, c2 and c3 came as hand-offs. Had a kept state lacked a
      // saved step, the SDK would have run that step again.
      expect(loads).toBe(1);
      expect(["a", "b", "c"].map((k, i) => (app.counts.get(k) ?? 0) - (before[i] ?? 0))).toEqual([1, 1, 1]);
      const s = await store.load(start.runId);
      expect(s?.status).toBe("completed");
      expect(JSON.parse(s?.output ?? "")).toEqual({ a: 3, b: 6, c: "6!" });
    });

    it("calls nothing for a handed-off item of a run cancelled after the completion that handed it off", async () => {
      const before = ["a", "b", "c"].map((k) => app.counts.get(k) ?? 0);
      const start = await schedule(app, "three", { name: EVENTS.three, data: { n: 3 } });
      // The cancel lands between the first call's completion and the handed-off second call.
      let cancelled = false;
      const racing = Object.create(store) as RunStore;
      racing.progress = async (runId) => {
        if (!cancelled) {
          cancelled = true;
          await store.finish(runId, "cancelled", {}, Date.now());
        }
        return store.progress(runId);
      };
      await drive(createItemHandler(deps({ store: racing })), start);
      expect(cancelled).toBe(true);
      expect(["a", "b", "c"].map((k, i) => (app.counts.get(k) ?? 0) - (before[i] ?? 0))).toEqual([1, 0, 0]);
      expect((await store.load(start.runId))?.status).toBe("cancelled");
    });

    it("never runs a saved step again when its item is handed out again after a lost completion", async () => {
      const before = app.counts.get("a") ?? 0;
      const start = await schedule(app, "three", { name: EVENTS.three, data: { n: 1 } });
      // The first completion comes back STALE; the same start item is then delivered again.
      const ops = await drive(createItemHandler(deps()), start, 1);
      expect(ops[0]).toMatchObject({ op: "complete", item: { id: start.id } });
      expect(ops[1]).toMatchObject({ op: "complete", item: { id: start.id } });
      expect((app.counts.get("a") ?? 0) - before).toBe(1);
      expect((await store.load(start.runId))?.status).toBe("completed");
    });

    it("discovers instead of re-requesting a planned step whose result was saved before its item came back", async () => {
      const before = ["p1", "p2", "sum"].map((k) => app.counts.get(k) ?? 0);
      const start = await schedule(app, "parallel", { name: EVENTS.parallel, data: {} });
      // The completion of the first planned-step call is lost after p1 was saved; the queue then
      // hands that item (stepId = p1's hashed id) out again.
      let lost = false;
      const plannedCall = (item: NewItem) => {
        if (lost || JSON.parse(item.payload).stepId === "step") return false;
        lost = true;
        return true;
      };
      const t0 = Date.now();
      const ops = await drive(createItemHandler(deps()), start, plannedCall);
      expect(lost).toBe(true);
      expect(ops.filter((o) => o.op !== "complete")).toEqual([]);
      const s = await store.load(start.runId);
      expect(s?.status).toBe("completed");
      expect(s?.output).toBe("3");
      expect(["p1", "p2", "sum"].map((k, i) => (app.counts.get(k) ?? 0) - (before[i] ?? 0))).toEqual([
        1, 1, 1,
      ]);
      // No call waited for the SDK's 10 s "step not found" timeout.
      expect(Date.now() - t0).toBeLessThan(5_000);
    });

    it("retries an erroring step with attempt+1 and backoff, then carries on", async () => {
      const start = await schedule(app, "flaky", { name: EVENTS.flaky, data: {} });
      const t0 = Date.now();
      const ops = await drive(createItemHandler(deps()), start);
      const retries = ops.filter((o) => o.op === "retry");
      expect(retries.map((o) => o.attempt)).toEqual([1, 2]);
      for (const r of retries) expect(r.runAtMs).toBeGreaterThanOrEqual(t0);
      expect(JSON.parse((await store.load(start.runId))?.output ?? "")).toEqual(["ok", "recovered"]);
      expect(steps(start.runId).map((s) => s.status)).toEqual([
        StepStatus.STEP_STATUS_COMPLETED,
        StepStatus.STEP_STATUS_ERRORED,
        StepStatus.STEP_STATUS_ERRORED,
        StepStatus.STEP_STATUS_COMPLETED,
      ]);
    });

    describeDurableExecution(harness);
    describeCallsOnLease(harness);

    it("acks an item of an ended run without calling the app, re-recording the outcome", async () => {
      const start = await schedule(app, "three", { name: EVENTS.three, data: { n: 1 } });
      await drive(createItemHandler(deps()), start);
      const count = app.counts.get("a");
      const ops = await drive(createItemHandler(deps()), { ...start, id: `${start.runId}:c3` });
      expect(ops).toEqual([{ op: "complete", item: expect.anything(), next: [] }]);
      expect(app.counts.get("a")).toBe(count);
      expect(runs(start.runId).at(-1)?.status).toBe(RunStatus.RUN_STATUS_COMPLETED);
    });

    it("does not ack a run's last item until Kafka has taken its final record", async () => {
      const start = await schedule(app, "three", { name: EVENTS.three, data: { n: 1 } });
      let kafkaDown = true;
      const strict = {
        // Step records may wait in the background; the run's final record must not.
        record: async (e: HistoryEntry[]) => void history.push(...e),
        produce: async (e: HistoryEntry[]) => {
          if (kafkaDown) {
            kafkaDown = false;
            throw new UnavailableError("kafka is down");
          }
          history.push(...e);
        },
      };
      const ops = await drive(createItemHandler(deps({ history: strict })), start);
      const last = `${start.runId}:c3`;
      expect(ops.filter((o) => o.item.id === last)).toEqual([
        { op: "release", item: expect.objectContaining({ id: last }) },
        { op: "complete", item: expect.objectContaining({ id: last }), next: [] },
      ]);
      expect(app.counts.get("c")).toBeGreaterThan(0);
      expect(runs(start.runId).map((r) => r.status)).toEqual([
        RunStatus.RUN_STATUS_RUNNING,
        RunStatus.RUN_STATUS_COMPLETED,
      ]);
    });

    it("acks an item whose run does not exist", async () => {
      const start = await schedule(app, "three", { name: EVENTS.three, data: { n: 1 } });
      const ops = await drive(createItemHandler(deps()), {
        ...start,
        runId: "missing-run",
        id: "missing-run:start",
      });
      expect(ops).toEqual([{ op: "complete", item: expect.anything(), next: [] }]);
    });

    it("signs calls with the environment's key in production mode and completes the run", async () => {
      const keys = new SigningKeys(async () => key, 60_000, systemClock);
      const start = await schedule(prodApp, "three", { name: EVENTS.three, data: { n: 2 } });
      await drive(createItemHandler(deps({ app: cloudClient, keys })), start);
      expect(JSON.parse((await store.load(start.runId))?.output ?? "")).toEqual({ a: 3, b: 6, c: "6!" });
    });

    it("retries calls the app rejects with 401 and refetches the key each time", async () => {
      let fetches = 0;
      const keys = new SigningKeys(
        async () => {
          fetches++;
          return testSigningKey();
        },
        60_000,
        systemClock,
      );
      const start = await schedule(prodApp, "three", { name: EVENTS.three, data: { n: 2 } }, 2);
      const ops = await drive(createItemHandler(deps({ app: cloudClient, keys })), start);
      expect(ops.map((o) => o.op)).toEqual(["retry", "complete"]);
      expect(fetches).toBe(2);
      const s = await store.load(start.runId);
      expect(s?.status).toBe("failed");
      expect(s?.error).toContain("401");
    });

    it("releases the item without spending an attempt when the signing key cannot be fetched", async () => {
      const keys = new SigningKeys(
        async () => {
          throw new UnavailableError("event-api down");
        },
        60_000,
        systemClock,
      );
      const start = await schedule(prodApp, "three", { name: EVENTS.three, data: { n: 2 } });
      const ops: QueueOp[] = [];
      await createItemHandler(deps({ app: cloudClient, keys }))(
        { ...start, attempt: 1 },
        recordingCtx(start, ops),
      );
      expect(ops).toEqual([{ op: "release", item: start }]);
      expect((await store.load(start.runId))?.status).toBe("running");
    });

    it("fails the run when its environment no longer exists", async () => {
      const keys = new SigningKeys(
        async (id) => {
          throw new NotFoundError(`environment ${id} not found`);
        },
        60_000,
        systemClock,
      );
      const start = await schedule(prodApp, "three", { name: EVENTS.three, data: { n: 2 } });
      const ops: QueueOp[] = [];
      await createItemHandler(deps({ app: cloudClient, keys }))(start, recordingCtx(start, ops));
      expect(ops).toEqual([{ op: "complete", item: start, next: [] }]);
      const s = await store.load(start.runId);
      expect(s?.status).toBe("failed");
      expect(s?.error).toContain("environment env-1 not found");
    });

    it("releases an item with its attempt unchanged when shutdown interrupts the call", async () => {
      const start = await schedule(app, "slow", { name: EVENTS.slow, data: { ms: 2_000 } });
      const controller = new AbortController();
      const ops: QueueOp[] = [];
      const handled = createItemHandler(deps())(
        { ...start, attempt: 1 },
        recordingCtx(start, ops, controller.signal),
      );
      await waitUntil(() => (app.counts.get("wait") ?? 0) > 0);
      controller.abort(SHUTDOWN);
      await handled;
      expect(ops).toEqual([{ op: "retry", item: start, runAtMs: 0, attempt: 1 }]);
    });

    it("drops the work without touching the queue when the lease is lost mid-call", async () => {
      const before = app.counts.get("wait") ?? 0;
      const start = await schedule(app, "slow", { name: EVENTS.slow, data: { ms: 2_000 } });
      const controller = new AbortController();
      const ops: QueueOp[] = [];
      const handled = createItemHandler(deps())(start, recordingCtx(start, ops, controller.signal));
      await waitUntil(() => (app.counts.get("wait") ?? 0) > before);
      controller.abort(LEASE_LOST);
      await handled;
      expect(ops).toEqual([]);
      expect((await store.load(start.runId))?.stack).toEqual([]);
    });

    // Last: it runs steps of "three", whose counts the tests above check.
    it("fails a run that passes its limit of steps, naming the limit, without saving the step past it", async () => {
      const limited = new RunStore(redis, 60_000, prefix, { ...DEFAULT_RUN_LIMITS, maxSteps: 2 });
      const start = await schedule(app, "three", { name: EVENTS.three, data: { n: 1 } });
      const ops = await drive(createItemHandler(deps({ store: limited })), start);
      expect(ops.at(-1)).toMatchObject({ op: "complete", next: [] });
      const s = await store.load(start.runId);
      expect(s?.status).toBe("failed");
      expect(s?.error).toContain(
        "the run reached its limit of 2 steps (STEPLINE_EXECUTOR_MAX_STEPS_PER_RUN)",
      );
      expect(s?.steps.size).toBe(2);
      expect(runs(start.runId).at(-1)?.status).toBe(RunStatus.RUN_STATUS_FAILED);
    });
  });
}

async function waitUntil(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}
