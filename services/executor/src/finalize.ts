// What follows a run's end, before its last item is acked (each step idempotent, so a redelivered
// item of an ended run simply does it all again until it is marked done): the final history
// record, Stepline's own events (`function.finished`, `.failed`, `.cancelled`), for a run started
// by a step.invoke the parent's invoke op resolved with the output or error (first resolver wins,
// as for every pending op), and the run's leftovers dropped: queued sleeps and timeouts, waits and
// `cancelOn` entries in the wait index, its place among the function's live runs.

import { ConflictError, NotFoundError } from "@stepline/internal/errors";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import canonicalize from "canonicalize";
import type { HistoryEntry } from "./history.js";
import type { EventSender } from "./internal-events.js";
import { correlationOf, endEvents, parseOr } from "./internal-events.js";
import { callItem } from "./items.js";
import type { LiveRuns } from "./live-runs.js";
import type { PauseStore } from "./pauses.js";
import { resumedStep, runRecord } from "./records.js";
import type { SingletonLocks } from "./singleton.js";
import type { FinishResult, RunState, RunStore } from "./state.js";
import { errorJson } from "./steps.js";
import { resolvedSpan } from "./tracing.js";

export interface FinalizeDeps {
  store: RunStore;
  pauses: PauseStore;
  live: LiveRuns;
  events: EventSender;
  enqueue(items: NewItem[]): Promise<void>;
  /** QueueService.Remove: drops queued (not leased) items by id. */
  remove(items: Array<{ itemId: string; accountId: string }>): Promise<void>;
  history: { record(e: HistoryEntry[]): Promise<void>; produce(e: HistoryEntry[]): Promise<void> };
  /** `singleton` locks: a run gives its key back when it ends. */
  singletons: Pick<SingletonLocks, "release">;
  clock: { now(): number };
}

/** Records the end, sends the end events and reports to an invoking parent; throws to be retried. */
export async function finalizeRun(
  deps: FinalizeDeps,
  run: RunState,
  outcome: Pick<FinishResult, "status" | "version" | "endedAtMs" | "output" | "error">,
): Promise<void> {
  // Each of these is idempotent and none needs another's result, so they go at once (a run's end
  // waits for the slowest, not for the sum). When any fails, the item is released and its next
  // delivery does them all again; only then is the end marked done. The final record is strict:
  // Kafka has it before the item is acked.
  await Promise.all([
    deps.history.produce([{ $case: "run", value: runRecord(run, outcome), traceParent: run.traceParent }]),
    deps.events.send(run.accountId, run.environmentId, endEvents(run, outcome), run.traceParent),
    reportToParent(deps, run, outcome),
    dropLeftovers(deps, run),
  ]);
  await deps.store.markFinalized(run.runId);
}

/**
 * Fails a running run outside of a call (a checkpoint past one of the run's limits), with
 * `message` as its error, and does what follows the end. Nothing when the run is not running.
 */
export async function failRun(deps: FinalizeDeps, runId: string, message: string): Promise<void> {
  const run = await deps.store.load(runId);
  if (run?.status !== "running") return;
  const fin = await deps.store.finish(runId, "failed", { error: errorJson(message) }, deps.clock.now());
  await finalizeRun(deps, run, fin);
}

/** Queued items, waits and `cancelOn` entries a run leaves behind when it ends early. */
async function dropLeftovers(deps: FinalizeDeps, run: RunState): Promise<void> {
  // Only what may be queued: most runs end with nothing pending, and then cost no Remove call.
  const items: string[] = [];
  if (run.finishTimeoutMs > 0) items.push(`${run.runId}:deadline`);
  if (run.status === "cancelled") items.push(`${run.runId}:end`);
  const work: Promise<void>[] = [];
  for (const [op, mode] of run.pending) {
    items.push(`${run.runId}:s:${op}`, `${run.runId}:t:${op}`, `${run.runId}:p:${op}`);
    if (mode.startsWith("w:")) work.push(deps.pauses.remove(run.environmentId, mode.slice(2), run.runId, op));
  }
  run.cancelOn.forEach((c, n) => {
    work.push(deps.pauses.remove(run.environmentId, c.event, run.runId, `cancel${n}`));
  });
  if (items.length > 0) work.push(deps.remove(items.map((itemId) => ({ itemId, accountId: run.accountId }))));
  work.push(deps.live.remove(run.environmentId, run.functionId, run.runId));
  if (run.singletonKey !== undefined) {
    const ref = { environmentId: run.environmentId, functionId: run.functionId, keyHash: run.singletonKey };
    work.push(deps.singletons.release(ref, run.runId));
  }
  await Promise.all(work);
}

async function reportToParent(
  deps: FinalizeDeps,
  run: RunState,
  outcome: Pick<FinishResult, "status" | "output" | "error">,
): Promise<void> {
  const c = correlationOf(run);
  if (!c) return;
  const value =
    outcome.status === "completed"
      ? { data: parseOr(outcome.output, null) }
      : {
          error: parseOr(outcome.error, {
            name: "Error",
            message: `the invoked function's run was ${outcome.status}`,
          }),
        };
  const memoJson = canonicalize(value) ?? '{"data":null}';
  try {
    const adv = await deps.store.advance(c.parentRunId, {
      saves: [],
      resolve: { opId: c.opId, resolver: `c:${run.runId}`, memoJson },
      limits: false,
    });
    if (adv.resolution === "lost") return;
    const parent = await deps.store.load(c.parentRunId);
    if (!parent) return;
    const output = "data" in value ? JSON.stringify(value.data) : "null";
    const step = resumedStep(parent, c.opId, c.opId, deps.clock.now(), output);
    const traceParent = resolvedSpan(parent.traceParent, c.opId, c.opId, step.atMs);
    // Not awaited: the parent goes on without waiting for its record's linger (history.ts).
    void deps.history.record([{ $case: "step", value: step, traceParent }]);
    if (adv.resolution === "discover")
      await deps.enqueue([callItem(parent, `d:${c.opId}`, { stepId: "step" })]);
  } catch (err) {
    // The parent ended or expired meanwhile: nobody waits for this result any more.
    if (err instanceof ConflictError || err instanceof NotFoundError) return;
    throw err;
  }
}
