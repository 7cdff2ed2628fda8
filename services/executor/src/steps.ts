// Interpreting an app's answer to one call (docs/sdk-protocol.md, "The answer" and "Retries")
// into a decision the executor carries out. Pure: no I/O, no clock, no randomness of its own, so every rule is unit-tested.

import { parse } from "@bufbuild/cel";
import { celComplexityProblem } from "@stepline/internal/cel-limits";
import { ValidationError } from "@stepline/internal/errors";
import { EVENT_MAX_BYTES } from "@stepline/internal/event-limits";
import canonicalize from "canonicalize";
import { type BackoffPolicy, backoffDelayMs, parseRetryAfter } from "./backoff.js";
import { timeFrom } from "./wait-time.js";

/** An HTTP answer from the app; header names are lower case. */
export interface AppResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** What came of a call: an answer, or a failure before one (network, timeout, bad signature). */
export type CallOutcome =
  | { kind: "response"; response: AppResponse }
  | { kind: "failure"; message: string; retriable: boolean };

export interface InterpretInput {
  outcome: CallOutcome;
  /** The `stepId` the call asked for: "step" (discover) or a planned step's hashed id. */
  stepId: string;
  /** Zero-based attempt of this call. */
  attempt: number;
  maxAttempts: number;
  nowMs: number;
  backoff: BackoffPolicy;
  /** A number in [0, 1) for backoff jitter. */
  random: number;
  /** The ids of the steps whose results the call sent the app (its memos). */
  savedStepIds: { has(stepId: string): boolean };
}

/** A step result to save, with what history needs to know about it. */
export interface StepResult {
  stepId: string;
  name: string;
  status: "completed" | "failed";
  /** Canonical `{"data":..}` or `{"error":..}` text, exactly what the SDK reads back. */
  memoJson: string;
  /** The value (completed) or the serialized error (failed), as JSON text. */
  resultJson: string;
  /** When the SDK ran it, from the op's `timing` (epoch ms), when the SDK said. */
  timing?: { startMs: number; endMs: number } | undefined;
}

/** An op the answer planned, which the run now waits for (docs: README "Pending ops"). */
export type PlannedOp =
  /** A step to run by its id (parallel steps, or one the SDK chose not to run at once). */
  | { kind: "step"; id: string; name: string; race: boolean }
  /** step.sleep / step.sleepUntil: resolves with `null` at `untilMs`. */
  | { kind: "sleep"; id: string; name: string; untilMs: number }
  /**
   * step.waitForEvent: resolves with the first event named `event` received from now on for which
   * `expression` (CEL over `event` and `async`; "" = any) is true, or with `null` at `timeoutAtMs`.
   */
  | { kind: "wait"; id: string; name: string; event: string; expression: string; timeoutAtMs: number }
  /**
   * step.invoke: starts `functionId` of the same environment with `payload` ({data, v?, user?})
   * and resolves with its output or error, or with a timeout error at `timeoutAtMs`.
   */
  | {
      kind: "invoke";
      id: string;
      name: string;
      functionId: string;
      payload: { data: Record<string, unknown>; v?: string; user?: Record<string, unknown> };
      timeoutAtMs: number;
    };

export type Decision =
  /**
   * Save the results (maybe none) and start tracking the plans (maybe none). What is called next
   * follows from those and from the op the call resolved (execute.ts).
   */
  | { type: "advance"; saves: StepResult[]; plans: PlannedOp[]; disableImmediate: boolean }
  /** Call again the same way with `attempt`, not before `runAtMs`. */
  | { type: "retry"; attempt: number; runAtMs: number; reason: string; errorJson: string; step?: StepRef }
  /** The run finished with `outputJson`. */
  | { type: "complete"; outputJson: string }
  /** The run failed for good. */
  | { type: "fail"; reason: string; errorJson: string };

export interface StepRef {
  stepId: string;
  name: string;
}

export interface Interpretation {
  decision: Decision;
  /** The x-inngest-req-version the SDK answered (1 or 2), to echo on later calls. */
  reqVersion?: number;
}

/** The hashed id the SDK gives function-level results carried as ops: sha1("complete"). */
export const COMPLETE_OP_ID = "0737c22d3bfae812339732d14d8c7dbd6dc4e09c";

const LAZY_OPS = new Set(["DeferAdd", "DeferAbort"]);
/** Ops that become pending ops besides StepPlanned. */
const PLANNABLE = new Set(["Sleep", "WaitForEvent", "InvokeFunction"]);

const UNSUPPORTED_OPS: Record<string, string> = {
  WaitForSignal: "step.waitForSignal",
  AIGateway: "step.ai.infer",
  Gateway: "step.fetch",
};

interface Op {
  id: string;
  op: string;
  name?: unknown;
  displayName?: unknown;
  opts?: unknown;
  data?: unknown;
  error?: unknown;
  /** `a`: start, ns since the epoch; `b`: duration, ns (numbers or strings, as the SDK sends). */
  timing?: unknown;
}

/** An op's `timing` in epoch ms; undefined when absent or not two finite numbers. */
function timingOf(o: Op): StepResult["timing"] {
  const t = o.timing;
  if (!t || typeof t !== "object") return undefined;
  const { a, b } = t as { a?: unknown; b?: unknown };
  const start = Number(a) / 1e6;
  const duration = Number(b) / 1e6;
  if (!Number.isFinite(start) || !Number.isFinite(duration) || start <= 0 || duration < 0) return undefined;
  return { startMs: start, endMs: start + duration };
}

/** Decides what to do with the outcome of one call. */
export function interpret(input: InterpretInput): Interpretation {
  const { outcome } = input;
  if (outcome.kind === "failure") {
    return { decision: retryOrFail(input, outcome.message, errorJson(outcome.message), !outcome.retriable) };
  }
  const res = outcome.response;
  const reqVersion = requestVersionOf(res.headers);
  return { decision: decideResponse(input, res), ...(reqVersion ? { reqVersion } : {}) };
}

function decideResponse(input: InterpretInput, res: AppResponse): Decision {
  const noRetry = res.headers["x-inngest-no-retry"];
  const retryAfter = res.headers["retry-after"];
  if (res.status >= 200 && res.status < 300) {
    // A 2xx that did not come from the SDK (a proxy, a wrong URL) proves nothing ran.
    if (!res.headers["x-inngest-sdk"]) {
      return retryOrFail(input, `app answered ${res.status} without an x-inngest-sdk header`, bodyError(res));
    }
    if (res.status === 200) {
      const parsed = parseJson(res.body);
      if (!parsed.ok)
        return retryOrFail(input, "app answered 200 with a body that is not JSON", bodyError(res));
      return { type: "complete", outputJson: JSON.stringify(parsed.value ?? null) };
    }
    if (res.status === 206) return decideOps(input, res);
    return retryOrFail(input, `app answered an unexpected ${res.status}`, bodyError(res));
  }
  const reason =
    res.status === 401
      ? "app rejected the request signature (401); check the environment's signing key"
      : `app answered ${res.status}`;
  const err = res.status === 401 ? errorJson(reason) : bodyError(res);
  return retryOrFail(input, reason, err, noRetry === "true", retryAfter);
}

function decideOps(input: InterpretInput, res: AppResponse): Decision {
  const ops = parseOps(res.body);
  if (!ops) return retryOrFail(input, "app answered 206 with a malformed op list", bodyError(res));
  const real = ops.filter((o) => !LAZY_OPS.has(o.op));
  if (real.length === 0) return retryOrFail(input, "app answered 206 without any op", bodyError(res));

  const unsupported = real.find((o) => o.op !== "RunComplete" && !PLANNABLE.has(o.op) && !isStepOp(o.op));
  if (unsupported) {
    const what = UNSUPPORTED_OPS[unsupported.op] ?? `the op ${JSON.stringify(unsupported.op)}`;
    const message = `${what} is not supported by Stepline yet`;
    return { type: "fail", reason: message, errorJson: errorJson(message, "NotSupportedError") };
  }

  const done = real.find((o) => o.op === "RunComplete");
  if (done) return { type: "complete", outputJson: JSON.stringify(done.data ?? null) };

  // An op for a step whose result the call sent: the app ignored its memo, so calling it again
  // would answer the same (a plan loop). Spend an attempt; the run fails once they are used up.
  const repeated = real.find((o) => input.savedStepIds.has(o.id));
  if (repeated) {
    const message = `app answered ${repeated.op} for step ${nameOf(repeated)}, whose saved result it was sent: the function must reach the same steps with the same ids on every call`;
    return retryOrFail(input, message, errorJson(message, "NonDeterministicStepError"));
  }

  const noRetry = res.headers["x-inngest-no-retry"] === "true";
  // With lazy ops present, a function-level error travels as a step error on the "complete" id.
  const fnError = real.find(
    (o) => (o.op === "StepError" || o.op === "StepFailed") && o.id === COMPLETE_OP_ID,
  );
  if (fnError) {
    const err = JSON.stringify(fnError.error ?? null);
    const reason = `function failed: ${messageOf(fnError.error)}`;
    return fnError.op === "StepFailed"
      ? { type: "fail", reason, errorJson: err }
      : retryOrFail(input, reason, err, noRetry, res.headers["retry-after"]);
  }

  const saves: StepResult[] = [];
  const stepError = real.find((o) => o.op === "StepError");
  if (stepError) {
    const exhausted = noRetry || input.attempt + 1 >= input.maxAttempts;
    if (!exhausted) {
      const reason = `step ${nameOf(stepError)} failed: ${messageOf(stepError.error)}`;
      const decision = retryOrFail(
        input,
        reason,
        JSON.stringify(stepError.error ?? null),
        false,
        res.headers["retry-after"],
      );
      if (decision.type === "retry") decision.step = { stepId: stepError.id, name: nameOf(stepError) };
      return decision;
    }
    // Out of attempts: the step failed for good, exactly as if the SDK had said StepFailed.
    const failed = failedStep(stepError);
    if (!failed) return canonicalFailure(stepError);
    saves.push(failed);
  } else {
    for (const o of real) {
      if (o.op !== "StepRun" && o.op !== "StepFailed") continue;
      const r = o.op === "StepRun" ? completedStep(o) : failedStep(o);
      if (!r) return canonicalFailure(o);
      saves.push(r);
    }
  }

  const saved = new Set(saves.map((s) => s.stepId));
  const plans: PlannedOp[] = [];
  // After a step error only the error is acted on; anything planned beside it is found again.
  for (const o of stepError ? [] : real) {
    if (saved.has(o.id)) continue;
    if (o.op === "StepPlanned") {
      if (o.id === input.stepId) {
        return retryOrFail(input, `app planned step ${nameOf(o)} again instead of running it`, "null");
      }
      const race = (o.opts as { parallelMode?: unknown } | null)?.parallelMode === "race";
      plans.push({ kind: "step", id: o.id, name: nameOf(o), race });
    } else if (o.op === "Sleep") {
      const until = timeFrom(o.name, input.nowMs);
      if (typeof until === "string") return badOp(o, `sleep ${until}`);
      plans.push({ kind: "sleep", id: o.id, name: nameOf(o), untilMs: until });
    } else if (o.op === "WaitForEvent" || o.op === "InvokeFunction") {
      const plan = o.op === "WaitForEvent" ? waitPlan(o, input.nowMs) : invokePlan(o, input.nowMs);
      if (typeof plan === "string") return badOp(o, plan);
      plans.push(plan);
    }
  }
  if (saves.length === 0 && plans.length === 0) {
    return retryOrFail(input, "app answered 206 without a usable op", bodyError(res));
  }
  // Several ops at once (parallel steps): from now on the SDK must plan, not run (§3 of the
  // protocol notes); a fan-in resets it (advance-run.lua).
  return { type: "advance", saves, plans, disableImmediate: real.length > 1 };
}

/** A WaitForEvent op as a plan: `name` is the event, `opts` has `timeout` and maybe `if`. */
function waitPlan(o: Op, nowMs: number): PlannedOp | string {
  if (typeof o.name !== "string" || o.name.trim() === "") return "waitForEvent needs an event name";
  const opts = (o.opts && typeof o.opts === "object" ? o.opts : {}) as { timeout?: unknown; if?: unknown };
  const timeoutAtMs = timeFrom(opts.timeout ?? "", nowMs);
  if (typeof timeoutAtMs === "string") return `waitForEvent timeout ${timeoutAtMs}`;
  const expression = typeof opts.if === "string" ? opts.if.trim() : "";
  if (expression) {
    let parsed: unknown;
    try {
      parsed = parse(expression);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      return `waitForEvent if-expression ${JSON.stringify(expression)} is not valid CEL: ${why}`;
    }
    const problem = celComplexityProblem(expression, parsed);
    if (problem) return `waitForEvent if-expression ${problem}`;
  }
  return { kind: "wait", id: o.id, name: nameOf(o), event: o.name, expression, timeoutAtMs };
}

/**
 * The most bytes of an invoke's payload (data, v, user): the `inngest/function.invoked` event
 * that carries it must stay within EVENT_MAX_BYTES, with room for its name, ids and `_inngest`.
 */
export const INVOKE_PAYLOAD_MAX_BYTES = EVENT_MAX_BYTES - 4 * 1024;

/** The longest an invoke waits for its function when the code gives no timeout (Inngest: a year). */
const DEFAULT_INVOKE_TIMEOUT_MS = 365 * 24 * 3600 * 1000;

/** An InvokeFunction op as a plan: `opts` has `function_id`, `payload` and maybe `timeout`. */
function invokePlan(o: Op, nowMs: number): PlannedOp | string {
  const opts = (o.opts && typeof o.opts === "object" ? o.opts : {}) as {
    function_id?: unknown;
    payload?: unknown;
    timeout?: unknown;
  };
  if (typeof opts.function_id !== "string" || opts.function_id === "") {
    return "step.invoke needs the id of the function to invoke";
  }
  const raw = (opts.payload && typeof opts.payload === "object" ? opts.payload : {}) as Record<
    string,
    unknown
  >;
  const data = raw.data ?? {};
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return "step.invoke data must be a JSON object";
  }
  const payload: Extract<PlannedOp, { kind: "invoke" }>["payload"] = {
    data: data as Record<string, unknown>,
  };
  if (typeof raw.v === "string") payload.v = raw.v;
  if (raw.user && typeof raw.user === "object" && !Array.isArray(raw.user)) {
    payload.user = raw.user as Record<string, unknown>;
  }
  const bytes = Buffer.byteLength(JSON.stringify(payload));
  if (bytes > INVOKE_PAYLOAD_MAX_BYTES) {
    return `step.invoke payload is ${bytes} bytes; at most ${INVOKE_PAYLOAD_MAX_BYTES} fit in the event that starts the function`;
  }
  let timeoutAtMs = nowMs + DEFAULT_INVOKE_TIMEOUT_MS;
  if (typeof opts.timeout === "string" && opts.timeout !== "") {
    const at = timeFrom(opts.timeout, nowMs);
    if (typeof at === "string") return `step.invoke timeout ${at}`;
    timeoutAtMs = at;
  }
  return { kind: "invoke", id: o.id, name: nameOf(o), functionId: opts.function_id, payload, timeoutAtMs };
}

/** An op the run cannot go on with fails the run, saying which step and why. */
function badOp(o: Op, problem: string): Decision {
  const message = `step ${nameOf(o)}: ${problem}`;
  return { type: "fail", reason: message, errorJson: errorJson(message) };
}

function isStepOp(op: string): boolean {
  return op === "StepRun" || op === "StepError" || op === "StepFailed" || op === "StepPlanned";
}

/** Ops an SDK may checkpoint: step results, and ops that only inform (planned steps, defers). */
const CHECKPOINTABLE = new Set(["StepRun", "StepPlanned", "DeferAdd", "DeferAbort"]);

/**
 * The step results of a checkpoint (SDK v4: the `steps` it POSTs to /v1/checkpoint/<run>/async):
 * one per `StepRun` op. Throws ValidationError for a body that is not a list of ops, or for an op
 * that a checkpoint must not carry (sleeps, waits, invokes, errors end the call instead).
 */
export function checkpointedSteps(stepsJson: string): StepResult[] {
  const parsed = parseJson(stepsJson);
  if (!parsed.ok || !Array.isArray(parsed.value))
    throw new ValidationError("steps must be a JSON array of ops");
  const out: StepResult[] = [];
  for (const [i, raw] of parsed.value.entries()) {
    const o = raw as Partial<Op> | null;
    if (!o || typeof o !== "object" || typeof o.op !== "string" || typeof o.id !== "string" || !o.id) {
      throw new ValidationError(`steps[${i}] is not an op with an id`);
    }
    if (!CHECKPOINTABLE.has(o.op)) {
      throw new ValidationError(`steps[${i}]: a checkpoint cannot carry a ${o.op} op; answer it instead`);
    }
    if (o.op !== "StepRun") continue;
    const step = completedStep(o as Op);
    if (!step) throw new ValidationError(`steps[${i}]: its data cannot be put in canonical JSON`);
    out.push(step);
  }
  return out;
}

function completedStep(o: Op): StepResult | null {
  const memoJson = safeCanonical({ data: o.data ?? null });
  if (memoJson === null) return null;
  return {
    stepId: o.id,
    name: nameOf(o),
    status: "completed",
    memoJson,
    resultJson: JSON.stringify(o.data ?? null),
    timing: timingOf(o),
  };
}

function failedStep(o: Op): StepResult | null {
  const error = o.error ?? { name: "Error", message: "Unknown error" };
  const memoJson = safeCanonical({ error });
  if (memoJson === null) return null;
  return {
    stepId: o.id,
    name: nameOf(o),
    status: "failed",
    memoJson,
    resultJson: JSON.stringify(error),
    timing: timingOf(o),
  };
}

/** A result that cannot be put in canonical JSON (e.g. a lone surrogate) can never be replayed. */
function canonicalFailure(o: Op): Decision {
  const message = `step ${nameOf(o)} returned a value that cannot be stored as canonical JSON`;
  return { type: "fail", reason: message, errorJson: errorJson(message) };
}

function retryOrFail(
  input: InterpretInput,
  reason: string,
  errJson: string,
  noRetry = false,
  retryAfter?: string,
): Decision {
  if (noRetry) return { type: "fail", reason, errorJson: errJson };
  const attempt = input.attempt + 1;
  if (attempt >= input.maxAttempts) {
    return { type: "fail", reason: `${reason} (after ${input.maxAttempts} attempts)`, errorJson: errJson };
  }
  const after = retryAfter === undefined ? undefined : parseRetryAfter(retryAfter, input.nowMs);
  const runAtMs = after ?? input.nowMs + backoffDelayMs(input.attempt, input.backoff, input.random);
  return { type: "retry", attempt, runAtMs, reason, errorJson: errJson };
}

/** The request version the SDK answered, when it is one we may echo (1 or 2; never 0). */
export function requestVersionOf(headers: Record<string, string>): number | undefined {
  const v = Number(headers["x-inngest-req-version"]);
  return v === 1 || v === 2 ? v : undefined;
}

function parseOps(body: string): Op[] | null {
  const parsed = parseJson(body);
  if (!parsed.ok) return null;
  const list = Array.isArray(parsed.value) ? parsed.value : [parsed.value];
  const ops: Op[] = [];
  for (const o of list) {
    if (!o || typeof o !== "object") return null;
    const op = o as Record<string, unknown>;
    if (typeof op.op !== "string" || typeof op.id !== "string") return null;
    ops.push(op as unknown as Op);
  }
  return ops;
}

function nameOf(o: Op): string {
  if (typeof o.displayName === "string" && o.displayName) return o.displayName;
  if (typeof o.name === "string" && o.name) return o.name;
  return o.id;
}

function messageOf(err: unknown): string {
  if (err && typeof err === "object" && "message" in err)
    return String((err as { message: unknown }).message);
  return typeof err === "string" ? err : "unknown error";
}

/**
 * The serialized error in an error answer's body, or one made from the status and text. Only an
 * answer from the SDK (x-inngest-sdk) is trusted to carry an error: anything else (a wrong URL, a
 * proxy, or a service the URL was pointed at to read its answer back) is described, never copied.
 */
function bodyError(res: AppResponse): string {
  if (!res.headers["x-inngest-sdk"]) {
    const type = res.headers["content-type"]?.split(";")[0] || "no content type";
    return errorJson(
      `app answered ${res.status} without an x-inngest-sdk header, so not from an SDK (${type}, ${Buffer.byteLength(res.body)} bytes, not kept); check the app's URL`,
    );
  }
  const parsed = parseJson(res.body);
  if (parsed.ok && parsed.value && typeof parsed.value === "object" && !Array.isArray(parsed.value)) {
    return JSON.stringify(parsed.value);
  }
  const text = res.body.length > 500 ? `${res.body.slice(0, 500)}…` : res.body;
  return errorJson(`app answered ${res.status}${text ? `: ${text}` : ""}`);
}

/** An error as the SDK serializes one (`{name, message}`), for the engine's own failures. */
export function errorJson(message: string, name = "Error"): string {
  return JSON.stringify({ name, message });
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

function safeCanonical(value: unknown): string | null {
  try {
    return canonicalize(value) ?? null;
  } catch {
    return null;
  }
}
