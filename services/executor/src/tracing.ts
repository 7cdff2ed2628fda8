// The executor's spans (docs/telemetry.md): one per saved or failed step, under the span of the
// call (or checkpoint) that reported it, timed by the SDK's own `timing` when it sent one.
import { recordSpan, type TraceParent } from "@stepline/internal/telemetry";
import type { StepResult } from "./steps.js";

/** The span a call's steps hang under, and when the call began (epoch ms). */
export interface CallTrace {
  parent: TraceParent;
  startMs: number;
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
