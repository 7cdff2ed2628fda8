// History records (RunRecord, StepRecord) built from run state: full snapshots, so the newest
// version of a run wins wherever records are replayed or reordered.

import type { RunRecord, StepRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { RunStatus, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { RunState } from "./state.js";
import type { PlannedOp, StepResult } from "./steps.js";

const RUN_STATUS = {
  running: RunStatus.RUN_STATUS_RUNNING,
  completed: RunStatus.RUN_STATUS_COMPLETED,
  failed: RunStatus.RUN_STATUS_FAILED,
  cancelled: RunStatus.RUN_STATUS_CANCELLED,
} as const;

/** The history snapshot of a run; `outcome` supplies status, version and result. */
export function runRecord(
  run:
    | RunState
    | Pick<RunState, "runId" | "accountId" | "environmentId" | "functionId" | "eventsJson" | "createdAtMs">,
  outcome: Pick<RunState, "status" | "version" | "endedAtMs" | "output" | "error">,
  /** The first event's id when the caller has it already (saves parsing `eventsJson` again). */
  eventId = firstEventId(run.eventsJson),
): RunRecord {
  return {
    runId: run.runId,
    accountId: run.accountId,
    environmentId: run.environmentId,
    functionId: run.functionId,
    eventId,
    status: RUN_STATUS[outcome.status],
    startedAtMs: run.createdAtMs,
    endedAtMs: outcome.endedAtMs,
    outputJson: outcome.output,
    errorJson: outcome.error,
    version: outcome.version,
  };
}

export function stepRecord(
  run: Pick<RunState, "runId" | "accountId" | "environmentId">,
  s: StepResult,
  attempt: number,
  atMs: number,
  /** When the call that ran it began: the attempt's start when the SDK gave no timing. */
  callStartMs = 0,
): StepRecord {
  return {
    // The SDK's timing is in nanoseconds, so its ms have a fraction; int64 takes whole ms only.
    ...stepBase(run, s.stepId, s.name, atMs, Math.floor(s.timing?.startMs ?? callStartMs)),
    status: s.status === "completed" ? StepStatus.STEP_STATUS_COMPLETED : StepStatus.STEP_STATUS_FAILED,
    attempt,
    outputJson: s.status === "completed" ? s.resultJson : "",
    errorJson: s.status === "failed" ? s.resultJson : "",
  };
}

export function erroredStep(
  run: RunState,
  stepId: string,
  name: string,
  attempt: number,
  atMs: number,
  errorJson: string,
  startedAtMs = 0,
): StepRecord {
  return {
    ...stepBase(run, stepId, name, atMs, startedAtMs),
    status: StepStatus.STEP_STATUS_ERRORED,
    attempt,
    errorJson,
  };
}

/** The record of a planned op the run now waits on (null for a plain planned step). */
export function pendingStep(run: RunState, op: PlannedOp, atMs: number): StepRecord | null {
  switch (op.kind) {
    case "step":
      return null;
    case "sleep":
      return {
        ...stepBase(run, op.id, op.name, atMs, atMs),
        status: StepStatus.STEP_STATUS_SLEEPING,
        outputJson: JSON.stringify({ until_ms: op.untilMs }),
      };
    case "wait":
      return {
        ...stepBase(run, op.id, op.name, atMs, atMs),
        status: StepStatus.STEP_STATUS_WAITING,
        outputJson: JSON.stringify({ event: op.event, if: op.expression, timeout_ms: op.timeoutAtMs }),
      };
    case "invoke":
      return {
        ...stepBase(run, op.id, op.name, atMs, atMs),
        status: StepStatus.STEP_STATUS_INVOKING,
        outputJson: JSON.stringify({ function_id: op.functionId, timeout_ms: op.timeoutAtMs }),
      };
  }
}

/** The record of a sleep or wait that ended: Completed with what it resolved to (JSON). */
export function resumedStep(
  run: Pick<RunState, "runId" | "accountId" | "environmentId">,
  stepId: string,
  name: string,
  atMs: number,
  outputJson = "null",
): StepRecord {
  // Its start is the Sleeping/Waiting/Invoking record's; readers pair the two by step id.
  return { ...stepBase(run, stepId, name, atMs, 0), status: StepStatus.STEP_STATUS_COMPLETED, outputJson };
}

function stepBase(
  run: Pick<RunState, "runId" | "accountId" | "environmentId">,
  stepId: string,
  name: string,
  atMs: number,
  startedAtMs: number,
): StepRecord {
  return {
    runId: run.runId,
    accountId: run.accountId,
    environmentId: run.environmentId,
    stepId,
    name,
    status: StepStatus.STEP_STATUS_UNSPECIFIED,
    attempt: 0,
    atMs,
    outputJson: "",
    errorJson: "",
    startedAtMs,
  };
}

/** The id of the first trigger event ("" when it has none). */
export function firstEventId(eventsJson: string): string {
  try {
    const events = JSON.parse(eventsJson) as Array<{ id?: unknown }>;
    const id = events[0]?.id;
    return typeof id === "string" ? id : "";
  } catch {
    return "";
  }
}
