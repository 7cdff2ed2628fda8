// The function's `timeouts` as the item handler applies them (README "Cancellation and time
// limits"): `start` on the run's first delivery, `finish` through its deadline item.
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { ItemPayload } from "./items.js";
import type { RunState } from "./state.js";

export function isStartItem(item: NewItem): boolean {
  return item.id === `${item.runId}:start`;
}

/** Why the run must be cancelled now for exceeding a `timeouts` limit, or null. */
export function timeLimit(run: RunState, item: NewItem, payload: ItemPayload, nowMs: number): string | null {
  if (payload.deadline) return `the run exceeded timeouts.finish (${run.finishTimeoutMs} ms)`;
  // Only before the first call ever ran: a retried or redelivered start item belongs to a run
  // that has started.
  const unstarted = isStartItem(item) && item.attempt === 0 && run.calls === 0 && run.stack.length === 0;
  if (run.startTimeoutMs > 0 && unstarted && nowMs - run.createdAtMs > run.startTimeoutMs) {
    return `the run did not start within timeouts.start (${run.startTimeoutMs} ms)`;
  }
  return null;
}
