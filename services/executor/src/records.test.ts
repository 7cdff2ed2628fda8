import { HistoryRecord, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { describe, expect, it } from "vitest";
import { stepRecord } from "./records.js";

const run = { runId: "01HRUN0000000000000000000A", accountId: "a", environmentId: "e" };
const completed = {
  stepId: "s1",
  name: "charge",
  status: "completed" as const,
  memoJson: '{"data":1}',
  resultJson: "1",
};

describe("stepRecord", () => {
  it("starts the attempt at the SDK's timing, in whole ms (the SDK's ns leave a fraction), and encodes", () => {
    const r = stepRecord(
      run,
      { ...completed, timing: { startMs: 1796046467630.0002, endMs: 1796046467631.5 } },
      0,
      1796046467700,
      1796046467600,
    );
    expect(r).toMatchObject({
      status: StepStatus.STEP_STATUS_COMPLETED,
      startedAtMs: 1796046467630,
      atMs: 1796046467700,
    });
    expect(() =>
      HistoryRecord.encode({ record: { $case: "step", value: r }, traceParent: "" }),
    ).not.toThrow();
  });

  it("starts the attempt at the call's start when the SDK gave no timing", () => {
    expect(stepRecord(run, completed, 2, 2_000, 1_500).startedAtMs).toBe(1_500);
  });
});
