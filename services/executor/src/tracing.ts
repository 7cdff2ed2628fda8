// The executor's spans (docs/telemetry.md): one per saved or failed step, under the span of the
// call (or checkpoint) that reported it, timed by the SDK's own `timing` when it sent one.
import { recordSpan, type TraceParent } from "@stepline/internal/telemetry";
import type { PlannedOp, StepResult } from "./steps.js";

/** The span a call's steps hang under, and when the call began (epoch ms). */
export interface CallTrace {
  parent: TraceParent;
  startMs: number;
}

/** The statuses a step's span names for ops the run waits on, by op kind. */
const PENDING_STATUS = { sleep: "sleeping", wait: "waiting", invoke: "invoking" } as const;

/**
 * The span of an op the run now waits on (a sleep spans its whole duration; a wait or an invoke is
 * a mark at its start, and its resolution gets a span of its own); returns its traceparent.
 */
export function pendingSpan(trace: CallTrace, op: PlannedOp, nowMs: number): TraceParent {
  if (op.kind === "step") return "";
  const timing = op.kind === "sleep" ? { startMs: nowMs, endMs: Math.max(nowMs, op.untilMs) } : undefined;
  return stepSpan(trace, { stepId: op.id, name: op.name, status: PENDING_STATUS[op.kind], timing }, 0, nowMs);
}

/** The span of a waited-on op that resolved now (a sleep ended, an event or a child's end came). */
export function resolvedSpan(parent: TraceParent, stepId: string, name: string, nowMs: number): TraceParent {
  return stepSpan({ parent, startMs: nowMs }, { stepId, name, status: "resolved" }, 0, nowMs);
}

/** Records a step's span; returns its traceparent for the step's history record ("" = untraced). */
export function stepSpan(
  trace: CallTrace,
  step: Pick<StepResult, "stepId" | "name" | "timing"> & { status: string },
  attempt: number,
  endMs: number,
  error?: string,
): TraceParent {
  if (!trace.parent) return "";
  return recordSpan("step", {
    parent: trace.parent,
    startMs: step.timing?.startMs ?? trace.startMs,
    endMs: step.timing?.endMs ?? endMs,
    attributes: {
      "stepline.step_id": step.stepId,
      "stepline.step_name": step.name,
      "stepline.step_status": step.status,
      "stepline.attempt": attempt,
    },
    error,
  });
}
