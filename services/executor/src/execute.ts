// Carrying out one leased item: load the run, call the app with its memo, interpret the answer,
// write state, record history, then tell the queue. The order is the invariant: a result is saved
// before the completion that acks the item and enqueues the next call, so a step whose result is
// saved is never run again (a re-leased item replays with the saved memo).

import type { Clock } from "@stepline/internal/clock";
import { ConflictError, NotFoundError } from "@stepline/internal/errors";
import type { Logger } from "@stepline/internal/log";
import {
  SpanKind,
  type TraceParent,
  tracingEnabled,
  unsampledParent,
  withSpan,
} from "@stepline/internal/telemetry";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { AppClient } from "./app-client.js";
import { buildCallBody } from "./app-client.js";
import { type BackoffPolicy, backoffDelayMs } from "./backoff.js";
import type { BufferFire } from "./buffer-fire.js";
import { fireBuffer } from "./buffer-fire.js";
import { Canceller } from "./cancel.js";
import { fireCronTick } from "./cron-tick.js";
import type { FinalizeDeps } from "./finalize.js";
import { finalizeRun } from "./finalize.js";
import { HandOffStates } from "./hand-off-states.js";
import type { HistoryEntry } from "./history.js";
import type { EventSender } from "./internal-events.js";
import { invokedEvent } from "./internal-events.js";
import { callItem, deadLetterFailure, parsePayload, pauseOf, planItem } from "./items.js";
import { callSeconds, callsTotal, runsEndedTotal } from "./metrics.js";
import type { PauseStore } from "./pauses.js";
import { erroredStep, pendingStep, resumedStep, stepRecord } from "./records.js";
import type { SigningKeys } from "./signing-keys.js";
import type { RunState, RunStore } from "./state.js";
import { RunLimitError } from "./state.js";
import type { Decision } from "./steps.js";
import { errorJson, interpret } from "./steps.js";
import { isStartItem, timeLimit } from "./time-limits.js";
import { type CallTrace, pendingSpan, resolvedSpan, stepSpan } from "./tracing.js";
import type { ItemContext, ItemHandler } from "./work-loop.js";
import { SHUTDOWN } from "./work-loop.js";

export interface ExecuteDeps extends FinalizeDeps {
  store: RunStore;
  /** Run states kept for handed-off items (one made per handler when absent). */
  handOffs?: HandOffStates;
  pauses: PauseStore;
  app: AppClient;
  /** Null in dev mode: calls are not signed. */
  keys: SigningKeys | null;
  /** Let SDK v4 checkpoint (STEPLINE_EXECUTOR_CHECKPOINTING). */
  checkpointing?: boolean;
  /**
   * `record` may leave records to a background retry (step records); `produce` resolves only once
   * Kafka has them: a run's final record goes that way, before its last item is acked, so a crash
   * or a full backlog can never leave the run Running in history for good.
   */
  history: {
    record(entries: HistoryEntry[]): Promise<void>;
    produce(entries: HistoryEntry[]): Promise<void>;
  };
  /** Stepline's own events (function finished/failed/invoked), through event-api. */
  events: EventSender;
  /** QueueService.Enqueue, for an invoking parent's next call. */
  enqueue(items: NewItem[]): Promise<void>;
  /** RunnerService.FireCron: starts a cron tick's run and names the chain's next tick item. */
  fireCron(req: { environmentId: string; functionId: string; cron: string; tickMs: number }): Promise<{
    current: boolean;
    next: NewItem | undefined;
  }>;
  /** RunnerService.FireDebounce: starts a debounce's run, or says when it is due now (ms, 0 = fired). */
  fireDebounce(req: BufferFire): Promise<{ dueAtMs: number }>;
  /** RunnerService.FireBatch: starts a batch's run. */
  fireBatch(req: BufferFire): Promise<unknown>;
  clock: Clock;
  log: Logger;
  backoff: BackoffPolicy;
  random?: () => number;
}

/** The Work-stream handler that runs items with `input`. */
export function createItemHandler(input: ExecuteDeps): ItemHandler {
  const deps = { ...input, handOffs: input.handOffs ?? new HandOffStates(input.clock) };
  const random = deps.random ?? Math.random;
  const canceller = new Canceller(deps);
  const systemDelay = (attempt: number) => deps.clock.now() + backoffDelayMs(attempt, deps.backoff, random());

  // A traced run's item is one span; its app call and its steps hang under it (docs/telemetry.md).
  const handler: ItemHandler = (item, ctx) =>
    withSpan(
      "executor.item",
      {
        parent: item.traceParent,
        attributes: {
          "stepline.run_id": item.runId,
          "stepline.item_id": item.id,
          "stepline.attempt": item.attempt,
          "stepline.function_id": item.functionId,
        },
      },
      (span) => handle(item, ctx, span.traceParent),
    );
  return handler;

  async function handle(item: NewItem, ctx: ItemContext, traceParent: TraceParent): Promise<void> {
    const trace: CallTrace = { parent: traceParent, startMs: deps.clock.now() };
    const log = deps.log.child({ runId: item.runId, itemId: item.id, attempt: item.attempt });
    if (item.kind === ItemKind.ITEM_KIND_CRON) {
      await fireCronTick(deps, item, ctx, log, systemDelay);
      return;
    }
    if (item.kind === ItemKind.ITEM_KIND_DEBOUNCE || item.kind === ItemKind.ITEM_KIND_BATCH) {
      await fireBuffer(deps, item, ctx, log, systemDelay);
      return;
    }
    const payload = parsePayload(item.payload);
    const stepId = payload.stepId;
    let run: RunState | null = null;
    let signingKey: string | undefined;
    try {
      // A hand-off starts from the state its completion left, after one HMGET (hand-off-states.ts).
      const kept = ctx.handedOff
        ? await deps.handOffs.takeCurrent(item.id, () => deps.store.progress(item.runId))
        : undefined;
      run = kept ?? (await deps.store.load(item.runId));
      if (run?.status === "running" && deps.keys) signingKey = await deps.keys.get(run.environmentId);
    } catch (err) {
      if (err instanceof NotFoundError && run) {
        // The environment is gone: no call can ever be signed again.
        const message = `cannot sign calls: ${err.message}`;
        const decision = {
          type: "fail",
          reason: message,
          errorJson: errorJson(message),
        } as const;
        await settle(deps, run, item, ctx, decision, undefined, log, trace);
        return;
      }
      // Our dependencies failed, not the app: try again later without spending an attempt.
      log.warn({ err: String(err) }, "cannot prepare call; releasing item");
      await ctx.release();
      return;
    }
    if (!run) {
      log.warn("item of an unknown or expired run; dropping it");
      await ctx.complete([]);
      return;
    }
    if (run.status !== "running") {
      // Ended earlier (cancelled, or an item that was not acked after a crash, a lost completion
      // or a failed final record): finish what follows the end if it was not done, then ack.
      try {
        if (!run.finalized) await finalizeRun(deps, run, run);
      } catch (err) {
        log.warn({ err: String(err) }, "cannot record the run's outcome; releasing item");
        await ctx.release();
        return;
      }
      await ctx.complete([]);
      return;
    }

    if (item.kind === ItemKind.ITEM_KIND_DEAD_LETTER) {
      await settle(deps, run, item, ctx, deadLetterFailure(item.id), undefined, log, trace);
      return;
    }
    const limit = timeLimit(run, item, payload, deps.clock.now());
    if (limit) {
      try {
        await canceller.cancel(run.runId, { reason: limit });
        await ctx.complete([]);
      } catch (err) {
        log.warn({ err: String(err) }, "cannot cancel the run; releasing item");
        await ctx.release();
      }
      return;
    }
    if (payload.deadline || payload.end) {
      // A deadline the run is within, or the end item of a cancel that has not ended the run
      // (it failed before writing the end): nothing to do.
      await ctx.complete([]);
      return;
    }
    if (run.finishTimeoutMs > 0 && isStartItem(item)) {
      // `timeouts.finish` counts from the run's first call: its deadline is a queued item.
      try {
        await deps.enqueue([
          callItem(
            run,
            "deadline",
            { stepId: "step", deadline: true },
            deps.clock.now() + run.finishTimeoutMs,
          ),
        ]);
      } catch (err) {
        log.warn({ err: String(err) }, "cannot enqueue the run's finish deadline; releasing item");
        await ctx.release();
        return;
      }
    }

    if (stepId !== "step" && run.steps.has(stepId)) {
      // A planned step whose result is saved already (its item came back after a lost completion)
      // must not be requested again: the SDK would run it a second time. Resolve it as the lost
      // completion did (the same answer, recorded per resolver) and move on from there.
      const decision: Decision = { type: "advance", saves: [], plans: [], disableImmediate: false };
      await settle(deps, run, item, ctx, decision, undefined, log, trace);
      return;
    }

    if (payload.op) {
      // A resume (a sleep's end): resolve its op first; only the resolver that lets the run go
      // on makes the discovery call.
      try {
        const adv = await deps.store.advance(run.runId, {
          saves: [],
          resolve: { opId: payload.op, resolver: item.id, memoJson: payload.memo ?? '{"data":null}' },
          limits: false,
        });
        // Only the winner drops the wait's index entry: an event that won may still need it
        // until its discovery call is enqueued (resume.ts).
        if (payload.event && adv.resolution !== "lost") {
          await deps.pauses.remove(item.environmentId, payload.event, item.runId, payload.op);
        }
        if (adv.resolution === "discover") run = await deps.store.load(run.runId);
        if (run && adv.resolution !== "lost") {
          const name = payload.name ?? payload.op;
          const value = resumedStep(run, payload.op, name, deps.clock.now());
          const traceParent = resolvedSpan(trace.parent, payload.op, name, value.atMs);
          void deps.history.record([{ $case: "step", value, traceParent }]);
        }
        if (adv.resolution !== "discover" || run?.status !== "running") {
          await ctx.complete([]);
          return;
        }
      } catch (err) {
        if (err instanceof ConflictError || err instanceof NotFoundError) {
          await ctx.complete([]);
          return;
        }
        log.warn({ err: String(err) }, "cannot resume the run; releasing item");
        await ctx.release();
        return;
      }
    }

    const body = buildCallBody({
      runId: run.runId,
      eventsJson: run.eventsJson,
      firstEventLength: run.firstEventLength,
      steps: run.steps,
      stack: run.stack,
      attempt: item.attempt,
      maxAttempts: run.maxAttempts,
      reqVersion: run.reqVersion,
      disableImmediate: run.disableImmediate,
      checkpoint: deps.checkpointing ? { functionId: run.functionId, queueItemId: item.id } : undefined,
    });
    let outcome: Awaited<ReturnType<AppClient["call"]>>;
    const endTimer = callSeconds.startTimer();
    const call = {
      url: run.url,
      stepId,
      body,
      reqVersion: run.reqVersion,
      signingKey,
      signal: ctx.signal,
      // Names the step this call may run, the same across its retries: a planned step's item
      // runs only that step; a discovery item runs the step after those saved so far.
      sendToken: stepId === "step" ? `${item.id}:${run.stack.length}` : item.id,
    };
    const callAttributes = { "url.full": run.url, "stepline.step_id": stepId };
    try {
      outcome = await withSpan(
        "app.call",
        { parent: trace.parent, kind: SpanKind.CLIENT, attributes: callAttributes },
        async (span) => {
          // An untraced run's call says so when tracing is on, so the events the app sends from it
          // (step.sendEvent forwards the header) stay untraced instead of starting traces.
          const traceParent = span.traceParent || (tracingEnabled() ? unsampledParent() : "");
          const out = await deps.app.call({ ...call, traceParent });
          if (out.kind === "response")
            span.setAttributes({ "http.response.status_code": out.response.status });
          else span.setAttributes({ "error.type": out.message });
          return out;
        },
      );
    } catch (err) {
      if (ctx.signal.reason === SHUTDOWN) {
        await ctx.retry(0, item.attempt);
      } else if (!ctx.signal.aborted) {
        log.error({ err }, "call failed unexpectedly; releasing item");
        await ctx.release();
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
      savedStepIds: run.steps,
    });
    callsTotal.inc({ decision: decision.type });
    await settle(deps, run, item, ctx, decision, reqVersion, log, trace);
  }
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
  trace: CallTrace,
): Promise<void> {
  try {
    await apply(deps, run, item, ctx, decision, reqVersion, log, trace);
  } catch (err) {
    if (err instanceof RunLimitError) {
      // Nothing of the call was saved: the run fails instead, naming the limit.
      await settle(
        deps,
        run,
        item,
        ctx,
        { type: "fail", reason: err.message, errorJson: errorJson(err.message) },
        reqVersion,
        log,
        trace,
      );
      return;
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
        return;
      }
      await ctx.complete([]);
      return;
    }
    log.warn({ err: String(err) }, "cannot save the outcome; releasing item");
    await ctx.release();
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
  trace: CallTrace,
): Promise<void> {
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
      const invoked: object[] = [];
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
      const handOffs = deps.handOffs;
      const onlyNext = next.length === 1 ? next[0]?.id : undefined;
      if (handOffs && onlyNext) {
        const call = {
          stepId,
          saves: decision.saves,
          planned: decision.plans.length,
          disableImmediate: decision.disableImmediate,
          reqVersion: changedVersion,
        };
        handOffs.keepAfter(run, call, adv, onlyNext);
      }
      const status = await ctx.complete(next);
      log.debug({ next: next.map((n) => n.id), saved: adv.saved, status }, "call settled");
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
      return;
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
      return;
    }
  }
}
