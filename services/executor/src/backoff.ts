// How long a failed call waits before its next attempt: the function's backoff, and the app's own
// `retry-after` when it sends one.
import { backoffMs } from "@stepline/internal/retry";

export interface BackoffPolicy {
  /** Delay before the second attempt; doubles with each attempt. */
  baseMs: number;
  maxMs: number;
}

/** The wait before the next attempt after attempt `attempt` (0-based) failed: base·2^attempt, capped, jittered (@stepline/internal/retry). */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy, random: number): number {
  return backoffMs(attempt + 1, { firstMs: policy.baseMs, maxMs: policy.maxMs }, random);
}

/**
 * The latest an app's `retry-after` (or `RetryAfterError`) may push a retry: a run that waits
 * longer holds its state and its place for nothing, and a wrong header must not park it for years.
 * `step.sleep` is the way to wait longer.
 */
export const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000;

/** `retry-after` as seconds or an HTTP/ISO date, as an epoch ms from now to MAX_RETRY_AFTER_MS ahead. */
export function parseRetryAfter(value: string, nowMs: number): number | undefined {
  const v = value.trim();
  let at: number;
  if (/^\d+(\.\d+)?$/.test(v)) at = nowMs + Math.round(Number(v) * 1000);
  else at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(nowMs, at), nowMs + MAX_RETRY_AFTER_MS);
}
