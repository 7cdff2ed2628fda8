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
import { callItem, deadLetterFailure, type ItemPayload, parsePayload } from "./items.js";
import { callSeconds, callsTotal, localCallsTotal } from "./metrics.js";
import type { PauseStore } from "./pauses.js";
import { resumedStep } from "./records.js";
import { settle } from "./settle.js";
import type { SigningKeys } from "./signing-keys.js";
import type { RunState, RunStore } from "./state.js";
import type { Decision } from "./steps.js";
import { errorJson, interpret } from "./steps.js";
import { isStartItem, timeLimit } from "./time-limits.js";
import { type CallTrace, resolvedSpan } from "./tracing.js";
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
   * Calls one lease may make in a row for a run in plain sequential progress
   * (STEPLINE_EXECUTOR_CALLS_PER_LEASE; README "Calls on one lease"); 1 when absent.
   */
  callsPerLease?: number;
  /**
   * `record` may leave records to a background retry (step records); `produce` resolves only once
   * Kafka has them: a run's final record goes that way, before its last item is acked, so a crash
   * or a full backlog can never leave the run Running in history for good.
   */
  history: {
    record(entries: HistoryEntry[]): Promise<void>;
    produce(entries: HistoryEntry[]): Promise<void>;
  };
  /** Stepline's own events (function finished/failed/invoked), produced to Kafka `events`. */
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
        await settle(deps, run, item, ctx, decision, { log, trace });
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
      await settle(deps, run, item, ctx, deadLetterFailure(item.id), { log, trace });
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
      await settle(deps, run, item, ctx, decision, { log, trace });
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

    // A discovery item of a run in plain sequential progress makes the run's next calls itself,
    // up to callsPerLease in a row, instead of completing and being handed the next item back.
    const perLease = deps.callsPerLease ?? 1;
    const mayGoOn = perLease > 1 && isPlainDiscovery(item, payload) && item.attempt === 0;
    let next: RunState | undefined = run;
    for (let calls = 1; next; calls++) {
      const goOn = mayGoOn && calls < perLease && !ctx.signal.aborted;
      const callTrace = calls === 1 ? trace : { parent: traceParent, startMs: deps.clock.now() };
      next = await callAndSettle(next, stepId, signingKey, callTrace, goOn);
      if (next) localCallsTotal.inc();
    }

    /** One call of the app and its settling; the state for the next call when the lease goes on. */
    async function callAndSettle(
      run: RunState,
      stepId: string,
      signingKey: string | undefined,
      trace: CallTrace,
      mayGoOn: boolean,
    ): Promise<RunState | undefined> {
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
        return undefined;
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
      return settle(deps, run, item, ctx, decision, { reqVersion, log, trace, mayGoOn });
    }
  }
}

/** A call item that only discovers (no op to resolve, no planned step, not a time limit). */
function isPlainDiscovery(item: NewItem, payload: ItemPayload): boolean {
  return (
    (item.kind === ItemKind.ITEM_KIND_START || item.kind === ItemKind.ITEM_KIND_STEP) &&
    payload.stepId === "step" &&
    !payload.op &&
    !payload.deadline &&
    !payload.end
  );
}
