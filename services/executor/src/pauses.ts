// Waits (step.waitForEvent) and their index. The executor owns them: a wait is a pending op of its
// run (state.ts) plus an entry in the index of its (environment, event name), so matching an event
// reads only the waits on that name. The runner reaches them through ExecutorService.ListPauses and
// ResumePauses, never through these keys.

import { UnavailableError } from "@stepline/internal/errors";
import type { Redis } from "ioredis";

/** One wait, as stored in the index and listed to the runner. */
export interface Pause {
  runId: string;
  opId: string;
  environmentId: string;
  eventName: string;
  /** CEL over `event` and `async`; "" = any event of the name. */
  expression: string;
  /** The run's first trigger event (JSON), the `event` of the expression. */
  triggerEventJson: string;
  createdAtMs: number;
  timeoutAtMs: number;
  /** A `cancelOn` of the run rather than a step.waitForEvent: a match cancels the run. */
  cancel: boolean;
}

interface StoredPause {
  expr: string;
  trig: string;
  at: number;
  until: number;
  cancel?: 1;
}

/** The index key of an environment's waits on one event name (one cluster slot per environment). */
export function pauseIndexKey(prefix: string, environmentId: string, eventName: string): string {
  return `${prefix}{w:${environmentId}}:e:${eventName}`;
}

const field = (runId: string, opId: string) => `${runId}:${opId}`;

/** The timeout of a wait that never times out on its own (a `cancelOn` without a timeout). */
export const NEVER = 4_000_000_000_000;

/** The wait index over one Redis client. `prefix` defaults to `s:` (tests use their own). */
export class PauseStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = "s:",
  ) {}

  /** Indexes a wait; a second add of the same wait keeps the first (its creation time stands). */
  async add(p: Pause): Promise<void> {
    const value: StoredPause = {
      expr: p.expression,
      trig: p.triggerEventJson,
      at: p.createdAtMs,
      until: p.timeoutAtMs,
      ...(p.cancel ? { cancel: 1 as const } : {}),
    };
    await wrap(() =>
      this.redis.hsetnx(
        pauseIndexKey(this.prefix, p.environmentId, p.eventName),
        field(p.runId, p.opId),
        JSON.stringify(value),
      ),
    );
  }

  /** Drops a wait from the index (it resolved); dropping one that is gone is fine. */
  async remove(environmentId: string, eventName: string, runId: string, opId: string): Promise<void> {
    await wrap(() =>
      this.redis.hdel(pauseIndexKey(this.prefix, environmentId, eventName), field(runId, opId)),
    );
  }

  /** Every wait on each (environment, event name), one pipelined read per name. */
  async list(queries: Array<{ environmentId: string; eventName: string }>): Promise<Pause[]> {
    if (queries.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const q of queries) pipeline.hgetall(pauseIndexKey(this.prefix, q.environmentId, q.eventName));
    const res = await wrap(() => pipeline.exec());
    const out: Pause[] = [];
    queries.forEach((q, i) => {
      const [err, hash] = res?.[i] ?? [new Error("no reply"), null];
      if (err) throw new UnavailableError(`redis: ${err.message}`);
      for (const [key, text] of Object.entries((hash ?? {}) as Record<string, string>)) {
        const cut = key.lastIndexOf(":");
        const v = JSON.parse(text) as StoredPause;
        out.push({
          runId: key.slice(0, cut),
          opId: key.slice(cut + 1),
          environmentId: q.environmentId,
          eventName: q.eventName,
          expression: v.expr,
          triggerEventJson: v.trig,
          createdAtMs: v.at,
          timeoutAtMs: v.until,
          cancel: v.cancel === 1,
        });
      }
    });
    return out;
  }
}

async function wrap<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new UnavailableError(`redis: ${err instanceof Error ? err.message : String(err)}`);
  }
}
