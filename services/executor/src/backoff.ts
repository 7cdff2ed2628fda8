// How long a failed call waits before its next attempt: the function's backoff, and the app's own
// `retry-after` when it sends one.

export interface BackoffPolicy {
  /** Delay before the second attempt; doubles with each attempt. */
  baseMs: number;
  maxMs: number;
}

/** Exponential backoff with jitter: about base·2^attempt (half fixed, half random), capped. */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy, random: number): number {
  const full = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(full / 2 + (random * full) / 2);
}

/** `retry-after` as seconds or an HTTP/ISO date, as an epoch ms no earlier than now. */
export function parseRetryAfter(value: string, nowMs: number): number | undefined {
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return nowMs + Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(nowMs, at);
}
