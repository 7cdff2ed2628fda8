// Validation of a function's flow-control options (pure): concurrency, throttle, rateLimit,
// debounce, batchEvents, priority, singleton and idempotency, as the SDK sends them in the
// function config. Each error names the function and the field, like the rest of the sync
// validation, because the SDK relays the message to the person who synced the app. Ranges follow
// Inngest's documented limits.

import { parseDuration } from "@stepline/internal/duration";
import { ValidationError } from "@stepline/internal/errors";
import { celSyntaxError } from "./expr.js";
import type { ConcurrencyScopeName, FlowConfig } from "./model.js";

export const FLOW_LIMITS = {
  concurrencyConstraints: 2,
  concurrencyLimit: 100_000,
  throttleLimit: 10_000,
  throttleBurst: 10_000,
  throttlePeriodMs: { min: 1_000, max: 7 * 86_400_000 },
  rateLimitLimit: 100_000,
  rateLimitPeriodMs: { min: 1_000, max: 86_400_000 },
  debouncePeriodMs: { min: 1_000, max: 7 * 86_400_000 },
  batchMaxSize: 1_000,
  batchTimeoutMs: { min: 1_000, max: 60_000 },
  expressionChars: 4_096,
} as const;

const SCOPES: readonly ConcurrencyScopeName[] = ["fn", "env", "account"];

/** The flow control of a function config (`config` is the parsed raw JSON); throws ValidationError. */
export function validateFlow(config: Record<string, unknown>, at: string): FlowConfig {
  return {
    concurrency: concurrencyField(config.concurrency, `${at}: concurrency`),
    throttle: throttleField(config.throttle, `${at}: throttle`),
    rateLimit: rateLimitField(config.rateLimit, `${at}: rateLimit`),
    debounce: debounceField(config.debounce, `${at}: debounce`),
    batchEvents: batchField(config.batchEvents, `${at}: batchEvents`),
    priority: priorityField(config.priority, `${at}: priority`),
    singleton: singletonField(config.singleton, `${at}: singleton`),
    idempotency: isAbsent(config.idempotency) ? "" : celField(config.idempotency, `${at}: idempotency`),
  };
}

function concurrencyField(raw: unknown, where: string): FlowConfig["concurrency"] {
  if (isAbsent(raw)) return [];
  if (typeof raw === "number")
    return [{ limit: intField(raw, where, 0, FLOW_LIMITS.concurrencyLimit), scope: "fn", key: "" }];
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length > FLOW_LIMITS.concurrencyConstraints) {
    fail(`${where} may hold at most ${FLOW_LIMITS.concurrencyConstraints} limits`);
  }
  return list.map((c: unknown, i) => {
    const w = Array.isArray(raw) ? `${where}[${i}]` : where;
    const o = objectField(c, w);
    const scope = o.scope ?? "fn";
    if (typeof scope !== "string" || !SCOPES.includes(scope as ConcurrencyScopeName)) {
      fail(`${w}.scope must be one of "fn", "env" or "account", got ${JSON.stringify(scope)}`);
    }
    return {
      limit: intField(o.limit, `${w}.limit`, 0, FLOW_LIMITS.concurrencyLimit),
      scope: scope as ConcurrencyScopeName,
      key: isAbsent(o.key) ? "" : celField(o.key, `${w}.key`),
    };
  });
}

function throttleField(raw: unknown, where: string): FlowConfig["throttle"] {
  if (isAbsent(raw)) return null;
  const o = objectField(raw, where);
  return {
    limit: intField(o.limit, `${where}.limit`, 1, FLOW_LIMITS.throttleLimit),
    periodMs: durationField(o.period, `${where}.period`, FLOW_LIMITS.throttlePeriodMs),
    burst: isAbsent(o.burst) ? 0 : intField(o.burst, `${where}.burst`, 0, FLOW_LIMITS.throttleBurst),
    key: isAbsent(o.key) ? "" : celField(o.key, `${where}.key`),
  };
}

function rateLimitField(raw: unknown, where: string): FlowConfig["rateLimit"] {
  if (isAbsent(raw)) return null;
  const o = objectField(raw, where);
  return {
    limit: intField(o.limit, `${where}.limit`, 1, FLOW_LIMITS.rateLimitLimit),
    periodMs: durationField(o.period, `${where}.period`, FLOW_LIMITS.rateLimitPeriodMs),
    key: isAbsent(o.key) ? "" : celField(o.key, `${where}.key`),
  };
}

function debounceField(raw: unknown, where: string): FlowConfig["debounce"] {
  if (isAbsent(raw)) return null;
  const o = objectField(raw, where);
  const periodMs = durationField(o.period, `${where}.period`, FLOW_LIMITS.debouncePeriodMs);
  const timeoutMs = isAbsent(o.timeout)
    ? 0
    : durationField(o.timeout, `${where}.timeout`, FLOW_LIMITS.debouncePeriodMs);
  if (timeoutMs > 0 && timeoutMs < periodMs) fail(`${where}.timeout must not be shorter than its period`);
  return { periodMs, timeoutMs, key: isAbsent(o.key) ? "" : celField(o.key, `${where}.key`) };
}

function batchField(raw: unknown, where: string): FlowConfig["batchEvents"] {
  if (isAbsent(raw)) return null;
  const o = objectField(raw, where);
  return {
    maxSize: intField(o.maxSize, `${where}.maxSize`, 1, FLOW_LIMITS.batchMaxSize),
    timeoutMs: durationField(o.timeout, `${where}.timeout`, FLOW_LIMITS.batchTimeoutMs),
    key: isAbsent(o.key) ? "" : celField(o.key, `${where}.key`),
    if: isAbsent(o.if) ? "" : celField(o.if, `${where}.if`),
  };
}

function priorityField(raw: unknown, where: string): string {
  if (isAbsent(raw)) return "";
  const o = objectField(raw, where);
  return isAbsent(o.run) ? "" : celField(o.run, `${where}.run`);
}

function singletonField(raw: unknown, where: string): FlowConfig["singleton"] {
  if (isAbsent(raw)) return null;
  const o = objectField(raw, where);
  if (o.mode !== "skip" && o.mode !== "cancel") {
    fail(`${where}.mode must be "skip" or "cancel", got ${JSON.stringify(o.mode)}`);
  }
  return { mode: o.mode, key: isAbsent(o.key) ? "" : celField(o.key, `${where}.key`) };
}

function isAbsent(v: unknown): boolean {
  return v === undefined || v === null || v === "";
}

function objectField(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(`${where} must be an object`);
  return v as Record<string, unknown>;
}

function intField(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    fail(`${where} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function durationField(v: unknown, where: string, range: { min: number; max: number }): number {
  const ms = typeof v === "string" ? parseDuration(v) : typeof v === "number" ? v : null;
  if (ms === null || !Number.isFinite(ms) || ms <= 0) {
    fail(`${where} must be a duration like "30s", "10m" or "2h", got ${JSON.stringify(v)}`);
  }
  if (ms < range.min || ms > range.max) {
    fail(`${where} must be from ${human(range.min)} to ${human(range.max)}, got ${JSON.stringify(v)}`);
  }
  return Math.ceil(ms);
}

function celField(v: unknown, where: string): string {
  if (typeof v !== "string" || v.length > FLOW_LIMITS.expressionChars) {
    fail(`${where} must be a CEL expression of at most ${FLOW_LIMITS.expressionChars} characters`);
  }
  const syntax = celSyntaxError(v);
  if (syntax !== null) fail(`${where} is not valid CEL: ${syntax}`);
  return v;
}

function human(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

function fail(message: string): never {
  throw new ValidationError(message);
}
