// ExecutorService over gRPC (server.fixture.ts): scheduling runs, and the waits the runner lists
// and resumes. Singleton, checkpoints and cancellation are in server-control.test.ts.
import { status } from "@grpc/grpc-js";
import { CallStream } from "@stepline/internal/call-stream";
import { UnavailableError, ValidationError } from "@stepline/internal/errors";
import { callUnary } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import type {
  ListPausesAnswer,
  ListPausesCall,
  ListPausesStreamRequest,
  ListPausesStreamResponse,
  RunSpec,
  ScheduleRunsAnswer,
  ScheduleRunsStreamResponse,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ExecutorHarness } from "./server.fixture.js";
import { startExecutorHarness } from "./server.fixture.js";

let h: ExecutorHarness;
const schedule = (runs: RunSpec[]) => callUnary(h.client.scheduleRuns.bind(h.client), { runs });

beforeAll(async () => {
  h = await startExecutorHarness();
});
beforeEach(() => h.reset());
afterAll(async () => {
  await h?.stop();
});

describe("ExecutorService.ScheduleRuns", () => {
  it("creates each run, records it as Running and enqueues its start item", async () => {
    const a = h.spec();
    const b = h.spec({ maxAttempts: 0 });
    const res = await schedule([a, b]);
    expect(res.results).toEqual([
      { runId: a.runId, created: true },
      { runId: b.runId, created: true },
    ]);
    expect(h.rec.enqueued).toEqual([
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
        flow: undefined,
        traceParent: "",
      },
      expect.objectContaining({ id: `${b.runId}:start` }),
    ]);
    expect(
      h.rec.produced.map(
        (p) => p.$case === "run" && [p.value.runId, p.value.status, p.value.version, p.value.eventId],
      ),
    ).toEqual([
      [a.runId, RunStatus.RUN_STATUS_RUNNING, 1, "e1"],
      [b.runId, RunStatus.RUN_STATUS_RUNNING, 1, "e1"],
    ]);
    const sa = await h.store.load(a.runId);
    expect(sa?.eventsJson).toBe('[{"data":{"a":2,"b":1},"id":"e1","name":"x","ts":5}]');
    expect(sa?.maxAttempts).toBe(3);
    expect((await h.store.load(b.runId))?.maxAttempts).toBe(5);
  });

  it("is idempotent: a repeat reports created=false and enqueues the start item again only before the run progressed", async () => {
    const a = h.spec();
    await schedule([a]);
    const again = await schedule([a]);
    expect(again.results).toEqual([{ runId: a.runId, created: false }]);
    expect(h.rec.enqueued.map((i) => i.id)).toEqual([`${a.runId}:start`, `${a.runId}:start`]);

    await h.store.advance(a.runId, { saves: [{ stepId: "s1", memoJson: '{"data":1}' }] });
    h.rec.enqueued = [];
    h.rec.produced = [];
    expect((await schedule([a])).results).toEqual([{ runId: a.runId, created: false }]);
    expect(h.rec.enqueued).toEqual([]);
    expect(h.rec.produced).toEqual([]);
  });

  it("answers UNAVAILABLE when the queue cannot take the start items, and a retry then succeeds", async () => {
    const a = h.spec();
    h.rec.enqueueFails = true;
    await expect(schedule([a])).rejects.toBeInstanceOf(UnavailableError);
    h.rec.enqueueFails = false;
    expect((await schedule([a])).results).toEqual([{ runId: a.runId, created: false }]);
    expect(h.rec.enqueued.map((i) => i.id)).toEqual([`${a.runId}:start`]);
  });

  it.each([
    ["a run id with braces", { runId: "bad{id}" }],
    ["a missing account", { accountId: "" }],
    ["a URL that is not http", { url: "ftp://x/y" }],
    ["no events", { eventsJson: [] }],
    ["an event that is not an object", { eventsJson: ["[1]"] }],
    ["an event that is not JSON", { eventsJson: ["{nope"] }],
  ])("rejects %s with INVALID_ARGUMENT and creates nothing", async (_what, over) => {
    const bad = h.spec(over);
    const good = h.spec();
    await expect(schedule([good, bad])).rejects.toBeInstanceOf(ValidationError);
    expect(await h.store.load(good.runId)).toBeNull();
    expect(h.rec.enqueued).toEqual([]);
  });
});

describe("ExecutorService.ScheduleRunsStream", () => {
  it("schedules each call of a message as ScheduleRuns would, answering each by its id", async () => {
    const a = h.spec();
    const bad = h.spec({ accountId: "" });
    const stream = h.client.scheduleRunsStream();
    const answers: ScheduleRunsAnswer[][] = [];
    let answered: () => void = () => {};
    stream.on("data", (res: ScheduleRunsStreamResponse) => {
      answers.push(res.answers);
      answered();
    });
    const ended = new Promise<void>((resolve) => stream.on("end", () => resolve()));
    const send = (calls: Array<{ id: number; runs: RunSpec[] }>) =>
      new Promise<void>((resolve) => {
        answered = resolve;
        stream.write({ calls });
      });
    await send([
      { id: 7, runs: [a] },
      { id: 8, runs: [bad] },
    ]);
    await send([{ id: 9, runs: [a] }]);
    stream.end();
    await ended;
    // One answer per message, each call's by its id; a refused call fails alone.
    expect(answers.map((m) => m.map((x) => [x.id, x.code, x.results]))).toEqual([
      [
        [7, 0, [{ runId: a.runId, created: true }]],
        [8, status.INVALID_ARGUMENT, []],
      ],
      [[9, 0, [{ runId: a.runId, created: false }]]],
    ]);
    expect(answers.flat()[1]?.message).toMatch(/account/);
    expect(await h.store.load(bad.runId)).toBeNull();
    expect(h.rec.enqueued.map((i) => i.id)).toEqual([`${a.runId}:start`, `${a.runId}:start`]);
  });
});

describe("ExecutorService.ListPauses and ResumePauses", () => {
  const list = (queries: Array<{ environmentId: string; eventName: string }>) =>
    callUnary(h.client.listPauses.bind(h.client), { queries });
  const resume = (runId: string, opId: string, eventId: string) =>
    callUnary(h.client.resumePauses.bind(h.client), {
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
    const s = h.spec();
    await schedule([s]);
    await h.store.advance(s.runId, { saves: [], reqVersion: 2, plans: [{ opId: "w1", race: false }] });
    await h.pauses.add({
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
    h.rec.enqueued = [];
    h.rec.produced = [];
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

  it("lists on ListPausesStream as ListPauses does, a refused call failing alone", async () => {
    const s = await waitingRun();
    const lists = new CallStream<
      ListPausesCall,
      ListPausesAnswer,
      ListPausesStreamRequest,
      ListPausesStreamResponse
    >({
      open: () => h.client.listPausesStream(),
      pack: (calls) => ({ calls }),
      unpack: (res) => res.answers,
      deadlineMs: 5_000,
      sizeOf: () => 0,
      what: "ListPauses",
      peer: "the executor",
      log: createLogger("server-test", "silent"),
    });
    try {
      const [found, none, refused] = await Promise.allSettled([
        lists.call({ queries: [{ environmentId: "env", eventName: "shop/paid" }] }),
        lists.call({ queries: [{ environmentId: "env", eventName: "shop/other" }] }),
        lists.call({ queries: [{ environmentId: "env", eventName: "" }] }),
      ]);
      expect(found).toMatchObject({ status: "fulfilled", value: { code: 0 } });
      const pauses = found.status === "fulfilled" ? found.value.pauses : [];
      expect(pauses.filter((p) => p.runId === s.runId).map((p) => p.opId)).toEqual(["w1"]);
      expect(pauses.every((p) => p.environmentId === "env" && p.eventName === "shop/paid")).toBe(true);
      expect(none.status).toBe("fulfilled");
      const other = none.status === "fulfilled" ? none.value.pauses : [];
      expect(other.filter((p) => p.runId === s.runId)).toEqual([]);
      expect(refused).toMatchObject({ status: "rejected", reason: expect.any(ValidationError) });
    } finally {
      await lists.close();
    }
  });

  it("resumes a wait once: the event is saved as its result, a discovery call is enqueued, the wait leaves the index", async () => {
    const s = await waitingRun();
    const first = await resume(s.runId, "w1", "ev-1");
    expect(first.results).toEqual([{ runId: s.runId, opId: "w1", resumed: true }]);
    expect(h.rec.enqueued.map((i) => [i.id, i.payload])).toEqual([[`${s.runId}:d:w1`, '{"stepId":"step"}']]);
    expect((await h.store.load(s.runId))?.steps.get("w1")).toBe(
      '{"data":{"data":{"order":7},"id":"ev-1","name":"shop/paid"}}',
    );
    expect(
      (await list([{ environmentId: "env", eventName: "shop/paid" }])).pauses.map((p) => p.runId),
    ).not.toContain(s.runId);
    // The same event again (a Kafka redelivery) gets the same answer; another event loses.
    expect((await resume(s.runId, "w1", "ev-1")).results[0]?.resumed).toBe(true);
    expect((await resume(s.runId, "w1", "ev-2")).results[0]?.resumed).toBe(false);
    expect(h.rec.enqueued.map((i) => i.id)).toEqual([`${s.runId}:d:w1`, `${s.runId}:d:w1`]);
  });

  it("answers UNAVAILABLE when the discovery call cannot be enqueued, and a retry then resumes", async () => {
    const s = await waitingRun();
    h.rec.enqueueFails = true;
    await expect(resume(s.runId, "w1", "ev-1")).rejects.toBeInstanceOf(UnavailableError);
    // The wait is still indexed, so the retry finds it.
    expect(
      (await list([{ environmentId: "env", eventName: "shop/paid" }])).pauses.map((p) => p.runId),
    ).toContain(s.runId);
    h.rec.enqueueFails = false;
    expect((await resume(s.runId, "w1", "ev-1")).results[0]?.resumed).toBe(true);
    expect(h.rec.enqueued.map((i) => i.id)).toEqual([`${s.runId}:d:w1`]);
  });

  it("keeps a wait indexed while the event that won it has not carried the run on, whatever loses meanwhile", async () => {
    const s = await waitingRun();
    h.rec.enqueueFails = true;
    await expect(resume(s.runId, "w1", "ev-1")).rejects.toBeInstanceOf(UnavailableError);
    h.rec.enqueueFails = false;
    // Another matching event loses (ev-1 resolved the wait) and must leave the entry alone.
    expect((await resume(s.runId, "w1", "ev-2")).results[0]?.resumed).toBe(false);
    const listed = await callUnary(h.client.listPauses.bind(h.client), {
      queries: [{ environmentId: "env", eventName: "shop/paid" }],
    });
    expect(listed.pauses.map((p) => p.runId)).toContain(s.runId);
    // The runner's retry of ev-1 finds it, enqueues the discovery call, and only then drops it.
    expect((await resume(s.runId, "w1", "ev-1")).results[0]?.resumed).toBe(true);
    expect(h.rec.enqueued.map((i) => i.id)).toEqual([`${s.runId}:d:w1`]);
  });

  it("does not resume a wait of an ended or unknown run", async () => {
    const s = await waitingRun();
    await h.store.finish(s.runId, "failed", { error: "{}" }, 1);
    expect((await resume(s.runId, "w1", "ev-1")).results[0]?.resumed).toBe(false);
    expect((await resume("01J00000000000000000GHOST1", "w1", "ev-1")).results[0]?.resumed).toBe(false);
    expect(h.rec.enqueued).toEqual([]);
  });

  it("rejects a resume without an event id, or with an event that is not JSON", async () => {
    await expect(
      callUnary(h.client.resumePauses.bind(h.client), {
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
      callUnary(h.client.resumePauses.bind(h.client), {
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
