// Cancelling runs: by id (REST, gRPC, a `cancelOn` event, a `timeouts` limit) or in bulk by
// function and start time. A cancelled run ends at once in state (finish-run.lua: the first end
// wins, so a run that completed meanwhile stays completed); then finalize.ts records it, sends
// `inngest/function.cancelled` and `.finished`, and drops its queued sleeps, timeouts and waits.
// A call in flight when the run is cancelled finishes, but its result is refused (the run has
// ended) and nothing further is called.

import type { Clock } from "@stepline/internal/clock";
import { NotFoundError, ValidationError } from "@stepline/internal/errors";
import type { Logger } from "@stepline/internal/log";
import type { FinalizeDeps } from "./finalize.js";
import { finalizeRun } from "./finalize.js";
import { callItem } from "./items.js";
import { runsEndedTotal } from "./metrics.js";
import type { RunStatus } from "./state.js";

export interface CancelDeps extends FinalizeDeps {
  clock: Clock;
  log: Logger;
}

/** The most runs one bulk call cancels. */
export const MAX_BULK = 1_000;

export class Canceller {
  constructor(private readonly deps: CancelDeps) {}

  /**
   * Cancels a run. `environmentId`, when given, must be the run's (NotFoundError otherwise, so
   * one tenant cannot probe another's run ids). Returns the run's status after the call.
   */
  async cancel(
    runId: string,
    opts: { environmentId?: string; reason: string },
  ): Promise<{ cancelled: boolean; status: RunStatus }> {
    const run = await this.deps.store.load(runId);
    if (!run || (opts.environmentId !== undefined && run.environmentId !== opts.environmentId)) {
      throw new NotFoundError(`run ${runId} not found`);
    }
    if (run.status === "running") {
      // What follows the end is owed durably before the run ends: should this process die after
      // the end is written, the `end` item does it (it never calls the app).
      await this.deps.enqueue([callItem(run, "end", { stepId: "step", end: true })]);
    }
    const error = JSON.stringify({ name: "Cancelled", message: opts.reason });
    const fin = await this.deps.store.finish(runId, "cancelled", { error }, this.deps.clock.now());
    if (fin.status !== "cancelled") return { cancelled: false, status: fin.status };
    if (fin.endedNow) {
      runsEndedTotal.inc({ status: "cancelled" });
      this.deps.log.info({ runId, reason: opts.reason }, "run cancelled");
    }
    // Reloaded: no op can become pending once the run has ended, so this sees them all.
    const ended = await this.deps.store.load(runId);
    if (ended && !ended.finalized) await finalizeRun(this.deps, ended, ended);
    return { cancelled: true, status: "cancelled" };
  }

  /** Cancels up to `limit` live runs of a function started in [fromMs, toMs), oldest first. */
  async cancelFunctionRuns(q: {
    environmentId: string;
    functionId: string;
    fromMs: number;
    toMs: number;
    limit: number;
  }): Promise<{ runIds: string[]; more: boolean }> {
    if (!q.environmentId || !q.functionId)
      throw new ValidationError("environment_id and function_id are required");
    if (q.limit < 0 || q.limit > MAX_BULK) throw new ValidationError(`limit must be 0-${MAX_BULK}`);
    const to = q.toMs > 0 ? q.toMs : this.deps.clock.now() + 1;
    if (q.fromMs < 0 || to <= q.fromMs)
      throw new ValidationError("started_before_ms must be after started_after_ms");
    const { runIds, more } = await this.deps.live.range(
      q.environmentId,
      q.functionId,
      q.fromMs,
      to,
      q.limit || MAX_BULK,
    );
    const cancelled: string[] = [];
    for (const runId of runIds) {
      try {
        const r = await this.cancel(runId, { environmentId: q.environmentId, reason: "cancelled in bulk" });
        if (r.cancelled) cancelled.push(runId);
        // Ended, yet still indexed: its end was dealt with before the index had it (its start
        // item runs while it is being indexed, schedule.ts), so nothing else will drop it.
        else await this.deps.live.remove(q.environmentId, q.functionId, runId);
      } catch (err) {
        // A run whose state expired under the index: drop it from the index and go on.
        if (!(err instanceof NotFoundError)) throw err;
        await this.deps.live.remove(q.environmentId, q.functionId, runId);
      }
    }
    return { runIds: cancelled, more };
  }
}
