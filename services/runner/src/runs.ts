// The RunSpec of a run of a synced function: what ExecutorService.ScheduleRuns needs, built in one
// place for event triggers (consumer.ts) and cron ticks (crons.ts); and `startRun`, which starts a
// run outside trigger matching (debounce and batch firings, replays).
import { recordSpan, type TraceParent } from "@stepline/internal/telemetry";
import type { RunSpec } from "@stepline/proto/stepline/executor/v1/executor_service";
import type { Redis } from "ioredis";
import type { ScheduleRuns } from "./consumer.js";
import { runFlow, runSingleton } from "./flow.js";
import { claimRunIds } from "./idempotency.js";
import type { StoredFunction } from "./model.js";

/**
 * The span a run's trace hangs under (docs/telemetry.md): a child of the span that received its
 * event, or, for a run no traced event started (cron, debounce, batch: `parent` undefined), the
 * root of a trace of its own. "" = the run is not traced.
 */
export function runSpan(
  fn: StoredFunction,
  runId: string,
  trigger: string,
  parent: TraceParent | undefined,
  startMs: number,
): TraceParent {
  return recordSpan("run.trigger", {
    parent,
    startMs,
    endMs: Date.now(),
    attributes: { "stepline.run_id": runId, "stepline.function_id": fn.fn.id, "stepline.trigger": trigger },
  });
}

/** `event` is `eventJson` parsed (the caller has it already); `traceParent` is the run's runSpan. */
export function runSpecOf(
  fn: StoredFunction,
  environmentId: string,
  runId: string,
  eventJson: string,
  event: unknown,
  traceParent: TraceParent,
): RunSpec {
  return {
    traceParent,
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

/**
 * Starts one run of `fn` with `eventsJson` (whole events, the first is the run's `event`): claims
 * its run id under `claimKey` (so a repeated start of one key starts one run, for 24 h) and
 * schedules it. Returns the run id.
 */
export async function startRun(
  deps: { redis: Redis; schedule: ScheduleRuns },
  o: { fn: StoredFunction; environmentId: string; claimKey: string; eventsJson: string[]; trigger: string },
): Promise<string> {
  const startMs = Date.now();
  const [runId] = await claimRunIds(deps.redis, [
    { environmentId: o.environmentId, functionId: o.fn.fn.id, eventId: o.claimKey },
  ]);
  const first = o.eventsJson[0] ?? "{}";
  const trace = runSpan(o.fn, runId as string, o.trigger, undefined, startMs);
  const spec = runSpecOf(o.fn, o.environmentId, runId as string, first, JSON.parse(first) as unknown, trace);
  await deps.schedule([{ ...spec, eventsJson: o.eventsJson }]);
  return runId as string;
}
