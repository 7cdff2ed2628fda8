import { ValidationError } from "@stepline/internal/errors";
import type { HistoryRecord, RunRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { RunStatus, SkipReason, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { describe, expect, it } from "vitest";
import { rowsOf } from "./rows.js";
import { runRecord, stepRecord, useTestDatabase } from "./test-support.js";

const t = useTestDatabase();

const asRun = (value: RunRecord): HistoryRecord => ({ traceParent: "", record: { $case: "run", value } });

/** Writes records the way the consumer does: one insert per table for the whole batch. */
async function writeBatch(records: HistoryRecord[]): Promise<void> {
  const { rows } = rowsOf(records);
  await t.store.insert("runs", rows.runs);
  await t.store.insert("event_runs", rows.event_runs);
  await t.store.insert("steps", rows.steps);
  await t.store.insert("skips", rows.skips);
}

function lifecycle(environmentId = "env_1") {
  const running = runRecord({ environmentId });
  const completed: RunRecord = {
    ...running,
    status: RunStatus.RUN_STATUS_COMPLETED,
    endedAtMs: running.startedAtMs + 1_500,
    outputJson: '{"ok":true,"msg":"it\'s done"}',
    version: 2,
  };
  return { running, completed };
}

describe("HistoryStore runs", () => {
  it.each([
    ["Running then Completed, separate batches", [["running"], ["completed"]]],
    ["Completed then Running, separate batches", [["completed"], ["running"]]],
    ["Running, Completed, then Running redelivered", [["running"], ["completed"], ["running"]]],
    ["Completed twice, then Running", [["completed"], ["completed"], ["running"]]],
    ["both in one batch, Completed first and duplicated", [["completed", "running", "completed"]]],
  ])("reads back Completed with its output: %s", async (_name, batches) => {
    const { running, completed } = lifecycle();
    const byName = { running, completed } as Record<string, RunRecord>;
    for (const batch of batches) await writeBatch(batch.map((n) => asRun(byName[n] as RunRecord)));

    const run = await t.store.getRun("env_1", running.runId);

    expect(run).toEqual({ ...completed, version: 2 });
  });

  it("keeps the newest version even after ClickHouse merges the parts", async () => {
    const { running, completed } = lifecycle("env_merge");
    await writeBatch([asRun(completed)]);
    await writeBatch([asRun(running)]);
    await t.ch.command({ query: `OPTIMIZE TABLE ${t.database}.runs FINAL` });

    expect((await t.store.getRun("env_merge", running.runId))?.status).toBe(RunStatus.RUN_STATUS_COMPLETED);
  });

  it("does not find a run through another environment", async () => {
    const { running } = lifecycle("env_a");
    await writeBatch([asRun(running)]);

    expect(await t.store.getRun("env_b", running.runId)).toBeNull();
    expect((await t.store.getRun("env_a", running.runId))?.runId).toBe(running.runId);
  });

  it("answers null for a run it never saw", async () => {
    expect(await t.store.getRun("env_1", "01HZZZZZZZZZZZZZZZZZZZZZZZ")).toBeNull();
  });

  it("refuses malformed ids before they reach SQL", async () => {
    await expect(t.store.getRun("env_1", "x' OR 1=1 --")).rejects.toBeInstanceOf(ValidationError);
    await expect(t.store.getRun("", "01HZZZZZZZZZZZZZZZZZZZZZZZ")).rejects.toBeInstanceOf(ValidationError);
    await expect(t.store.listEventRuns("env_1", "")).rejects.toBeInstanceOf(ValidationError);
  });
});

describe("HistoryStore runs by event", () => {
  it("lists an event's runs oldest first, newest version of each, only in the asked environment", async () => {
    const eventId = "evt-shared-id";
    const base = Date.UTC(2024, 4, 17, 12, 0, 0);
    const late = runRecord({
      environmentId: "env_ev",
      eventId,
      functionId: "fn-b",
      startedAtMs: base + 2_000,
    });
    const early = runRecord({ environmentId: "env_ev", eventId, functionId: "fn-a", startedAtMs: base });
    const earlyDone = {
      ...early,
      status: RunStatus.RUN_STATUS_FAILED,
      errorJson: '{"name":"Error"}',
      version: 3,
    };
    const otherEnv = runRecord({ environmentId: "env_other", eventId, startedAtMs: base - 1_000 });
    const otherEvent = runRecord({ environmentId: "env_ev", eventId: "evt-other", startedAtMs: base - 500 });
    await writeBatch([late, early].map(asRun));
    await writeBatch([earlyDone, otherEnv, otherEvent, early].map(asRun));

    const runs = await t.store.listEventRuns("env_ev", eventId);

    expect(runs.map((r) => [r.runId, r.status, r.version])).toEqual([
      [early.runId, RunStatus.RUN_STATUS_FAILED, 3],
      [late.runId, RunStatus.RUN_STATUS_RUNNING, 1],
    ]);
    expect(await t.store.listEventRuns("env_other", eventId)).toHaveLength(1);
    expect(await t.store.listEventRuns("env_ev", "evt-never-seen")).toEqual([]);
  });
});

describe("HistoryStore steps", () => {
  it("keeps one row per step outcome when records are redelivered", async () => {
    const runId = runRecord().runId;
    const errored = stepRecord({
      runId,
      status: StepStatus.STEP_STATUS_ERRORED,
      outputJson: "",
      errorJson: "{}",
    });
    const retried = stepRecord({ runId, attempt: 1, atMs: errored.atMs + 1_000 });
    const step = (value: typeof errored): HistoryRecord => ({
      traceParent: "",
      record: { $case: "step", value },
    });
    await writeBatch([step(errored), step(retried)]);
    await writeBatch([step(retried), step(errored)]);

    const steps = await t.store.listSteps("env_1", runId);

    expect(steps.map((s) => [s.attempt, s.status, s.atMs])).toEqual([
      [0, StepStatus.STEP_STATUS_ERRORED, errored.atMs],
      [1, StepStatus.STEP_STATUS_COMPLETED, retried.atMs],
    ]);
  });
});

describe("HistoryStore skips", () => {
  it("lists why an event started no run of a function, once per function however often it was recorded", async () => {
    const skip = (functionId: string, reason: SkipReason, atMs: number): HistoryRecord => ({
      traceParent: "",
      record: {
        $case: "skip",
        value: {
          accountId: "a",
          environmentId: "env_skip",
          eventId: "evt-1",
          functionId,
          reason,
          atMs,
          detail: `d-${functionId}`,
        },
      },
    });
    await writeBatch([skip("app-rated", SkipReason.SKIP_REASON_RATE_LIMITED, 1_000)]);
    await writeBatch([
      skip("app-rated", SkipReason.SKIP_REASON_RATE_LIMITED, 1_000),
      skip("app-dup", SkipReason.SKIP_REASON_IDEMPOTENT, 2_000),
    ]);
    expect(await t.store.listEventSkips("env_skip", "evt-1")).toEqual([
      {
        functionId: "app-rated",
        reason: SkipReason.SKIP_REASON_RATE_LIMITED,
        atMs: 1_000,
        detail: "d-app-rated",
      },
      { functionId: "app-dup", reason: SkipReason.SKIP_REASON_IDEMPOTENT, atMs: 2_000, detail: "d-app-dup" },
    ]);
    expect(await t.store.listEventSkips("other_env", "evt-1")).toEqual([]);
  });
});
