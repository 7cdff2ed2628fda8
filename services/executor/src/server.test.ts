import { systemClock } from "@stepline/internal/clock";
import { UnavailableError, ValidationError } from "@stepline/internal/errors";
import type { GrpcServer } from "@stepline/internal/grpc";
import { callUnary, createClient, startGrpcServer } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import type { RunSpec } from "@stepline/proto/stepline/executor/v1/executor_service";
import {
  ExecutorServiceClient,
  ExecutorServiceService,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { HistoryEntry } from "./history.js";
import { PauseStore } from "./pauses.js";
import { Resumer } from "./resume.js";
import { Scheduler } from "./schedule.js";
import { executorService } from "./server.js";
import { RunStore } from "./state.js";

const url = requiredEnv("STEPLINE_TEST_REDIS_URL");

const prefix = `test-sched-${uniqueTag()}:s:`;
let redis: Redis;
let store: RunStore;
let pauses: PauseStore;
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
    ...over,
  };
}

const schedule = (runs: RunSpec[]) => callUnary(client.scheduleRuns.bind(client), { runs });

beforeAll(async () => {
  redis = new Redis(url);
  store = new RunStore(redis, 60_000, prefix);
  const scheduler = new Scheduler({
    store,
    enqueue: async (items) => {
      if (enqueueFails) throw new UnavailableError("queue down");
      enqueued.push(...items);
    },
    produce: async (entries) => void produced.push(...entries),
    clock: systemClock,
    defaultMaxAttempts: 5,
  });
  const log = createLogger("executor-test", "silent");
  pauses = new PauseStore(redis, prefix);
  const resumer = new Resumer({
    store,
    pauses,
    enqueue: async (items) => {
      if (enqueueFails) throw new UnavailableError("queue down");
      enqueued.push(...items);
    },
    history: { record: async (entries) => void produced.push(...entries) },
    clock: systemClock,
    log,
  });
  server = await startGrpcServer("127.0.0.1:0", [
    { definition: ExecutorServiceService, implementation: executorService(scheduler, resumer, log) },
  ]);
  client = createClient(ExecutorServiceClient, `127.0.0.1:${server.port}`);
});

beforeEach(() => {
  enqueued = [];
  produced = [];
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
          },
        ],
      }),
    ).rejects.toBeInstanceOf(ValidationError);
  });
});
