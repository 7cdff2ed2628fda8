// Carrying out one leased item: load the run, call the app with its memo, interpret the answer,
// write state, record history, then tell the queue. The order is the invariant: a result is saved
// before the completion that acks the item and enqueues the next call, so a step whose result is
// saved is never run again (a re-leased item replays with the saved memo).

import type { Clock } from "@stepline/internal/clock";
import { ConflictError, NotFoundError } from "@stepline/internal/errors";
import type { Logger } from "@stepline/internal/log";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { AppClient } from "./app-client.js";
import { buildCallBody } from "./app-client.js";
import type { HistoryEntry } from "./history.js";
import { callSeconds, callsTotal, runsEndedTotal } from "./metrics.js";
import { erroredStep, runRecord, stepRecord } from "./records.js";
import type { SigningKeys } from "./signing-keys.js";
import type { RunState, RunStore } from "./state.js";
import type { BackoffPolicy, Decision } from "./steps.js";
import { backoffDelayMs, interpret } from "./steps.js";
import type { ItemContext, ItemHandler } from "./work-loop.js";
import { SHUTDOWN } from "./work-loop.js";

export interface ExecuteDeps {
  store: RunStore;
  app: AppClient;
  /** Null in dev mode: calls are not signed. */
  keys: SigningKeys | null;
  /**
   * `record` may leave records to a background retry (step records); `produce` resolves only once
   * Kafka has them: a run's final record goes that way, before its last item is acked, so a crash
   * or a full backlog can never leave the run Running in history for good.
   */
  history: {
    record(entries: HistoryEntry[]): Promise<void>;
    produce(entries: HistoryEntry[]): Promise<void>;
  };
  clock: Clock;
  log: Logger;
  backoff: BackoffPolicy;
  random?: () => number;
}

/** The payload the executor keeps in its queue items. */
export interface ItemPayload {
  /** "step" (discover) or the hashed id of a planned step. */
  stepId: string;
}

/** Builds the queue item of a run's next call. */
export function nextItem(run: RunState, callNumber: number, stepId: string): NewItem {
  return {
    id: `${run.runId}:c${callNumber}`,
    runId: run.runId,
    accountId: run.accountId,
    environmentId: run.environmentId,
    functionId: run.functionId,
    kind: ItemKind.ITEM_KIND_STEP,
    delayMs: 0,
    runAtMs: 0,
    attempt: 0,
    payload: JSON.stringify({ stepId } satisfies ItemPayload),
  };
}

/** The Work-stream handler that runs items with `deps`. */
export function createItemHandler(deps: ExecuteDeps): ItemHandler {
  const random = deps.random ?? Math.random;
  const systemDelay = (attempt: number) => deps.clock.now() + backoffDelayMs(attempt, deps.backoff, random());

  return async (item, ctx) => {
    const log = deps.log.child({ runId: item.runId, itemId: item.id, attempt: item.attempt });
    const stepId = parsePayload(item.payload).stepId;
    let run: RunState | null = null;
    let signingKey: string | undefined;
    try {
      run = await deps.store.load(item.runId);
      if (run?.status === "running" && deps.keys) signingKey = await deps.keys.get(run.environmentId);
    } catch (err) {
      if (err instanceof NotFoundError && run) {
        // The environment is gone: no call can ever be signed again.
        const message = `cannot sign calls: ${err.message}`;
        const decision = {
          type: "fail",
          reason: message,
          errorJson: JSON.stringify({ name: "Error", message }),
        } as const;
        await settle(deps, run, item, ctx, decision, undefined, log, systemDelay);
        return;
      }
      // Our dependencies failed, not the app: try again later without spending an attempt.
      log.warn({ err: String(err) }, "cannot prepare call; releasing item");
      await ctx.retry(systemDelay(item.attempt), item.attempt);
      return;
    }
    if (!run) {
      log.warn("item of an unknown or expired run; dropping it");
      await ctx.complete([]);
      return;
    }
    if (run.status !== "running") {
      // Ended earlier but the item was not acked (crash, lost completion, or the final record
      // did not reach Kafka): record the outcome, then finish the ack.
      try {
        await deps.history.produce([{ $case: "run", value: runRecord(run, run) }]);
      } catch (err) {
        log.warn({ err: String(err) }, "cannot record the run's outcome; releasing item");
        await ctx.retry(systemDelay(item.attempt), item.attempt);
        return;
      }
      await ctx.complete([]);
      return;
    }

    if (stepId !== "step" && run.steps.has(stepId)) {
      // A planned step whose result is saved already (its item came back after a lost completion)
      // must not be requested again: the SDK would run it a second time. Move on to a discovery
      // call instead, as a new item with attempt 0, exactly as if this completion had landed.
      const decision: Decision = { type: "continue", saves: [], next: "step" };
      await settle(deps, run, item, ctx, decision, undefined, log, systemDelay);
      return;
    }

    const body = buildCallBody({
      runId: run.runId,
      eventsJson: run.eventsJson,
      steps: run.steps,
      stack: run.stack,
      attempt: item.attempt,
      maxAttempts: run.maxAttempts,
      reqVersion: run.reqVersion,
    });
    let outcome: Awaited<ReturnType<AppClient["call"]>>;
    const endTimer = callSeconds.startTimer();
    try {
      outcome = await deps.app.call({
        url: run.url,
        stepId,
        body,
        reqVersion: run.reqVersion,
        signingKey,
        signal: ctx.signal,
      });
    } catch (err) {
      if (ctx.signal.reason === SHUTDOWN) {
        await ctx.retry(0, item.attempt);
      } else if (!ctx.signal.aborted) {
        log.error({ err }, "call failed unexpectedly; releasing item");
        await ctx.retry(systemDelay(item.attempt), item.attempt);
      }
      // Lease lost: another executor owns the item now; do nothing.
      return;
    } finally {
      endTimer();
    }
    if (outcome.kind === "response" && outcome.response.status === 401 && deps.keys) {
      log.warn(
        { envId: run.environmentId },
        "app rejected our signature (401); refetching the key next time",
      );
      deps.keys.forget(run.environmentId);
    }

    const { decision, reqVersion } = interpret({
      outcome,
      stepId,
      attempt: item.attempt,
      maxAttempts: run.maxAttempts,
      nowMs: deps.clock.now(),
      backoff: deps.backoff,
      random: random(),
    });
    callsTotal.inc({ decision: decision.type });
    await settle(deps, run, item, ctx, decision, reqVersion, log, systemDelay);
  };
}

/** Applies a decision; a run that ended meanwhile just acks the item, a store failure releases it. */
async function settle(
  deps: ExecuteDeps,
  run: RunState,
  item: NewItem,
  ctx: ItemContext,
  decision: Decision,
  reqVersion: number | undefined,
  log: Logger,
  systemDelay: (attempt: number) => number,
): Promise<void> {
  try {
    await apply(deps, run, item, ctx, decision, reqVersion, log);
  } catch (err) {
    if (err instanceof ConflictError || err instanceof NotFoundError) {
      log.info("run ended meanwhile; dropping the item");
      await ctx.complete([]);
      return;
    }
    log.warn({ err: String(err) }, "cannot save the outcome; releasing item");
    await ctx.retry(systemDelay(item.attempt), item.attempt);
  }
}

async function apply(
  deps: ExecuteDeps,
  run: RunState,
  item: NewItem,
  ctx: ItemContext,
  decision: Decision,
  reqVersion: number | undefined,
  log: Logger,
): Promise<void> {
  const now = deps.clock.now();
  const changedVersion = reqVersion !== undefined && reqVersion !== run.reqVersion ? reqVersion : undefined;
  switch (decision.type) {
    case "continue": {
      const saves = decision.saves.map((s) => ({ stepId: s.stepId, memoJson: s.memoJson }));
      const adv = await deps.store.advance(run.runId, saves, changedVersion);
      const records = decision.saves
        .filter((_, i) => adv.saved[i])
        .map((s): HistoryEntry => ({ $case: "step", value: stepRecord(run, s, item.attempt, now) }));
      await deps.history.record(records);
      const status = await ctx.complete([nextItem(run, adv.callNumber, decision.next)]);
      log.debug({ next: decision.next, saved: adv.saved, status }, "step finished");
      return;
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
        );
        await deps.history.record([{ $case: "step", value }]);
      }
      log.info(
        { reason: decision.reason, nextAttempt: decision.attempt, inMs: decision.runAtMs - now },
        "retrying",
      );
      await ctx.retry(decision.runAtMs, decision.attempt);
      return;
    }
    case "complete":
    case "fail": {
      const fin =
        decision.type === "complete"
          ? await deps.store.finish(run.runId, "completed", { output: decision.outputJson }, now)
          : await deps.store.finish(run.runId, "failed", { error: decision.errorJson }, now);
      if (fin.endedNow) runsEndedTotal.inc({ status: fin.status });
      // Strict: when Kafka fails, settle releases the item and its next delivery records again.
      await deps.history.produce([{ $case: "run", value: runRecord(run, fin) }]);
      // Success is the common case, once per run: debug, so info stays readable under load.
      if (decision.type === "fail") log.info({ reason: decision.reason }, "run failed");
      else log.debug("run completed");
      await ctx.complete([]);
      return;
    }
  }
}

function parsePayload(payload: string): ItemPayload {
  try {
    const p = JSON.parse(payload) as Partial<ItemPayload>;
    if (typeof p.stepId === "string" && p.stepId) return { stepId: p.stepId };
  } catch {
    // An empty or foreign payload means "discover", the safe default.
  }
  return { stepId: "step" };
}
