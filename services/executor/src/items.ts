// The queue items of a run's calls and resumes, and the payload the executor keeps in them.
// Ids are deterministic (README "Queue items"), so a repeated decision collapses onto one item.

import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { Pause } from "./pauses.js";
import type { RunState } from "./state.js";
import { errorJson, type PlannedOp } from "./steps.js";

/** What a step.invoke resolves with when its function does not finish in time (as Inngest says it). */
export const INVOKE_TIMEOUT_MEMO = JSON.stringify({
  error: { message: "Timed out waiting for invoked function to complete", name: "InngestInvokeTimeoutError" },
});

/** The payload the executor keeps in its queue items. */
export interface ItemPayload {
  /** "step" (discover) or the hashed id of a planned step. */
  stepId: string;
  /** A resume item (a sleep's end): the pending op it resolves before calling, with that memo. */
  op?: string;
  memo?: string;
  /** The op's name, for history. */
  name?: string;
  /** A wait's timeout: the event name it waited for (its index entry is dropped). */
  event?: string;
  /** The run's `timeouts.finish` deadline: cancel the run if it is still running. */
  deadline?: boolean;
  /** Finish what follows the run's end (a cancel enqueues it); never a call to the app. */
  end?: boolean;
}

/**
 * A queue item of one of the run's calls. Ids are deterministic, so a repeated decision collapses
 * onto one item: `c<n>` discovers after a step saved by a discovery call, `p:<op>` runs a planned
 * step, `s:<op>` ends a sleep, `t:<op>` times a wait out, `d:<op>` discovers after a pending op
 * resolved.
 */
export function callItem(run: RunState, suffix: string, payload: ItemPayload, runAtMs = 0): NewItem {
  return {
    id: `${run.runId}:${suffix}`,
    runId: run.runId,
    accountId: run.accountId,
    environmentId: run.environmentId,
    functionId: run.functionId,
    kind: ItemKind.ITEM_KIND_STEP,
    delayMs: 0,
    runAtMs,
    attempt: 0,
    payload: JSON.stringify(payload),
    flow: run.flow,
    runStartedAtMs: run.createdAtMs,
    traceParent: run.traceParent,
  };
}

/** The item of a planned op: a call for a step, a timed resume for a sleep, or a wait's or an invoke's timeout. */
export function planItem(run: RunState, plan: PlannedOp): NewItem {
  switch (plan.kind) {
    case "step":
      return callItem(run, `p:${plan.id}`, { stepId: plan.id });
    case "sleep":
      return callItem(
        run,
        `s:${plan.id}`,
        { stepId: "step", op: plan.id, memo: '{"data":null}', name: plan.name },
        plan.untilMs,
      );
    case "invoke":
      return callItem(
        run,
        `t:${plan.id}`,
        { stepId: "step", op: plan.id, memo: INVOKE_TIMEOUT_MEMO, name: plan.name },
        plan.timeoutAtMs,
      );
    case "wait":
      return callItem(
        run,
        `t:${plan.id}`,
        { stepId: "step", op: plan.id, memo: '{"data":null}', name: plan.name, event: plan.event },
        plan.timeoutAtMs,
      );
  }
}

export function pauseOf(run: RunState, p: Extract<PlannedOp, { kind: "wait" }>, nowMs: number): Pause {
  const events = JSON.parse(run.eventsJson) as unknown[];
  return {
    runId: run.runId,
    opId: p.id,
    environmentId: run.environmentId,
    eventName: p.event,
    expression: p.expression,
    triggerEventJson: JSON.stringify(events[0] ?? {}),
    createdAtMs: nowMs,
    timeoutAtMs: p.timeoutAtMs,
    cancel: false,
  };
}

export function parsePayload(payload: string): ItemPayload {
  try {
    const p = JSON.parse(payload) as Partial<ItemPayload>;
    if (typeof p.stepId === "string" && p.stepId) {
      return {
        stepId: p.stepId,
        ...(typeof p.op === "string" && p.op ? { op: p.op } : {}),
        ...(typeof p.memo === "string" ? { memo: p.memo } : {}),
        ...(typeof p.name === "string" ? { name: p.name } : {}),
        ...(typeof p.event === "string" ? { event: p.event } : {}),
        ...(p.deadline === true ? { deadline: true } : {}),
        ...(p.end === true ? { end: true } : {}),
      };
    }
  } catch {
    // An empty or foreign payload means "discover", the safe default.
  }
  return { stepId: "step" };
}

/**
 * The end of a run whose item the queue dead-lettered (its notice, `<item id>~dead`): every
 * delivery of the item ended in a lost lease (it crashed or stalled its executor), so the run
 * fails instead of waiting forever.
 */
export function deadLetterFailure(noticeId: string): { type: "fail"; reason: string; errorJson: string } {
  const message = `Stepline gave up on this run: its queue item ${noticeId.replace(/~dead$/, "")} was delivered too many times without an answer (each delivery crashed or stalled an executor; see STEPLINE_QUEUE_MAX_DELIVERIES, and list it with: stepline dead-letters list)`;
  return { type: "fail", reason: message, errorJson: errorJson(message) };
}
