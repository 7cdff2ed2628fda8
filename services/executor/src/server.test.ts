import { systemClock } from "@stepline/internal/clock";
import { NotFoundError, UnavailableError, ValidationError } from "@stepline/internal/errors";
import type { GrpcServer } from "@stepline/internal/grpc";
import { callUnary, createClient, startGrpcServer } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import type { RunSpec } from "@stepline/proto/stepline/executor/v1/executor_service";
import {
  ExecutorServiceClient,
  ExecutorServiceService,
  SingletonMode,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import { RunStatus, SkipReason } from "@stepline/proto/stepline/stream/v1/history_record";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Canceller } from "./cancel.js";
import { Checkpointer } from "./checkpoint.js";
import type { HistoryEntry } from "./history.js";
import { LiveRuns } from "./live-runs.js";
import { PauseStore } from "./pauses.js";
import { Resumer } from "./resume.js";
import { Scheduler } from "./schedule.js";
import { executorService } from "./server.js";
import { SingletonLocks } from "./singleton.js";
import { RunStore } from "./state.js";

const url = requiredEnv("STEPLINE_TEST_REDIS_URL");

const prefix = `test-sched-${uniqueTag()}:s:`;
let redis: Redis;
let store: RunStore;
let pauses: PauseStore;
let live: LiveRuns;
interface SentEvent {
  name: string;
  id: string;
  data: { run_id: string; _inngest: { status: string } };
}
let sent: SentEvent[] = [];
let removed: string[] = [];
let server: GrpcServer;
let client: ExecutorServiceClient;
let enqueued: NewItem[] = [];
let produced: HistoryEntry[] = [];
let enqueueFails = false;
let n = 0;

function spec(over: Partial<RunSpec> = {}): RunSpec {
  n++;
  return {
    runId: `01J0000000000000000000RUN${n}`,
    accountId: "acct",
    environmentId: "env",
    appId: "app",
    functionId: "app-fn",
    functionVersion: "1",
    url: "http://127.0.0.1:3000/api/inngest?fnId=app-fn&stepId=step",
    maxAttempts: 3,
    eventsJson: ['{"name":"x","id":"e1","data":{"b":1,"a":2},"ts":5}'],
    cancelOn: [],
    startTimeoutMs: 0,
    finishTimeoutMs: 0,
    flow: undefined,
    singleton: undefined,
    ...over,
  };
}

const schedule = (runs: RunSpec[]) => callUnary(client.scheduleRuns.bind(client), { runs });

beforeAll(async () => {
  redis = new Redis(url);
  store = new RunStore(redis, 60_000, prefix);
  pauses = new PauseStore(redis, prefix);
  live = new LiveRuns(redis, prefix);
  const enqueue = async (items: NewItem[]) => {
    if (enqueueFails) throw new UnavailableError("queue down");
    enqueued.push(...items);
  };
  const log = createLogger("executor-test", "silent");
  const singletons = new SingletonLocks(redis, prefix);
  let canceller: Canceller | undefined;
  const scheduler = new Scheduler({
    store,
    pauses,
    live,
    enqueue,
    produce: async (entries) => void produced.push(...entries),
    record: async (entries) => void produced.push(...entries),
    clock: systemClock,
    defaultMaxAttempts: 5,
    singletons,
    cancel: async (runId, reason) => {
      await canceller?.cancel(runId, { reason });
    },
    skipTtlMs: 60_000,
  });
  canceller = new Canceller({
    store,
    pauses,
    live,
    events: { send: async (_a, _e, events) => void sent.push(...(events as SentEvent[])) },
    enqueue,
    remove: async (items) => void removed.push(...items.map((i) => i.itemId)),
    history: {
      record: async (entries) => void produced.push(...entries),
      produce: async (entries) => void produced.push(...entries),
    },
    singletons,
    clock: systemClock,
    log,
  });
  const resumer = new Resumer({
    store,
    pauses,
    enqueue,
    history: { record: async (entries) => void produced.push(...entries) },
    canceller,
    clock: systemClock,
    log,
  });
  server = await startGrpcServer("127.0.0.1:0", [
    {
      definition: ExecutorServiceService,
      implementation: executorService(
        scheduler,
        resumer,
        canceller,
        new Checkpointer({
          store,
          history: { record: async (entries) => void produced.push(...entries) },
          clock: systemClock,
        }),
        log,
      ),
    },
  ]);
  client = createClient(ExecutorServiceClient, `127.0.0.1:${server.port}`);
});

beforeEach(() => {
  enqueued = [];
  produced = [];
  sent = [];
  removed = [];
  enqueueFails = false;
});

afterAll(async () => {
  client?.close();
  await server?.close();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("ExecutorService.ScheduleRuns", () => {
  it("creates each run, records it as Running and enqueues its start item", async () => {
    const a = spec();
    const b = spec({ maxAttempts: 0 });
    const res = await schedule([a, b]);
    expect(res.results).toEqual([
      { runId: a.runId, created: true },
      { runId: b.runId, created: true },
    ]);
    expect(enqueued).toEqual([
      {
        id: `${a.runId}:start`,
        runId: a.runId,
        accountId: "acct",
        environmentId: "env",
        functionId: "app-fn",
        kind: ItemKind.ITEM_KIND_START,
        delayMs: 0,
        runAtMs: 0,
        attempt: 0,
        payload: '{"stepId":"step"}',
        // The queue scores a run's items from its start.
        runStartedAtMs: expect.any(Number),
      },
      expect.objectContaining({ id: `${b.runId}:start` }),
    ]);
    expect(
      produced.map(
        (p) => p.$case === "run" && [p.value.runId, p.value.status, p.value.version, p.value.eventId],
      ),
    ).toEqual([
      [a.runId, RunStatus.RUN_STATUS_RUNNING, 1, "e1"],
      [b.runId, RunStatus.RUN_STATUS_RUNNING, 1, "e1"],
    ]);
    const sa = await store.load(a.runId);
    expect(sa?.eventsJson).toBe('[{"data":{"a":2,"b":1},"id":"e1","name":"x","ts":5}]');
    expect(sa?.maxAttempts).toBe(3);
    expect((await store.load(b.runId))?.maxAttempts).toBe(5);
  });

  it("is idempotent: a repeat reports created=false and enqueues the start item again only before the run progressed", async () => {
    const a = spec();
    await schedule([a]);
    const again = await schedule([a]);
    expect(again.results).toEqual([{ runId: a.runId, created: false }]);
    expect(enqueued.map((i) => i.id)).toEqual([`${a.runId}:start`, `${a.runId}:start`]);

    await store.advance(a.runId, { saves: [{ stepId: "s1", memoJson: '{"data":1}' }] });
    enqueued = [];
    produced = [];
    expect((await schedule([a])).results).toEqual([{ runId: a.runId, created: false }]);
    expect(enqueued).toEqual([]);
    expect(produced).toEqual([]);
  });

  it("answers UNAVAILABLE when the queue cannot take the start items, and a retry then succeeds", async () => {
    const a = spec();
    enqueueFails = true;
    await expect(schedule([a])).rejects.toBeInstanceOf(UnavailableError);
    enqueueFails = false;
    expect((await schedule([a])).results).toEqual([{ runId: a.runId, created: false }]);
    expect(enqueued.map((i) => i.id)).toEqual([`${a.runId}:start`]);
  });

  it.each([
    ["a run id with braces", { runId: "bad{id}" }],
    ["a missing account", { accountId: "" }],
    ["a URL that is not http", { url: "ftp://x/y" }],
    ["no events", { eventsJson: [] }],
    ["an event that is not an object", { eventsJson: ["[1]"] }],
    ["an event that is not JSON", { eventsJson: ["{nope"] }],
  ])("rejects %s with INVALID_ARGUMENT and creates nothing", async (_what, over) => {
    const bad = spec(over);
    const good = spec();
    await expect(schedule([good, bad])).rejects.toBeInstanceOf(ValidationError);
    expect(await store.load(good.runId)).toBeNull();
    expect(enqueued).toEqual([]);
  });
});

describe("ExecutorService.ScheduleRuns with singleton", () => {
  const single = (mode: SingletonMode, keyHash = "ab12") => ({ singleton: { keyHash, mode } });
  const schedule = (runs: RunSpec[]) => callUnary(client.scheduleRuns.bind(client), { runs });

  it("skips a run whose key has a running run (mode skip), records why, and lets the key go when that run ends", async () => {
    const first = spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP), functionId: "app-single" });
    const second = spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP), functionId: "app-single" });
    const otherKey = spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP, "cd34"), functionId: "app-single" });
    expect((await schedule([first])).results).toEqual([{ runId: first.runId, created: true }]);
    produced = [];
    expect((await schedule([second, otherKey])).results).toEqual([
      { runId: second.runId, created: false },
      { runId: otherKey.runId, created: true },
    ]);
    expect(produced.filter((e) => e.$case === "skip").map((e) => e.value)).toEqual([
      expect.objectContaining({
        functionId: "app-single",
        eventId: "e1",
        reason: SkipReason.SKIP_REASON_SINGLETON,
        detail: `run ${first.runId} with the same singleton key is running`,
      }),
    ]);
    // A repeated call decides the same, even once the key is free.
    await callUnary(client.cancelRun.bind(client), { environmentId: "env", runId: first.runId });
    expect((await schedule([second])).results).toEqual([{ runId: second.runId, created: false }]);
    const third = spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP), functionId: "app-single" });
    expect((await schedule([third])).results).toEqual([{ runId: third.runId, created: true }]);
  });

  it("starts one run of a key when several come in one call, whatever the mode", async () => {
    for (const [mode, key] of [
      [SingletonMode.SINGLETON_MODE_SKIP, "1111"],
      [SingletonMode.SINGLETON_MODE_CANCEL, "2222"],
    ] as const) {
      const a = spec({ ...single(mode, key), functionId: "app-single" });
      const b = spec({ ...single(mode, key), functionId: "app-single" });
      await schedule([a, b]);
      const statuses = await Promise.all([a, b].map(async (r) => (await store.load(r.runId))?.status));
      expect(
        statuses.filter((st) => st === "running"),
        `mode ${mode}`,
      ).toHaveLength(1);
    }
  });

  it("cancels the key's running run and starts the new one (mode cancel)", async () => {
    const old = spec({ ...single(SingletonMode.SINGLETON_MODE_CANCEL, "ef56"), functionId: "app-single" });
    const fresh = spec({ ...single(SingletonMode.SINGLETON_MODE_CANCEL, "ef56"), functionId: "app-single" });
    await schedule([old]);
    expect((await schedule([fresh])).results).toEqual([{ runId: fresh.runId, created: true }]);
    expect((await store.load(old.runId))?.status).toBe("cancelled");
    expect((await store.load(fresh.runId))?.status).toBe("running");
  });

  it("takes over a key whose holder ended without giving it back", async () => {
    const gone = spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP, "0f0f"), functionId: "app-single" });
    await schedule([gone]);
    // Ended in state, but its finalize (which releases the key) never ran.
    await store.finish(gone.runId, "completed", { output: "null" }, Date.now());
    const next = spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP, "0f0f"), functionId: "app-single" });
    expect((await schedule([next])).results).toEqual([{ runId: next.runId, created: true }]);
  });
});

describe("ExecutorService.Checkpoint", () => {
  const checkpoint = (runId: string, steps: unknown, environmentId = "env") =>
    callUnary(client.checkpoint.bind(client), {
      environmentId,
      runId,
      queueItemId: `${runId}:start`,
      stepsJson: typeof steps === "string" ? steps : JSON.stringify(steps),
    });

  it("saves the steps an SDK ran inside a call, first writer wins, and refuses what it cannot take", async () => {
    const run = spec();
    await callUnary(client.scheduleRuns.bind(client), { runs: [run] });
    const ops = [
      { id: "a1", op: "StepRun", name: "first", data: { n: 1 } },
      { id: "b2", op: "StepPlanned", name: "next" },
    ];
    expect(await checkpoint(run.runId, ops)).toEqual({ saved: 1 });
    expect(await checkpoint(run.runId, [{ id: "a1", op: "StepRun", data: { n: 2 } }])).toEqual({ saved: 0 });
    const state = await store.load(run.runId);
    expect(state?.steps.get("a1")).toBe('{"data":{"n":1}}');
    expect(state?.stack).toEqual(["a1"]);
    await expect(checkpoint(run.runId, [{ id: "s", op: "Sleep", name: "1s" }])).rejects.toThrow(
      /cannot carry a Sleep op/,
    );
    await expect(checkpoint(run.runId, "{")).rejects.toBeInstanceOf(ValidationError);
    await expect(checkpoint(run.runId, ops, "other-env")).rejects.toBeInstanceOf(NotFoundError);
    await callUnary(client.cancelRun.bind(client), { environmentId: "env", runId: run.runId });
    // The run ended: the SDK's dispatch is stale.
    await expect(checkpoint(run.runId, ops)).rejects.toMatchObject({ name: "ConflictError" });
  });
});

describe("ExecutorService.ListPauses and ResumePauses", () => {
  const list = (queries: Array<{ environmentId: string; eventName: string }>) =>
    callUnary(client.listPauses.bind(client), { queries });
  const resume = (runId: string, opId: string, eventId: string) =>
    callUnary(client.resumePauses.bind(client), {
      resumes: [
        {
          runId,
          opId,
          environmentId: "env",
          eventName: "shop/paid",
          eventId,
          eventJson: JSON.stringify({ name: "shop/paid", id: eventId, data: { order: 7 } }),
          errorJson: "",
          cancel: false,
        },
      ],
    });

  /** A scheduled run waiting on shop/paid under op "w1". */
  async function waitingRun() {
    const s = spec();
    await schedule([s]);
    await store.advance(s.runId, { saves: [], reqVersion: 2, plans: [{ opId: "w1", race: false }] });
    await pauses.add({
      runId: s.runId,
      opId: "w1",
      environmentId: "env",
      eventName: "shop/paid",
      expression: "async.data.order == 7",
      triggerEventJson: s.eventsJson[0] ?? "{}",
      createdAtMs: 100,
      timeoutAtMs: 200,
      cancel: false,
    });
    enqueued = [];
    produced = [];
    return s;
  }

  it("lists the waits on an event name of an environment, and only those", async () => {
    const s = await waitingRun();
    const res = await list([
      { environmentId: "env", eventName: "shop/paid" },
      { environmentId: "env", eventName: "shop/other" },
      { environmentId: "other-env", eventName: "shop/paid" },
    ]);
    expect(res.pauses.filter((p) => p.runId === s.runId)).toEqual([
      {
        runId: s.runId,
        opId: "w1",
        environmentId: "env",
        eventName: "shop/paid",
        expression: "async.data.order == 7",
        triggerEventJson: s.eventsJson[0],
        createdAtMs: 100,
        timeoutAtMs: 200,
        cancel: false,
      },
    ]);
    expect(res.pauses.every((p) => p.environmentId === "env" && p.eventName === "shop/paid")).toBe(true);
  });

  it("resumes a wait once: the event is saved as its result, a discovery call is enqueued, the wait leaves the index", async () => {
    const s = await waitingRun();
    const first = await resume(s.runId, "w1", "ev-1");
    expect(first.results).toEqual([{ runId: s.runId, opId: "w1", resumed: true }]);
    expect(enqueued.map((i) => [i.id, i.payload])).toEqual([[`${s.runId}:d:w1`, '{"stepId":"step"}']]);
    expect((await store.load(s.runId))?.steps.get("w1")).toBe(
      '{"data":{"data":{"order":7},"id":"ev-1","name":"shop/paid"}}',
    );
    expect(
      (await list([{ environmentId: "env", eventName: "shop/paid" }])).pauses.map((p) => p.runId),
    ).not.toContain(s.runId);
    // The same event again (a Kafka redelivery) gets the same answer; another event loses.
    expect((await resume(s.runId, "w1", "ev-1")).results[0]?.resumed).toBe(true);
    expect((await resume(s.runId, "w1", "ev-2")).results[0]?.resumed).toBe(false);
    expect(enqueued.map((i) => i.id)).toEqual([`${s.runId}:d:w1`, `${s.runId}:d:w1`]);
  });

  it("answers UNAVAILABLE when the discovery call cannot be enqueued, and a retry then resumes", async () => {
    const s = await waitingRun();
    enqueueFails = true;
    await expect(resume(s.runId, "w1", "ev-1")).rejects.toBeInstanceOf(UnavailableError);
    // The wait is still indexed, so the retry finds it.
    expect(
      (await list([{ environmentId: "env", eventName: "shop/paid" }])).pauses.map((p) => p.runId),
    ).toContain(s.runId);
    enqueueFails = false;
    expect((await resume(s.runId, "w1", "ev-1")).results[0]?.resumed).toBe(true);
    expect(enqueued.map((i) => i.id)).toEqual([`${s.runId}:d:w1`]);
  });

  it("keeps a wait indexed while the event that won it has not carried the run on, whatever loses meanwhile", async () => {
    const s = await waitingRun();
    enqueueFails = true;
    await expect(resume(s.runId, "w1", "ev-1")).rejects.toBeInstanceOf(UnavailableError);
    enqueueFails = false;
    // Another matching event loses (ev-1 resolved the wait) and must leave the entry alone.
    expect((await resume(s.runId, "w1", "ev-2")).results[0]?.resumed).toBe(false);
    const listed = await callUnary(client.listPauses.bind(client), {
      queries: [{ environmentId: "env", eventName: "shop/paid" }],
    });
    expect(listed.pauses.map((p) => p.runId)).toContain(s.runId);
    // The runner's retry of ev-1 finds it, enqueues the discovery call, and only then drops it.
    expect((await resume(s.runId, "w1", "ev-1")).results[0]?.resumed).toBe(true);
    expect(enqueued.map((i) => i.id)).toEqual([`${s.runId}:d:w1`]);
  });

  it("does not resume a wait of an ended or unknown run", async () => {
    const s = await waitingRun();
    await store.finish(s.runId, "failed", { error: "{}" }, 1);
    expect((await resume(s.runId, "w1", "ev-1")).results[0]?.resumed).toBe(false);
    expect((await resume("01J00000000000000000GHOST1", "w1", "ev-1")).results[0]?.resumed).toBe(false);
    expect(enqueued).toEqual([]);
  });

  it("rejects a resume without an event id, or with an event that is not JSON", async () => {
    await expect(
      callUnary(client.resumePauses.bind(client), {
        resumes: [
          {
            runId: "r",
            opId: "o",
            environmentId: "env",
            eventName: "x",
            eventId: "",
            eventJson: "{}",
            errorJson: "",
            cancel: false,
          },
        ],
      }),
    ).rejects.toBeInstanceOf(ValidationError);
    await expect(
      callUnary(client.resumePauses.bind(client), {
        resumes: [
          {
            runId: "r",
            opId: "o",
            environmentId: "env",
            eventName: "x",
            eventId: "e",
            eventJson: "{",
            errorJson: "",
            cancel: false,
          },
        ],
      }),
    ).rejects.toBeInstanceOf(ValidationError);
  });
});

describe("ExecutorService.CancelRun and CancelFunctionRuns", () => {
  const cancel = (runId: string, environmentId = "env") =>
    callUnary(client.cancelRun.bind(client), { environmentId, runId });

  it("cancels a running run: Cancelled in history, cancelled and finished events, its queued sleep and wait dropped", async () => {
    const s = spec();
    await schedule([s]);
    await store.advance(s.runId, {
      saves: [],
      plans: [
        { opId: "nap", race: false },
        { opId: "w1", race: false, waitEvent: "shop/paid" },
      ],
    });
    await pauses.add({
      runId: s.runId,
      opId: "w1",
      environmentId: "env",
      eventName: "shop/paid",
      expression: "",
      triggerEventJson: "{}",
      createdAtMs: 1,
      timeoutAtMs: 2,
      cancel: false,
    });
    produced = [];
    expect(await cancel(s.runId)).toEqual({ cancelled: true, status: "cancelled" });
    expect(produced.map((p) => p.$case === "run" && p.value.status)).toEqual([
      RunStatus.RUN_STATUS_CANCELLED,
    ]);
    expect(sent.map((e) => [e.name, e.id, e.data._inngest.status])).toEqual([
      ["inngest/function.finished", `${s.runId}.finished`, "Cancelled"],
      ["inngest/function.cancelled", `${s.runId}.cancelled`, "Cancelled"],
    ]);
    expect(removed).toEqual(
      expect.arrayContaining([`${s.runId}:s:nap`, `${s.runId}:t:w1`, `${s.runId}:end`]),
    );
    expect(
      (
        await callUnary(client.listPauses.bind(client), {
          queries: [{ environmentId: "env", eventName: "shop/paid" }],
        })
      ).pauses.map((p) => p.runId),
    ).not.toContain(s.runId);
    // Idempotent: a second cancel reports the same and sends nothing again.
    sent = [];
    expect(await cancel(s.runId)).toEqual({ cancelled: true, status: "cancelled" });
    expect(sent).toEqual([]);
  });

  it("leaves a run that already ended as it is, and refuses a run of another environment", async () => {
    const s = spec();
    await schedule([s]);
    await store.finish(s.runId, "completed", { output: "1" }, 5);
    expect(await cancel(s.runId)).toEqual({ cancelled: false, status: "completed" });
    const other = spec();
    await schedule([other]);
    await expect(cancel(other.runId, "another-env")).rejects.toBeInstanceOf(NotFoundError);
    await expect(cancel("01J000000000000000000NOPE1")).rejects.toBeInstanceOf(NotFoundError);
    expect((await store.load(other.runId))?.status).toBe("running");
  });

  it("cancels a function's live runs started in a range, a page at a time", async () => {
    const fn = `app-bulk-${n}`;
    const runs = [spec({ functionId: fn }), spec({ functionId: fn }), spec({ functionId: fn })];
    for (const r of runs) await schedule([r]);
    const before = (await store.load(runs[2]?.runId ?? ""))?.createdAtMs ?? 0;
    const bulk = (limit: number, to = before) =>
      callUnary(client.cancelFunctionRuns.bind(client), {
        environmentId: "env",
        functionId: fn,
        startedAfterMs: 0,
        startedBeforeMs: to,
        limit,
      });
    // The third run started at `before`, so [0, before) may hold the first two only.
    const first = await bulk(1);
    const second = await bulk(1);
    const rest = await bulk(10);
    const cancelled = [...first.cancelledRunIds, ...second.cancelledRunIds, ...rest.cancelledRunIds];
    expect(cancelled.length).toBeGreaterThanOrEqual(1);
    expect(cancelled).not.toContain(runs[2]?.runId);
    expect(rest.more).toBe(false);
    for (const id of cancelled) expect((await store.load(id))?.status).toBe("cancelled");
    expect((await store.load(runs[2]?.runId ?? ""))?.status).toBe("running");
    const all = await bulk(10, 0);
    expect(all.cancelledRunIds).toEqual([runs[2]?.runId]);
  });

  it("rejects bad cancel requests with INVALID_ARGUMENT saying what is wrong", async () => {
    await expect(cancel("", "env")).rejects.toThrow(/environment_id and run_id are required/);
    const bulk = (over: Record<string, unknown>) =>
      callUnary(client.cancelFunctionRuns.bind(client), {
        environmentId: "env",
        functionId: "app-fn",
        startedAfterMs: 0,
        startedBeforeMs: 0,
        limit: 10,
        ...over,
      });
    await expect(bulk({ functionId: "" })).rejects.toThrow(/function_id are required/);
    await expect(bulk({ limit: 5_000 })).rejects.toThrow(/limit must be 0-1000/);
    await expect(bulk({ startedAfterMs: 10, startedBeforeMs: 5 })).rejects.toThrow(/must be after/);
  });

  it("indexes a run's cancelOn entries as waits that cancel it when an event matches", async () => {
    const s = spec({
      cancelOn: [{ event: "shop/closed", expression: "async.data.shop == 1", timeoutMs: 0 }],
    });
    await schedule([s]);
    const listed = await callUnary(client.listPauses.bind(client), {
      queries: [{ environmentId: "env", eventName: "shop/closed" }],
    });
    const mine = listed.pauses.find((p) => p.runId === s.runId);
    expect(mine).toMatchObject({ opId: "cancel0", expression: "async.data.shop == 1", cancel: true });
    const res = await callUnary(client.resumePauses.bind(client), {
      resumes: [
        {
          runId: s.runId,
          opId: "cancel0",
          environmentId: "env",
          eventName: "shop/closed",
          eventId: "ev-close",
          eventJson: "{}",
          errorJson: "",
          cancel: true,
        },
      ],
    });
    expect(res.results[0]?.resumed).toBe(true);
    expect((await store.load(s.runId))?.status).toBe("cancelled");
    const after = await callUnary(client.listPauses.bind(client), {
      queries: [{ environmentId: "env", eventName: "shop/closed" }],
    });
    expect(after.pauses.map((p) => p.runId)).not.toContain(s.runId);
  });
});
