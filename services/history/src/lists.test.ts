// The dashboard's reads: pages of runs and events (filters, cursors), one event, and a run's steps.
import { ValidationError } from "@stepline/internal/errors";
import { newId, ulidTimePrefix } from "@stepline/internal/ids";
import type { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import type { HistoryRecord, RunRecord, StepRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { beforeAll, describe, expect, it } from "vitest";
import { rowsOf } from "./rows.js";
import { runRecord, stepRecord, useTestDatabase } from "./test-support.js";

const t = useTestDatabase();

async function write(records: HistoryRecord[], events: EventRecord[] = []): Promise<void> {
  const { rows, rejected } = rowsOf(records, events);
  expect(rejected).toEqual([]);
  for (const table of ["runs", "event_runs", "steps", "events"] as const)
    await t.store.insert(table, rows[table]);
}
const run = (value: RunRecord): HistoryRecord => ({ traceParent: "", record: { $case: "run", value } });
const step = (value: StepRecord): HistoryRecord => ({ traceParent: "", record: { $case: "step", value } });

function event(environmentId: string, name: string, receivedAtMs: number, eventId = newId()): EventRecord {
  const eventJson = JSON.stringify({ name, data: { n: receivedAtMs }, id: eventId, ts: receivedAtMs });
  return { accountId: "acct_1", environmentId, eventId, receivedAtMs, eventJson, traceParent: "", name };
}

const all = {
  statuses: [] as RunStatus[],
  functionId: "",
  eventId: "",
  startedAfterMs: 0,
  startedBeforeMs: 0,
  cursor: "",
};

describe("HistoryStore.listRuns", () => {
  // Seven runs, one second apart: ids ascend with start (ULIDs), the odd ones of fn-b.
  const env = "env_runs";
  const t0 = Date.UTC(2024, 5, 1, 10, 0, 0);
  const runs = Array.from({ length: 7 }, (_, i) =>
    runRecord({ environmentId: env, functionId: i % 2 ? "fn-b" : "fn-a", startedAtMs: t0 + i * 1000 }),
  );
  beforeAll(async () => {
    await write(runs.map(run));
    // The newest two complete later, in another insert: their status is their newest version's.
    const done = runs.slice(5).map((r) => ({ ...r, status: RunStatus.RUN_STATUS_COMPLETED, version: 2 }));
    await write(done.map(run));
  });

  it("pages newest first with a cursor until the last page, which has none", async () => {
    const seen: string[] = [];
    let cursor = "";
    for (const size of [3, 3, 1]) {
      const page = await t.store.listRuns({ ...all, environmentId: env, limit: 3, cursor });
      expect(page.runs).toHaveLength(size);
      seen.push(...page.runs.map((r) => r.runId));
      cursor = page.nextCursor;
    }
    expect(cursor).toBe("");
    expect(seen).toEqual(runs.map((r) => r.runId).reverse());
  });

  it("filters by current status, function and start time", async () => {
    const ids = async (f: Partial<typeof all>) =>
      (await t.store.listRuns({ ...all, environmentId: env, limit: 50, ...f })).runs.map((r) => r.runId);
    const id = (i: number) => runs[i]?.runId;
    expect(await ids({ statuses: [RunStatus.RUN_STATUS_COMPLETED] })).toEqual([id(6), id(5)]);
    expect(await ids({ statuses: [RunStatus.RUN_STATUS_RUNNING], functionId: "fn-b" })).toEqual([
      id(3),
      id(1),
    ]);
    expect(await ids({ startedAfterMs: t0 + 2000, startedBeforeMs: t0 + 4000 })).toEqual([id(3), id(2)]);
    const completed = await t.store.listRuns({ ...all, environmentId: env, limit: 1, statuses: [2] });
    expect(completed.runs[0]).toMatchObject({
      runId: id(6),
      status: RunStatus.RUN_STATUS_COMPLETED,
      version: 2,
    });
  });

  it("filters by triggering event and sees no other environment", async () => {
    const target = runs[4] as RunRecord;
    const page = await t.store.listRuns({ ...all, environmentId: env, eventId: target.eventId, limit: 50 });
    expect(page.runs.map((r) => r.runId)).toEqual([target.runId]);
    expect((await t.store.listRuns({ ...all, environmentId: "env_other", limit: 50 })).runs).toEqual([]);
  });

  it("finds runs older than its first windows, in order, across pages", async () => {
    // Run ids made 40 days, 3 days and 30 minutes ago: the last hour holds less than a page.
    const now = Date.now();
    const aged = [40 * 86_400_000, 3 * 86_400_000, 1_800_000].map((ago, i) =>
      runRecord({
        environmentId: "env_windows",
        runId: `${ulidTimePrefix(now - ago)}${"0".repeat(15)}${i}`,
        startedAtMs: now - ago,
      }),
    );
    await write(aged.map(run));
    const first = await t.store.listRuns({ ...all, environmentId: "env_windows", limit: 2 });
    expect(first.runs.map((r) => r.runId)).toEqual([aged[2]?.runId, aged[1]?.runId]);
    const second = await t.store.listRuns({
      ...all,
      environmentId: "env_windows",
      limit: 2,
      cursor: first.nextCursor,
    });
    expect(second.runs.map((r) => r.runId)).toEqual([aged[0]?.runId]);
    expect(second.nextCursor).toBe("");
  });

  it("refuses a cursor it did not make", async () => {
    await expect(
      t.store.listRuns({ ...all, environmentId: env, limit: 5, cursor: "'; DROP" }),
    ).rejects.toThrow(ValidationError);
  });
});

describe("HistoryStore events", () => {
  const env = "env_events";
  const t0 = Date.UTC(2024, 5, 2, 9, 0, 0);
  const events = [
    event(env, "shop/order.placed", t0),
    event(env, "shop/order.paid", t0 + 10),
    event(env, "shop/order.placed", t0 + 20),
    event(env, "shop/order.placed", t0 + 20),
  ];
  beforeAll(async () => {
    await write([], events);
    await write([], [events[0] as EventRecord]); // a redelivery is read once
  });

  it("pages newest first and filters by name", async () => {
    const filter = { environmentId: env, name: "", receivedAfterMs: 0, receivedBeforeMs: 0, cursor: "" };
    const first = await t.store.listEvents({ ...filter, limit: 2 });
    const second = await t.store.listEvents({ ...filter, limit: 2, cursor: first.nextCursor });
    expect(second.nextCursor).toBe("");
    const ids = [...first.events, ...second.events].map((e) => e.eventId);
    const [e0, e1, e2, e3] = events.map((e) => e.eventId);
    expect(ids).toEqual([...[e2, e3].sort().reverse(), e1, e0]);
    const placed = await t.store.listEvents({ ...filter, name: "shop/order.placed", limit: 10 });
    expect(placed.events.map((e) => e.name)).toEqual(Array(3).fill("shop/order.placed"));
    expect(placed.events[2]).toEqual({
      eventId: e0,
      name: "shop/order.placed",
      receivedAtMs: t0,
      eventJson: events[0]?.eventJson,
    });
  });

  it("gets one event by id, and null for an unknown one or another environment", async () => {
    const e = events[1] as EventRecord;
    expect((await t.store.getEvent(env, e.eventId))?.eventJson).toBe(e.eventJson);
    expect(await t.store.getEvent(env, "no-such-event")).toBeNull();
    expect(await t.store.getEvent("env_other", e.eventId)).toBeNull();
  });
});

describe("HistoryStore.listSteps", () => {
  it("gives each attempt's start and outcome time", async () => {
    const runId = newId();
    const s = stepRecord({ runId, environmentId: "env_steps", startedAtMs: 1_000, atMs: 1_250 });
    await write([step(s)]);
    const [got] = await t.store.listSteps("env_steps", runId);
    expect(got).toMatchObject({ stepId: s.stepId, startedAtMs: 1_000, atMs: 1_250 });
  });
});

describe("HistoryStore function figures", () => {
  const env = "env_figures";
  const now = Date.UTC(2026, 10, 30, 12, 0, 0);
  const ended = (
    functionId: string,
    status: RunStatus,
    endedAgoMs: number,
    durationMs: number,
  ): RunRecord[] => {
    const first = runRecord({ environmentId: env, functionId, startedAtMs: now - endedAgoMs - durationMs });
    const last = { ...first, status, endedAtMs: now - endedAgoMs, version: 2 };
    return [first, last];
  };
  beforeAll(async () => {
    const C = RunStatus.RUN_STATUS_COMPLETED;
    const F = RunStatus.RUN_STATUS_FAILED;
    const records = [
      ...ended("fn-a", C, 10 * 60_000, 100), // 10 min ago
      ...ended("fn-a", F, 20 * 60_000, 300), // 20 min ago
      ...ended("fn-a", C, 5 * 3_600_000, 200), // 5 h ago
      ...ended("fn-a", C, 30 * 3_600_000, 200), // 30 h ago: outside the day
      ...ended("fn-b", F, 2 * 3_600_000, 50),
      runRecord({ environmentId: env, functionId: "fn-a", startedAtMs: now - 1000 }), // still running
    ];
    await write(records.map(run));
    const [first] = ended("fn-a", C, 10 * 60_000, 100);
    await write([run(first as RunRecord)]); // a redelivered record is counted once
  });

  it("counts each function's ended runs and failures over the last hour and day", async () => {
    expect(await t.store.functionStats(env, now)).toEqual([
      { functionId: "fn-a", runsHour: 2, failedHour: 1, runsDay: 3, failedDay: 1 },
      { functionId: "fn-b", runsHour: 0, failedHour: 0, runsDay: 1, failedDay: 1 },
    ]);
  });

  it("buckets one function's ended runs with failures and duration percentiles", async () => {
    const points = await t.store.functionMetrics({
      environmentId: env,
      functionId: "fn-a",
      fromMs: now - 6 * 3_600_000,
      toMs: now,
      bucketSeconds: 3600,
    });
    const hour = (h: number) => Math.floor((now - h * 3_600_000) / 3_600_000) * 3_600_000;
    expect(points).toEqual([
      { atMs: hour(5), runs: 1, failed: 0, p50Ms: 200, p99Ms: 200 },
      { atMs: hour(1), runs: 2, failed: 1, p50Ms: expect.any(Number), p99Ms: expect.any(Number) },
    ]);
    const last = points[1];
    expect(last?.p50Ms).toBeGreaterThanOrEqual(100);
    expect(last?.p50Ms).toBeLessThanOrEqual(300);
    expect(last?.p99Ms).toBeGreaterThan(250);
  });
});
