// The one way to retry in Stepline: capped exponential backoff with jitter, and a loop that
// retries only what the caller says is transient. Every retry of the services goes through here
// (consumer batches, ClickHouse inserts, reconnects, start-up against dependencies not up yet,
// step retries), so a fix to how Stepline backs off is made once.
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "./log.js";

export interface Backoff {
  /** The wait after the first failure. */
  firstMs: number;
  /** The longest wait. */
  maxMs: number;
}

/**
 * The wait after `failures` failures in a row (1 = the first): firstMs·2^(failures-1), capped at
 * maxMs, then jittered into its upper half, so that clients that failed together do not all come
 * back together. `random` is a number in [0, 1) (tests pass a fixed one).
 */
export function backoffMs(failures: number, b: Backoff, random: number = Math.random()): number {
  const full = Math.min(b.maxMs, b.firstMs * 2 ** Math.min(Math.max(failures - 1, 0), 40));
  return Math.round(full / 2 + (random * full) / 2);
}

export interface RetryOptions {
  log: Logger;
  /** What is being attempted, for the log. */
  what: string;
  backoff: Backoff;
  /** Aborting ends the wait early; `retry` then returns false. */
  signal?: AbortSignal;
  /** Errors a later attempt may get past; any other is thrown at once. Default: every error. */
  isTransient?: (err: unknown) => boolean;
  /** Asked before each attempt after a failure; false stops retrying (e.g. the partition was revoked). */
  shouldContinue?: () => boolean;
  /** Runs after each pause, before the next attempt (e.g. a consumer heartbeat). */
  beforeAttempt?: () => Promise<void>;
}

/**
 * Calls `attempt` until it succeeds (true) or retrying stops (false: aborted, or `shouldContinue`
 * said no). A transient failure is logged and retried after `backoffMs`; any other is thrown, as
 * are errors of `beforeAttempt`.
 */
export async function retry(attempt: () => Promise<void>, o: RetryOptions): Promise<boolean> {
  for (let failures = 0; ; ) {
    if (o.signal?.aborted) return false;
    try {
      await attempt();
      if (failures > 0) o.log.info({ what: o.what, failures }, "recovered after retries");
      return true;
    } catch (err) {
      if (o.isTransient && !o.isTransient(err)) throw err;
      if (o.signal?.aborted || (o.shouldContinue && !o.shouldContinue())) return false;
      failures++;
      const delay = backoffMs(failures, o.backoff);
      o.log.warn({ err, what: o.what, failures, retryInMs: delay }, "attempt failed; retrying");
      try {
        await sleep(delay, undefined, { signal: o.signal });
      } catch {
        return false;
      }
    }
    if (o.shouldContinue && !o.shouldContinue()) return false;
    await o.beforeAttempt?.();
  }
}
