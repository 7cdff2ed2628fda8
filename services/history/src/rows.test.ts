import type { HistoryRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { describe, expect, it } from "vitest";
import { isId, rowsOf } from "./rows.js";
import { runRecord, stepRecord } from "./test-support.js";

describe("rowsOf", () => {
  it("keeps only the greatest version of each run within a batch, and one event link per run", () => {
    const v1 = runRecord();
    const v3 = { ...v1, status: RunStatus.RUN_STATUS_COMPLETED, version: 3 };
    const v2 = { ...v1, version: 2 };
    const records: HistoryRecord[] = [v1, v3, v2, v3].map((value) => ({
      traceParent: "",
      record: { $case: "run", value },
    }));

    const { rows, rejected } = rowsOf(records);

    expect(rows.runs).toHaveLength(1);
    expect(rows.runs[0]).toMatchObject({
      run_id: v1.runId,
      version: 3,
      status: RunStatus.RUN_STATUS_COMPLETED,
    });
    expect(rows.event_runs).toEqual([
      {
        environment_id: v1.environmentId,
        event_id: v1.eventId,
        run_id: v1.runId,
        started_at_ms: v1.startedAtMs,
      },
    ]);
    expect(rejected).toEqual([]);
  });

  it("writes no event link for a run without a triggering event (e.g. cron)", () => {
    const { rows } = rowsOf([
      { traceParent: "", record: { $case: "run", value: runRecord({ eventId: "" }) } },
    ]);
    expect(rows.runs).toHaveLength(1);
    expect(rows.event_runs).toEqual([]);
  });

  it("rejects empty records and records with missing or malformed ids instead of storing them", () => {
    const bad: HistoryRecord[] = [
      { traceParent: "", record: undefined },
      { traceParent: "", record: { $case: "run", value: runRecord({ runId: "" }) } },
      { traceParent: "", record: { $case: "run", value: runRecord({ environmentId: "env'1" }) } },
      { traceParent: "", record: { $case: "step", value: stepRecord({ runId: "a b" }) } },
    ];
    const good: HistoryRecord = { traceParent: "", record: { $case: "step", value: stepRecord() } };

    const { rows, rejected } = rowsOf([...bad, good]);

    expect(rejected).toEqual(bad);
    expect(rows.steps).toHaveLength(1);
    expect(rows.runs).toEqual([]);
  });

  it("clamps negative times to zero rather than letting ClickHouse refuse the batch", () => {
    const { rows } = rowsOf([
      { traceParent: "", record: { $case: "run", value: runRecord({ startedAtMs: -5, endedAtMs: -1 }) } },
    ]);
    expect(rows.runs[0]).toMatchObject({ started_at_ms: 0, ended_at_ms: 0 });
  });
});

describe("isId", () => {
  it("accepts ULIDs and simple names, refuses quotes, spaces, control characters and long input", () => {
    expect(["01HX3F4ZP6V9W2Q8R5T7Y1K0MN", "env_1", "acct-2.prod:x"].every(isId)).toBe(true);
    expect(["", "a'b", "a b", "a\nb", "x".repeat(129)].some(isId)).toBe(false);
  });
});
