// The RunSpec of a run of a synced function: what ExecutorService.ScheduleRuns needs, built in one
// place for event triggers (consumer.ts) and cron ticks (crons.ts).
import type { RunSpec } from "@stepline/proto/stepline/executor/v1/executor_service";
import { runFlow, runSingleton } from "./flow.js";
import type { StoredFunction } from "./model.js";

/** `event` is `eventJson` parsed (the caller has it already). */
export function runSpecOf(
  fn: StoredFunction,
  environmentId: string,
  runId: string,
  eventJson: string,
  event: unknown,
): RunSpec {
  return {
    runId,
    accountId: fn.accountId,
    environmentId,
    appId: fn.appId,
    functionId: fn.fn.id,
    functionVersion: fn.fn.version,
    url: fn.fn.url,
    maxAttempts: fn.fn.retries + 1,
    eventsJson: [eventJson],
    // Registries synced before these fields existed lack them.
    cancelOn: (fn.fn.cancel ?? []).map((c) => ({
      event: c.event,
      expression: c.expression,
      timeoutMs: c.timeoutMs,
    })),
    startTimeoutMs: fn.fn.startTimeoutMs ?? 0,
    finishTimeoutMs: fn.fn.finishTimeoutMs ?? 0,
    flow: runFlow(fn.fn, event),
    singleton: runSingleton(fn.fn, event),
  };
}
