// Retrying with capped exponential backoff, for dependencies whose outage must delay history but
// never lose it (ClickHouse inserts, startup against a ClickHouse or Kafka that is not up yet).
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "@stepline/internal/log";

export interface RetryOptions {
  /** Aborting ends the wait early; `retry` then returns false. */
  signal: AbortSignal;
  log: Logger;
  /** What is being attempted, for the log. */
  what: string;
  /** Longest pause between attempts. */
  maxDelayMs: number;
  firstDelayMs?: number;
  /** Asked after each failure; false stops retrying (e.g. the partition was revoked). */
  shouldContinue?: () => boolean;
  /** Runs after each pause, before the next attempt (e.g. a consumer heartbeat). */
  beforeAttempt?: () => Promise<void>;
}

/**
 * Calls `attempt` until it succeeds (true) or retrying stops (false: aborted, or `shouldContinue`
 * said no). Never throws for a failed attempt; errors of `beforeAttempt` do propagate.
 */
export async function retry(attempt: () => Promise<void>, o: RetryOptions): Promise<boolean> {
  let delay = o.firstDelayMs ?? 100;
  for (let failures = 0; ; failures++) {
    if (o.signal.aborted) return false;
    try {
      await attempt();
      if (failures > 0) o.log.info({ what: o.what, failures }, "recovered after retries");
      return true;
    } catch (err) {
      if (o.signal.aborted || (o.shouldContinue && !o.shouldContinue())) return false;
      o.log.warn({ err, what: o.what, failures: failures + 1, retryInMs: delay }, "attempt failed; retrying");
    }
    try {
      await sleep(delay, undefined, { signal: o.signal });
    } catch {
      return false;
    }
    if (o.shouldContinue && !o.shouldContinue()) return false;
    await o.beforeAttempt?.();
    delay = Math.min(delay * 2, o.maxDelayMs);
  }
}
