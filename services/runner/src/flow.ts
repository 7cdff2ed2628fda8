// The flow control a run carries, fixed when the run is scheduled: its concurrency groups and
// throttle key (each key expression evaluated against the trigger event and hashed) and its
// priority. The queue gets the limits themselves from GetFlowLimits when it hands items out.

import { createHash } from "node:crypto";
import type { Singleton } from "@stepline/proto/stepline/executor/v1/executor_service";
import { SingletonMode } from "@stepline/proto/stepline/executor/v1/executor_service";
import type { FlowControl } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ConcurrencyScope } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { ConcurrencyLimit, ThrottleLimit } from "@stepline/proto/stepline/runner/v1/runner_service";
import { celScalar } from "./expr.js";
import type { ConcurrencyScopeName, FlowConfig, FunctionDef } from "./model.js";

export const SCOPE: Record<ConcurrencyScopeName, ConcurrencyScope> = {
  fn: ConcurrencyScope.CONCURRENCY_SCOPE_FUNCTION,
  env: ConcurrencyScope.CONCURRENCY_SCOPE_ENVIRONMENT,
  account: ConcurrencyScope.CONCURRENCY_SCOPE_ACCOUNT,
};

/** The highest priority.run factor, in seconds (Inngest's documented range is -600..600). */
export const MAX_PRIORITY_S = 600;

/** No flow control: what a function without any of the options has. */
export const NO_FLOW: FlowConfig = {
  concurrency: [],
  throttle: null,
  rateLimit: null,
  debounce: null,
  batchEvents: null,
  priority: "",
  singleton: null,
  idempotency: "",
};

/** A function's flow config (registries synced before flow control have none). */
export function flowConfig(fn: FunctionDef): FlowConfig {
  return fn.flow ?? NO_FLOW;
}

/** The FlowControl of a run of `fn` triggered by `event`; undefined when the function has none. */
export function runFlow(fn: FunctionDef, event: unknown): FlowControl | undefined {
  const flow = flowConfig(fn);
  const priorityS = flow.priority ? priorityOf(flow.priority, event) : 0;
  if (flow.concurrency.length === 0 && !flow.throttle && priorityS === 0) return undefined;
  return {
    concurrency: flow.concurrency.map((c) => ({
      scope: SCOPE[c.scope],
      keyHash: c.key ? keyHash(c.key, event) : "",
    })),
    throttled: flow.throttle !== null,
    throttleKeyHash: flow.throttle?.key ? keyHash(flow.throttle.key, event) : "",
    priorityS,
  };
}

/** The run's `singleton` (its key evaluated against `event`); undefined when the function has none. */
export function runSingleton(fn: FunctionDef, event: unknown): Singleton | undefined {
  const s = flowConfig(fn).singleton;
  if (!s) return undefined;
  return {
    keyHash: s.key ? keyHash(s.key, event) : "",
    mode: s.mode === "cancel" ? SingletonMode.SINGLETON_MODE_CANCEL : SingletonMode.SINGLETON_MODE_SKIP,
  };
}

/** The limits the queue applies to a function's items (GetFlowLimits). */
export function flowLimits(fn: FunctionDef): {
  concurrency: ConcurrencyLimit[];
  throttle: ThrottleLimit | undefined;
} {
  const flow = flowConfig(fn);
  return {
    concurrency: flow.concurrency.map((c) => ({
      scope: SCOPE[c.scope],
      keyed: c.key !== "",
      limit: c.limit,
    })),
    throttle: flow.throttle
      ? { limit: flow.throttle.limit, periodMs: flow.throttle.periodMs, burst: flow.throttle.burst }
      : undefined,
  };
}

/**
 * The hash naming a key's group: the evaluated value as text (so "5" and 5 share a group), hashed.
 * A key that fails to evaluate, or gives a map or a list, puts the run in one group of its own
 * for all such runs.
 */
export function keyHash(expression: string, event: unknown): string {
  return evaluatedKeyHash(expression, event) ?? hashText("\u0000unevaluated");
}

/** The hash of a key's value, or null when the key does not evaluate to a string, number or bool. */
export function evaluatedKeyHash(expression: string, event: unknown): string | null {
  const value = celScalar(expression, { event });
  return value === undefined ? null : hashText(String(value));
}

function hashText(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

/**
 * `priority.run` in whole seconds, clamped to ±600. Any CEL number counts (JSON numbers are CEL
 * doubles); anything else, or an error, is 0.
 */
export function priorityOf(expression: string, event: unknown): number {
  const v = celScalar(expression, { event });
  const n = typeof v === "bigint" ? Number(v) : typeof v === "number" ? v : Number.NaN;
  if (!Number.isFinite(n)) return 0;
  return Math.max(-MAX_PRIORITY_S, Math.min(MAX_PRIORITY_S, Math.trunc(n)));
}
