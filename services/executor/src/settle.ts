// Settling one call of a run: its decision applied to the run's state (saved before anything
// else), its history recorded, and the item acked, retried or released; or, for plain sequential
// progress while the lease may make more calls, the state the run's next call starts from.

import { ConflictError, NotFoundError } from "@stepline/internal/errors";
import type { Logger } from "@stepline/internal/log";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { ExecuteDeps } from "./execute.js";
import { finalizeRun } from "./finalize.js";
import { stateAfter } from "./hand-off-states.js";
import type { HistoryEntry } from "./history.js";
import { invokedEvent, type OwnEvent } from "./internal-events.js";
import { callItem, parsePayload, pauseOf, planItem } from "./items.js";
import { runsEndedTotal } from "./metrics.js";
import { erroredStep, pendingStep, stepRecord } from "./records.js";
import type { RunState } from "./state.js";
import { RunLimitError } from "./state.js";
import type { Decision } from "./steps.js";
import { errorJson } from "./steps.js";
import { type CallTrace, pendingSpan, stepSpan } from "./tracing.js";
import type { ItemContext } from "./work-loop.js";

/** How a call is settled. */
export interface SettleOptions {
  reqVersion?: number | undefined;
  log: Logger;
  trace: CallTrace;
  /**
   * The lease may make the run's next call itself (execute.ts): plain sequential progress then
   * returns the run's state instead of completing the item.
   */
  mayGoOn?: boolean;
}

/**
 * Applies a decision; a run that ended meanwhile just acks the item, a store failure releases it.
 * Returns the state for the next call on the same lease, or undefined when the item was settled.
 */
export async function settle(
  deps: ExecuteDeps,
  run: RunState,
  item: NewItem,
  ctx: ItemContext,
  decision: Decision,
  opts: SettleOptions,
): Promise<RunState | undefined> {
  const { log } = opts;
  try {
    return await apply(deps, run, item, ctx, decision, opts);
  } catch (err) {
    if (err instanceof RunLimitError) {
      // Nothing of the call was saved: the run fails instead, naming the limit.
      const fail = { type: "fail", reason: err.message, errorJson: errorJson(err.message) } as const;
      return settle(deps, run, item, ctx, fail, { ...opts, mayGoOn: false });
    }
    if (err instanceof ConflictError || err instanceof NotFoundError) {
      log.info("run ended meanwhile; dropping the item");
      try {
        // Ended by a cancel whose own follow-up may have been cut short: finish it here.
        const ended = await deps.store.load(run.runId);
        if (ended && ended.status !== "running" && !ended.finalized) await finalizeRun(deps, ended, ended);
      } catch (e) {
        log.warn({ err: String(e) }, "cannot finish the end of the run; releasing item");
        await ctx.release();
        return undefined;
      }
      await ctx.complete([]);
      return undefined;
    }
    log.warn({ err: String(err) }, "cannot save the outcome; releasing item");
    await ctx.release();
    return undefined;
  }
}

async function apply(
  deps: ExecuteDeps,
  run: RunState,
  item: NewItem,
  ctx: ItemContext,
  decision: Decision,
  { reqVersion, log, trace, mayGoOn }: SettleOptions,
): Promise<RunState | undefined> {
  const now = deps.clock.now();
  const changedVersion = reqVersion !== undefined && reqVersion !== run.reqVersion ? reqVersion : undefined;
  switch (decision.type) {
    case "advance": {
      const stepId = parsePayload(item.payload).stepId;
      const adv = await deps.store.advance(run.runId, {
        saves: decision.saves.map((s) => ({ stepId: s.stepId, memoJson: s.memoJson })),
        ...(changedVersion !== undefined ? { reqVersion: changedVersion } : {}),
        disableImmediate: decision.disableImmediate,
        // A call for a planned step resolves that step's pending op.
        ...(stepId !== "step" ? { resolve: { opId: stepId, resolver: item.id } } : {}),
        planner: item.id,
        plans: decision.plans.map((p) => ({
          opId: p.id,
          race: p.kind === "step" && p.race,
          ...(p.kind === "wait" ? { waitEvent: p.event } : {}),
        })),
      });
      const records = decision.saves
        .filter((_, i) => adv.saved[i])
        .map(
          (s): HistoryEntry => ({
            $case: "step",
            value: stepRecord(run, s, item.attempt, now, trace.startMs),
            traceParent: stepSpan(trace, s, item.attempt, now),
          }),
        );
      const next: NewItem[] = [];
      const starts: Promise<void>[] = [];
      const invoked: OwnEvent[] = [];
      decision.plans.forEach((p, i) => {
        if (adv.planned[i] === "none") return;
        next.push(planItem(run, p));
        // Started once, by the call that planned it (or that call's redelivery).
        if (adv.planned[i] !== "start") return;
        const pending = pendingStep(run, p, now);
        if (pending) records.push({ $case: "step", value: pending, traceParent: pendingSpan(trace, p, now) });
        if (p.kind === "wait") starts.push(deps.pauses.add(pauseOf(run, p, now)));
        if (p.kind === "invoke") invoked.push(invokedEvent(run, p, now));
      });
      // A wait is indexed, and an invoke's function started, before the timeout item exists.
      if (invoked.length > 0)
        starts.push(deps.events.send(run.accountId, run.environmentId, invoked, run.traceParent));
      await Promise.all(starts);
      if (stepId === "step") {
        // A discovery call that saved a step (and planned nothing) discovers again.
        if (decision.plans.length === 0 && decision.saves.length > 0) {
          next.push(callItem(run, `c${adv.callNumber}`, { stepId: "step" }));
        }
      } else if (adv.resolution === "discover") {
        next.push(callItem(run, `d:${stepId}`, { stepId: "step" }));
      }
      // Step records are sent in the background (never awaited on the hot path): the saved state
      // is the truth; a record lost in a crash only thins the history. The run's final record
      // is strict (finalize.ts), and goes after these on the same producer.
      void deps.history.record(records);
      const onlyNext = next.length === 1 ? next[0]?.id : undefined;
      const call = {
        stepId,
        saves: decision.saves,
        planned: decision.plans.length,
        disableImmediate: decision.disableImmediate,
        reqVersion: changedVersion,
      };
      if (onlyNext && mayGoOn) {
        const state = stateAfter(run, call, adv);
        if (state) return state;
      }
      if (deps.handOffs && onlyNext) deps.handOffs.keepAfter(run, call, adv, onlyNext);
      const status = await ctx.complete(next);
      log.debug({ next: next.map((n) => n.id), saved: adv.saved, status }, "call settled");
      return undefined;
    }
    case "retry": {
      if (changedVersion !== undefined) await deps.store.setRequestVersion(run.runId, changedVersion);
      if (decision.step) {
        const value = erroredStep(
          run,
          decision.step.stepId,
          decision.step.name,
          item.attempt,
          now,
          decision.errorJson,
          trace.startMs,
        );
        const step = { ...decision.step, status: "errored" };
        const traceParent = stepSpan(trace, step, item.attempt, now, decision.reason);
        void deps.history.record([{ $case: "step", value, traceParent }]);
      }
      log.info(
        { reason: decision.reason, nextAttempt: decision.attempt, inMs: decision.runAtMs - now },
        "retrying",
      );
      await ctx.retry(decision.runAtMs, decision.attempt);
      return undefined;
    }
    case "complete":
    case "fail": {
      const fin =
        decision.type === "complete"
          ? await deps.store.finish(run.runId, "completed", { output: decision.outputJson }, now)
          : await deps.store.finish(run.runId, "failed", { error: decision.errorJson }, now);
      if (fin.endedNow) runsEndedTotal.inc({ status: fin.status });
      // When any of it fails, settle releases the item and its next delivery does it all again.
      await finalizeRun(deps, run, fin);
      // Success is the common case, once per run: debug, so info stays readable under load.
      if (decision.type === "fail") log.info({ reason: decision.reason }, "run failed");
      else log.debug("run completed");
      await ctx.complete([]);
      return undefined;
    }
  }
}
