// Run state in Redis: one hash tag per run (`s:{<runId>}:...`), so every script touches one slot.
// Metadata and the trigger events live in a hash, step results in a hash written first-writer-wins,
// and the hashed ids of finished steps in completion order in a list. State has no TTL while the
// run lives; finish-run.lua starts the expiry when the run ends.

import { readFileSync } from "node:fs";
import { ConflictError, NotFoundError, UnavailableError } from "@stepline/internal/errors";
import { scriptErrorOf } from "@stepline/internal/script-errors";
import { FlowControl } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { Redis, Result } from "ioredis";

declare module "ioredis" {
  interface RedisCommander<Context> {
    steplineCreateRun(meta: string, ...args: Array<string | number>): Result<unknown[], Context>;
    steplineAdvanceRun(...keysAndArgs: Array<string | number>): Result<unknown[], Context>;
    steplineFinishRun(...keysAndArgs: Array<string | number>): Result<unknown[], Context>;
    steplineSetReqVersion(meta: string, reqVersion: number): Result<unknown, Context>;
    steplineMarkFinalized(meta: string): Result<unknown, Context>;
    steplineMarkSkipped(meta: string, ttlMs: number): Result<unknown, Context>;
  }
}

const lua = (name: string) => readFileSync(new URL(`../lua/${name}.lua`, import.meta.url), "utf8");

// HSET only on an existing hash: never resurrect expired state as a stub.
const SET_REQ_VERSION_LUA =
  "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'reqVersion', ARGV[1]) end return 1";
const MARK_FINALIZED_LUA =
  "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'fin', 1) end return 1";

// KEYS[1] meta; ARGV[1] TTL ms. Marks a created, never-called run skipped (it then expires).
const MARK_SKIPPED_LUA =
  "if redis.call('HGET', KEYS[1], 'status') == 'running' and tonumber(redis.call('HGET', KEYS[1], 'calls')) == 0 then redis.call('HSET', KEYS[1], 'status', 'skipped') redis.call('PEXPIRE', KEYS[1], ARGV[1]) return 1 end return 0";

export type RunStatus = "running" | "completed" | "failed" | "cancelled";

/** One `cancelOn` entry of a run's function. */
export interface CancelOnDef {
  event: string;
  expression: string;
  /** Within this long of the run's start only; 0 = its whole life. */
  timeoutMs: number;
}

/** What ScheduleRuns stores for a new run. */
export interface NewRun {
  runId: string;
  accountId: string;
  environmentId: string;
  appId: string;
  functionId: string;
  functionVersion: string;
  url: string;
  maxAttempts: number;
  /** The trigger events as one canonical JSON array. */
  eventsJson: string;
  /** The first event's length inside `eventsJson` (undefined for runs created before it was kept). */
  firstEventLength?: number | undefined;
  createdAtMs: number;
  cancelOn: CancelOnDef[];
  /** `timeouts.start` / `timeouts.finish` in ms; 0 = none. */
  startTimeoutMs: number;
  finishTimeoutMs: number;
  /** The flow control its queue items carry (concurrency groups, throttle, priority). */
  flow?: FlowControl | undefined;
  /** `singleton`: the hash of its key, when the function has one (the run holds that lock). */
  singletonKey?: string | undefined;
  /** W3C traceparent the run's spans hang under ("" = not traced). */
  traceParent: string;
}

/** A run as loaded for a call: metadata, memoized steps and the completion-order stack. */
export interface RunState extends NewRun {
  status: RunStatus;
  version: number;
  /** How many calls after the first have been numbered (see advance). */
  calls: number;
  /** The x-inngest-req-version the SDK last answered; -1 before its first answer. */
  reqVersion: number;
  /** `ctx.disable_immediate_execution`: set once a call planned several ops at once. */
  disableImmediate: boolean;
  endedAtMs: number;
  output: string;
  error: string;
  /** Hashed step id -> memo JSON text (`{"data":..}` or `{"error":..}`), canonical. */
  steps: Map<string, string>;
  /** Hashed ids of saved steps, in the order they completed. */
  stack: string[];
  /** Pending ops: hashed id -> mode ("", "race", or "w:<event>" for a wait on that event). */
  pending: Map<string, string>;
  /** True once everything that follows the run's end was done (finalize.ts). */
  finalized: boolean;
}

/** What one run may hold; 0 = no limit. Inngest's own limits are the defaults (config.ts). */
export interface RunLimits {
  /** Saved steps (step results, resolved sleeps, waits and invokes). */
  maxSteps: number;
  /** Bytes of all saved step results together. */
  maxStateBytes: number;
  /** Bytes of one saved step result. */
  maxStepBytes: number;
  /** Calls (and resumes) of the run: bounds an app that loops without finishing. */
  maxCalls: number;
}

export const DEFAULT_RUN_LIMITS: RunLimits = {
  maxSteps: 1_000,
  maxStateBytes: 32 * 1024 * 1024,
  maxStepBytes: 4 * 1024 * 1024,
  maxCalls: 10_000,
};

const LIMIT_TEXT: Record<RunLimitError["limit"], (n: number) => string> = {
  steps: (n) => `the run reached its limit of ${n} steps (STEPLINE_EXECUTOR_MAX_STEPS_PER_RUN)`,
  state: (n) =>
    `the run's saved step results reached their limit of ${n} bytes (STEPLINE_EXECUTOR_MAX_STATE_BYTES)`,
  step: (n) =>
    `a step result is larger than the limit of ${n} bytes (STEPLINE_EXECUTOR_MAX_STEP_OUTPUT_BYTES)`,
  calls: (n) =>
    `the run reached its limit of ${n} calls without finishing, which points to a loop in the function (STEPLINE_EXECUTOR_MAX_CALLS_PER_RUN)`,
};

/** A call would take the run past one of its limits: the run fails with this message. */
export class RunLimitError extends Error {
  override name = "RunLimitError";
  constructor(
    readonly limit: "steps" | "state" | "step" | "calls",
    readonly value: number,
  ) {
    super(LIMIT_TEXT[limit](value));
  }
}

export interface CreateResult {
  created: boolean;
  status: RunStatus;
  calls: number;
  version: number;
  createdAtMs: number;
}

/** The state `load` reads back right after `create` made a run (`c.created`): nothing called yet. */
export function createdRunState(run: NewRun, c: CreateResult): RunState {
  return {
    ...run,
    createdAtMs: c.createdAtMs,
    status: "running",
    version: c.version,
    calls: 0,
    reqVersion: -1,
    disableImmediate: false,
    endedAtMs: 0,
    output: "",
    error: "",
    steps: new Map(),
    stack: [],
    pending: new Map(),
    finalized: false,
  };
}

/**
 * What became of the op a call or resume resolved: `none` (nothing to resolve), `quiet` (resolved;
 * other pending ops still hold the run, so no discovery call follows), `discover` (resolved; a
 * discovery call follows), `lost` (another resolver got there first; drop this work).
 */
export type Resolution = "none" | "quiet" | "discover" | "lost";

export interface AdvanceInput {
  /** Step results to save (first writer wins). */
  saves: StepSave[];
  /** The request version the SDK answered, to remember. */
  reqVersion?: number;
  /** Set `disable_immediate_execution` (the answer planned several ops at once). */
  disableImmediate?: boolean;
  /** The pending op this call or resume resolves, who resolves it, and a memo to save for it. */
  resolve?: { opId: string; resolver: string; memoJson?: string };
  /** Ops the answer planned (parallel steps, sleeps, waits, invokes) that must now be tracked. */
  plans?: Array<{ opId: string; race: boolean; waitEvent?: string }>;
  /** The item whose call made the plans (required with plans). */
  planner?: string;
  /**
   * The environment the run must belong to (a checkpoint, which names it): a run of another one is
   * NotFoundError, and the result carries the run's account and traceparent.
   */
  environmentId?: string;
  /**
   * False for a resume (a sleep's end, an event, an invoked run's result): it is never refused
   * for the run's limits; a run it takes past one fails at its next call.
   */
  limits?: boolean;
}

export interface AdvanceResult {
  /** The number of the call that follows (unique within the run; names the next queue item). */
  callNumber: number;
  stackLength: number;
  resolution: Resolution;
  /** One flag per save, in order: true when this call saved it, false when an earlier result won. */
  saved: boolean[];
  /**
   * One entry per plan: `start` (pending, planned by this planner: start it and schedule it),
   * `schedule` (pending, planned by another call: its item only), `none` (saved already).
   */
  planned: Array<"start" | "schedule" | "none">;
  /** With `environmentId` in the input: the run's account and traceparent. */
  run?: { accountId: string; traceParent: string };
}

const RESOLUTIONS: Record<string, Resolution> = { "-1": "none", "0": "quiet", "1": "discover", "-2": "lost" };

export interface FinishResult {
  /** False when the run had already ended; the stored outcome below is then the earlier one. */
  endedNow: boolean;
  status: RunStatus;
  version: number;
  endedAtMs: number;
  output: string;
  error: string;
}

/** A step result to save: `memoJson` is the canonical `{"data":..}` or `{"error":..}` text. */
export interface StepSave {
  stepId: string;
  memoJson: string;
}

/** Key names of one run; every key carries the run's hash tag. */
export function runKeys(prefix: string, runId: string) {
  const base = `${prefix}{${runId}}`;
  return {
    meta: `${base}:m`,
    steps: `${base}:s`,
    stack: `${base}:k`,
    pending: `${base}:p`,
    resolved: `${base}:r`,
  };
}

/** Every key of a run, in the order the scripts declare them. */
function allKeys(prefix: string, runId: string): string[] {
  const k = runKeys(prefix, runId);
  return [k.meta, k.steps, k.stack, k.pending, k.resolved];
}

/** Run state store over one Redis client. `prefix` defaults to `s:` (tests use their own). */
export class RunStore {
  constructor(
    private readonly redis: Redis,
    private readonly ttlAfterEndMs: number,
    private readonly prefix = "s:",
    /** What one run may hold (advance refuses past it with RunLimitError). */
    private readonly limits: RunLimits = DEFAULT_RUN_LIMITS,
  ) {
    redis.defineCommand("steplineCreateRun", { numberOfKeys: 1, lua: lua("create-run") });
    redis.defineCommand("steplineAdvanceRun", { numberOfKeys: 5, lua: lua("advance-run") });
    redis.defineCommand("steplineFinishRun", { numberOfKeys: 5, lua: lua("finish-run") });
    redis.defineCommand("steplineSetReqVersion", { numberOfKeys: 1, lua: SET_REQ_VERSION_LUA });
    redis.defineCommand("steplineMarkFinalized", { numberOfKeys: 1, lua: MARK_FINALIZED_LUA });
    redis.defineCommand("steplineMarkSkipped", { numberOfKeys: 1, lua: MARK_SKIPPED_LUA });
  }

  /** Creates the run unless it exists; an existing run is returned as it is (idempotent). */
  async create(run: NewRun): Promise<CreateResult> {
    const k = runKeys(this.prefix, run.runId);
    const r = await wrap(() =>
      this.redis.steplineCreateRun(
        k.meta,
        run.accountId,
        run.environmentId,
        run.appId,
        run.functionId,
        run.functionVersion,
        run.url,
        run.maxAttempts,
        run.eventsJson,
        run.createdAtMs,
        JSON.stringify(run.cancelOn),
        run.startTimeoutMs,
        run.finishTimeoutMs,
        run.flow ? JSON.stringify(FlowControl.toJSON(run.flow)) : "",
        run.singletonKey === undefined ? "" : `k:${run.singletonKey}`,
        run.traceParent,
        run.firstEventLength ?? "",
      ),
    );
    return {
      created: r[0] === 1,
      status: r[1] as RunStatus,
      calls: Number(r[2]),
      version: Number(r[3]),
      createdAtMs: Number(r[4]),
    };
  }

  /** Loads a run with its steps and stack (one MULTI), or null when it does not exist. */
  async load(runId: string): Promise<RunState | null> {
    const k = runKeys(this.prefix, runId);
    const res = await wrap(() =>
      this.redis.multi().hgetall(k.meta).hgetall(k.steps).lrange(k.stack, 0, -1).hgetall(k.pending).exec(),
    );
    if (!res) throw new UnavailableError("redis transaction aborted");
    for (const [err] of res) if (err) throw new UnavailableError(`redis: ${err.message}`);
    const meta = res[0]?.[1] as Record<string, string>;
    if (!meta?.status) return null;
    return {
      runId,
      accountId: meta.account ?? "",
      environmentId: meta.env ?? "",
      appId: meta.app ?? "",
      functionId: meta.fn ?? "",
      functionVersion: meta.fnVersion ?? "",
      url: meta.url ?? "",
      maxAttempts: Number(meta.maxAttempts ?? 1),
      eventsJson: meta.events ?? "[]",
      firstEventLength: meta.e0 ? Number(meta.e0) : undefined,
      createdAtMs: Number(meta.createdAt ?? 0),
      cancelOn: parseCancelOn(meta.cancelOn),
      startTimeoutMs: Number(meta.startTimeout ?? 0),
      finishTimeoutMs: Number(meta.finishTimeout ?? 0),
      flow: meta.flow ? FlowControl.fromJSON(JSON.parse(meta.flow)) : undefined,
      singletonKey: meta.singleton?.startsWith("k:") ? meta.singleton.slice(2) : undefined,
      traceParent: meta.tp ?? "",
      finalized: meta.fin === "1",
      status: meta.status as RunStatus,
      version: Number(meta.version ?? 1),
      calls: Number(meta.calls ?? 0),
      reqVersion: Number(meta.reqVersion ?? -1),
      disableImmediate: meta.die === "1",
      endedAtMs: Number(meta.endedAt ?? 0),
      output: meta.output ?? "",
      error: meta.error ?? "",
      steps: new Map(Object.entries((res[1]?.[1] as Record<string, string>) ?? {})),
      stack: (res[2]?.[1] as string[]) ?? [],
      // Values are "<planner>|<mode>"; callers need the mode.
      pending: new Map(
        Object.entries((res[3]?.[1] as Record<string, string>) ?? {}).map(([op, v]) => [
          op,
          v.slice(v.indexOf("|") + 1),
        ]),
      ),
    };
  }

  /**
   * Records what a call or resume did (advance-run.lua): saves step results first-writer-wins,
   * resolves the pending op it was about, tracks new plans, remembers the SDK's request version,
   * and numbers the next call. Throws NotFoundError for an unknown run and ConflictError when the
   * run has already ended.
   */
  async advance(runId: string, input: AdvanceInput): Promise<AdvanceResult> {
    const args: Array<string | number> = [
      input.reqVersion === undefined ? "" : input.reqVersion,
      input.disableImmediate ? "1" : "",
      input.resolve?.opId ?? "",
      input.resolve?.resolver ?? "",
      input.resolve?.memoJson ?? "",
      input.planner ?? "",
      input.limits === false
        ? "0:0:0:0"
        : `${this.limits.maxSteps}:${this.limits.maxStateBytes}:${this.limits.maxStepBytes}:${this.limits.maxCalls}`,
      input.saves.length,
    ];
    for (const s of input.saves) args.push(s.stepId, s.memoJson);
    const plans = input.plans ?? [];
    args.push(plans.length);
    for (const p of plans) args.push(p.opId, p.race ? "race" : p.waitEvent ? `w:${p.waitEvent}` : "");
    if (input.environmentId !== undefined) args.push(input.environmentId);
    const r = await wrap(() => this.redis.steplineAdvanceRun(...allKeys(this.prefix, runId), ...args));
    const resolution = RESOLUTIONS[String(r[2])] ?? "none";
    const flagsEnd = 3 + input.saves.length + plans.length;
    const flags = r.slice(3, flagsEnd).map(Number);
    return {
      callNumber: Number(r[0]),
      stackLength: Number(r[1]),
      resolution,
      saved: flags.slice(0, input.saves.length).map((f) => f === 1),
      planned: flags
        .slice(input.saves.length)
        .map((f) => (f === 1 ? "start" : f === 2 ? "schedule" : "none")),
      ...(input.environmentId !== undefined
        ? { run: { accountId: String(r[flagsEnd] ?? ""), traceParent: String(r[flagsEnd + 1] ?? "") } }
        : {}),
    };
  }

  /** A run's status, environment, account and trace (one HMGET), or null when it does not exist. */
  async brief(
    runId: string,
  ): Promise<{ status: string; environmentId: string; accountId: string; traceParent: string } | null> {
    const k = runKeys(this.prefix, runId);
    const [status, env, account, tp] = await wrap(() =>
      this.redis.hmget(k.meta, "status", "env", "account", "tp"),
    );
    if (!status) return null;
    return { status, environmentId: env ?? "", accountId: account ?? "", traceParent: tp ?? "" };
  }

  /** The run's status and call counter (one HMGET), or null when it does not exist. */
  async progress(runId: string): Promise<{ status: string; calls: number } | null> {
    const k = runKeys(this.prefix, runId);
    const [status, calls] = await wrap(() => this.redis.hmget(k.meta, "status", "calls"));
    return status ? { status, calls: Number(calls ?? 0) } : null;
  }

  /** The run's status, or null when it does not exist ("skipped" for a run singleton skipped). */
  async status(runId: string): Promise<string | null> {
    const k = runKeys(this.prefix, runId);
    return wrap(() => this.redis.hget(k.meta, "status"));
  }

  /**
   * Marks a run created but never called as skipped (singleton): a later ScheduleRuns of the same
   * run id (a redelivery) finds it and starts nothing. It expires after `ttlMs` (the runner's 24 h
   * window).
   */
  async markSkipped(runId: string, ttlMs: number): Promise<void> {
    const k = runKeys(this.prefix, runId);
    await wrap(() => this.redis.steplineMarkSkipped(k.meta, ttlMs));
  }

  /** Marks that everything following the run's end was done; a no-op for unknown state. */
  async markFinalized(runId: string): Promise<void> {
    const k = runKeys(this.prefix, runId);
    await wrap(() => this.redis.steplineMarkFinalized(k.meta));
  }

  /** Remembers the request version the SDK answered (used when a call made no progress). */
  async setRequestVersion(runId: string, reqVersion: number): Promise<void> {
    const k = runKeys(this.prefix, runId);
    await wrap(() => this.redis.steplineSetReqVersion(k.meta, reqVersion));
  }

  /** Ends the run once with its outcome; a second call returns the first outcome unchanged. */
  async finish(
    runId: string,
    status: Exclude<RunStatus, "running">,
    result: { output?: string; error?: string },
    endedAtMs: number,
  ): Promise<FinishResult> {
    const r = await wrap(() =>
      this.redis.steplineFinishRun(
        ...allKeys(this.prefix, runId),
        status,
        result.output ?? "",
        result.error ?? "",
        endedAtMs,
        this.ttlAfterEndMs,
      ),
    );
    return {
      endedNow: r[0] === 1,
      status: r[1] as RunStatus,
      version: Number(r[2]),
      endedAtMs: Number(r[3]),
      output: String(r[4] ?? ""),
      error: String(r[5] ?? ""),
    };
  }
}

function parseCancelOn(text: string | undefined): CancelOnDef[] {
  if (!text) return [];
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? (v as CancelOnDef[]) : [];
  } catch {
    return [];
  }
}

/** Maps script error replies to the closed error set; anything else means Redis is unusable. */
async function wrap<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const refused = scriptErrorOf(err);
    if (refused?.code === "NORUN") throw new NotFoundError("run not found");
    if (refused?.code === "ENDED") throw new ConflictError("run has already ended");
    if (refused?.code === "LIMIT") {
      const [limit, value] = refused.detail.split(" ");
      throw new RunLimitError(limit as RunLimitError["limit"], Number(value));
    }
    throw new UnavailableError(`redis: ${err instanceof Error ? err.message : String(err)}`);
  }
}
