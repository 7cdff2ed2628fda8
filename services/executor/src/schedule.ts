// Scheduling runs (ExecutorService.ScheduleRuns): create state, record the run as Running, enqueue
// its start item. Every part is idempotent per run id, so the runner simply calls again when any
// part failed (we answer UNAVAILABLE then).

import type { Clock } from "@stepline/internal/clock";
import { UnavailableError, ValidationError } from "@stepline/internal/errors";
import type { Singleton } from "@stepline/proto/stepline/executor/v1/executor_service";
import { SingletonMode } from "@stepline/proto/stepline/executor/v1/executor_service";
import type { FlowControl, NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import { SkipReason } from "@stepline/proto/stepline/stream/v1/history_record";
import canonicalize from "canonicalize";
import { firstEventLength } from "./app-client.js";
import type { HistoryEntry } from "./history.js";
import type { LiveRuns } from "./live-runs.js";
import type { PauseStore } from "./pauses.js";
import { NEVER } from "./pauses.js";
import { runRecord } from "./records.js";
import type { SingletonLocks } from "./singleton.js";
import type { CancelOnDef, NewRun, RunStatus, RunStore } from "./state.js";
import { createdRunState } from "./state.js";
import type { StartItem } from "./work-pool.js";

/** A run to schedule, as the runner describes it. */
export interface RunSpecInput {
  runId: string;
  accountId: string;
  environmentId: string;
  appId: string;
  functionId: string;
  functionVersion: string;
  url: string;
  /** 0 = the default. */
  maxAttempts: number;
  eventsJson: string[];
  cancelOn: CancelOnDef[];
  startTimeoutMs: number;
  finishTimeoutMs: number;
  /** Carried by every queue item of the run; absent = none. */
  flow?: FlowControl | undefined;
  /** `singleton`; absent = none. */
  singleton?: Singleton | undefined;
  /** The W3C traceparent the run's spans hang under; "" = not traced. */
  traceParent: string;
}

export interface ScheduleResult {
  runId: string;
  created: boolean;
}

export interface SchedulerDeps {
  store: RunStore;
  /** The index where a run's `cancelOn` entries wait for their events. */
  pauses: PauseStore;
  live: LiveRuns;
  /**
   * Enqueues the runs' start items (WorkPool.enqueueStarts: the queue may lease them to this
   * executor at once, which then starts from the state given); must reject when the items were
   * not all accepted.
   */
  enqueueStarts(starts: StartItem[]): Promise<void>;
  /** Strict history produce (rejects when Kafka did not acknowledge). */
  produce(entries: HistoryEntry[]): Promise<void>;
  /** History in the background (never rejects; a crash may lose what it had not sent). */
  record(entries: HistoryEntry[]): Promise<void>;
  clock: Clock;
  defaultMaxAttempts: number;
  singletons: SingletonLocks;
  /** Cancels a running run (singleton mode "cancel" replaces its key's running run). */
  cancel(runId: string, reason: string): Promise<void>;
  /** How long a skipped run id is remembered (the runner's idempotency window). */
  skipTtlMs: number;
}

const ID = /^[A-Za-z0-9._:-]{1,128}$/;
const TRACE_PARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The start item of a run: deterministic id, so a repeated enqueue collapses. */
export function startItem(run: NewRun): NewItem {
  return {
    id: `${run.runId}:start`,
    runId: run.runId,
    accountId: run.accountId,
    environmentId: run.environmentId,
    functionId: run.functionId,
    kind: ItemKind.ITEM_KIND_START,
    delayMs: 0,
    runAtMs: 0,
    attempt: 0,
    payload: JSON.stringify({ stepId: "step" }),
    flow: run.flow,
    runStartedAtMs: run.createdAtMs,
    traceParent: run.traceParent,
  };
}

/** Creates runs; see the module comment. */
export class Scheduler {
  constructor(private readonly deps: SchedulerDeps) {}

  /** Schedules each run once; ValidationError for a bad spec, UnavailableError for anything else. */
  async schedule(specs: RunSpecInput[]): Promise<ScheduleResult[]> {
    const checked = specs.map((s) => this.validate(s));
    const runs = checked.map((c) => c.run);
    try {
      const created = await Promise.all(runs.map((r) => this.deps.store.create(r)));
      // Singleton runs decide, one at a time, once their state exists (so a run that takes a lock
      // is always visible to the next one): a skipped run never starts.
      for (const [i, c] of checked.entries()) {
        const singleton = specs[i]?.singleton;
        const cur = created[i];
        if (!singleton || cur?.status !== "running" || cur.calls !== 0) continue;
        if (await this.singletonSkip(c, singleton)) created[i] = { ...cur, status: "skipped" as RunStatus };
      }
      // A run whose first call was never numbered has not got past its start item, so (re)enqueueing
      // it is safe: the queue collapses it onto the live item. Later runs must not get a second start.
      const toStart: StartItem[] = [];
      const records: HistoryEntry[] = [];
      const seen = new Set<string>();
      runs.forEach((r, i) => {
        const c = created[i];
        if (c?.status !== "running" || c.calls !== 0 || seen.has(r.runId)) return;
        seen.add(r.runId);
        // A run made just now is known whole: its start may skip the load (a run that existed may
        // have been called already, so it is loaded).
        toStart.push({ item: startItem(r), ...(c.created ? { state: createdRunState(r, c) } : {}) });
        const run = { ...r, createdAtMs: c.createdAtMs };
        const outcome = {
          status: "running",
          version: c.version,
          endedAtMs: 0,
          output: "",
          error: "",
        } as const;
        const value = runRecord(run, outcome, checked[i]?.eventId);
        records.push({ $case: "run", value, traceParent: r.traceParent });
      });
      // Not awaited: the run's state is the truth, and its final record is strict (finalize.ts);
      // should this one be lost in a crash, history learns of the run when it ends.
      void this.deps.record(records);
      // The live index, the cancelOn waits and the start item go together: one round trip before
      // the first call, not one after another. A run's end removes it from the index on the same Redis
      // connection, after its start, so never before it was added. Bulk cancels and cancelOn
      // events miss a run exactly while it is not yet indexed, whenever its start item comes.
      await Promise.all([
        this.deps.live.add(
          runs.flatMap((r, i) =>
            created[i]?.status === "running"
              ? [{ ...r, createdAtMs: created[i]?.createdAtMs ?? r.createdAtMs }]
              : [],
          ),
        ),
        ...runs.flatMap((r, i) => {
          if (created[i]?.status !== "running") return [];
          const at = created[i]?.createdAtMs ?? r.createdAtMs;
          const trigger = JSON.stringify((JSON.parse(r.eventsJson) as unknown[])[0] ?? {});
          return r.cancelOn.map((c, n) =>
            this.deps.pauses.add({
              runId: r.runId,
              opId: `cancel${n}`,
              environmentId: r.environmentId,
              eventName: c.event,
              expression: c.expression,
              triggerEventJson: trigger,
              createdAtMs: at,
              timeoutAtMs: c.timeoutMs > 0 ? at + c.timeoutMs : NEVER,
              cancel: true,
            }),
          );
        }),
        toStart.length > 0 ? this.deps.enqueueStarts(toStart) : undefined,
      ]);
      return runs.map((r, i) => ({
        runId: r.runId,
        created: (created[i]?.status as string) !== "skipped" && (created[i]?.created ?? false),
      }));
    } catch (err) {
      throw err instanceof UnavailableError
        ? err
        : new UnavailableError(`cannot schedule runs: ${String(err)}`);
    }
  }

  /**
   * For a singleton run just created and not started: takes its key's lock, taking over a lock
   * whose holder is not running, and in mode "cancel" cancelling a running holder first (so a
   * retry after a failure cancels again). True when the run must be skipped (mode "skip" with a
   * running holder): the skip is recorded, then the run is marked skipped, so a repeated call
   * finds it and starts nothing.
   */
  private async singletonSkip(c: { run: NewRun; eventId: string }, singleton: Singleton): Promise<boolean> {
    const run = c.run;
    const ref = { environmentId: run.environmentId, functionId: run.functionId, keyHash: singleton.keyHash };
    for (let tries = 0; tries < 5; tries++) {
      const holder = await this.deps.singletons.take(ref, run.runId);
      if (holder === null) return false;
      // A holder's state exists before it takes the lock, so "not running" means ended or gone.
      if ((await this.deps.store.status(holder)) !== "running") {
        if (await this.deps.singletons.swap(ref, holder, run.runId)) return false;
        continue;
      }
      if (singleton.mode === SingletonMode.SINGLETON_MODE_CANCEL) {
        // Its end gives the lock back (finalize); the next turn takes it.
        await this.deps.cancel(holder, `singleton: replaced by run ${run.runId}`);
        continue;
      }
      await this.deps.produce([
        {
          $case: "skip",
          value: {
            accountId: run.accountId,
            environmentId: run.environmentId,
            eventId: c.eventId,
            functionId: run.functionId,
            reason: SkipReason.SKIP_REASON_SINGLETON,
            atMs: this.deps.clock.now(),
            detail: `run ${holder} with the same singleton key is running`,
          },
        },
      ]);
      await this.deps.store.markSkipped(run.runId, this.deps.skipTtlMs);
      return true;
    }
    throw new UnavailableError(`singleton key of run ${run.runId} is contended; retry`);
  }

  /** The run to create, and its first event's id (read here, where the events are parsed anyway). */
  private validate(s: RunSpecInput): { run: NewRun; eventId: string } {
    const where = `run ${JSON.stringify(s.runId)}`;
    if (!ID.test(s.runId)) throw new ValidationError(`${where}: run_id must be 1-128 of [A-Za-z0-9._:-]`);
    for (const [name, v] of [
      ["account_id", s.accountId],
      ["environment_id", s.environmentId],
      ["function_id", s.functionId],
    ] as const) {
      if (!v) throw new ValidationError(`${where}: ${name} is required`);
    }
    let url: URL;
    try {
      url = new URL(s.url);
    } catch {
      throw new ValidationError(`${where}: url is not a URL`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new ValidationError(`${where}: url must be http or https`);
    }
    if (s.maxAttempts < 0) throw new ValidationError(`${where}: max_attempts must not be negative`);
    if (s.eventsJson.length === 0) throw new ValidationError(`${where}: at least one event is required`);
    const events = s.eventsJson.map((text, i) => {
      let e: unknown;
      try {
        e = JSON.parse(text);
      } catch {
        throw new ValidationError(`${where}: events_json[${i}] is not JSON`);
      }
      if (!e || typeof e !== "object" || Array.isArray(e)) {
        throw new ValidationError(`${where}: events_json[${i}] is not a JSON object`);
      }
      return e as Record<string, unknown>;
    });
    let eventsJson: string | undefined;
    try {
      eventsJson = canonicalize(events);
    } catch {
      eventsJson = undefined;
    }
    if (!eventsJson) throw new ValidationError(`${where}: events cannot be put in canonical JSON`);
    if (s.flow) {
      const f = s.flow;
      const hex = /^[0-9a-f]{0,64}$/;
      if (f.concurrency.length > 2)
        throw new ValidationError(`${where}: flow has more than 2 concurrency groups`);
      if (
        !f.concurrency.every((g) => g.scope >= 1 && g.scope <= 3 && hex.test(g.keyHash)) ||
        !hex.test(f.throttleKeyHash)
      ) {
        throw new ValidationError(`${where}: flow has a bad concurrency scope or key hash`);
      }
      if (!Number.isInteger(f.priorityS) || Math.abs(f.priorityS) > 600) {
        throw new ValidationError(`${where}: flow.priority_s must be an integer from -600 to 600`);
      }
    }
    if (s.traceParent && !TRACE_PARENT.test(s.traceParent)) {
      throw new ValidationError(
        `${where}: trace_parent must be a W3C traceparent (00-<trace>-<span>-<flags>)`,
      );
    }
    if (s.singleton && !/^[0-9a-f]{0,64}$/.test(s.singleton.keyHash)) {
      throw new ValidationError(`${where}: singleton.key_hash must be hex`);
    }
    const firstId = events[0]?.id;
    const run: NewRun = {
      runId: s.runId,
      accountId: s.accountId,
      environmentId: s.environmentId,
      appId: s.appId,
      functionId: s.functionId,
      functionVersion: s.functionVersion,
      url: s.url,
      maxAttempts: s.maxAttempts > 0 ? s.maxAttempts : this.deps.defaultMaxAttempts,
      eventsJson,
      firstEventLength: firstEventLength(events),
      createdAtMs: this.deps.clock.now(),
      cancelOn: s.cancelOn.map((c) => ({ event: c.event, expression: c.expression, timeoutMs: c.timeoutMs })),
      startTimeoutMs: Math.max(0, s.startTimeoutMs),
      finishTimeoutMs: Math.max(0, s.finishTimeoutMs),
      flow: s.flow,
      singletonKey: s.singleton ? s.singleton.keyHash : undefined,
      traceParent: s.traceParent,
    };
    return { run, eventId: typeof firstId === "string" ? firstId : "" };
  }
}
