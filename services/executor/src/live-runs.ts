// The live runs of each function, by start time: what bulk cancellation walks. One sorted set per
// (environment, function), hash-tagged by environment; a run is added when it is created and
// removed once its end has been dealt with (finalize.ts).

import { UnavailableError } from "@stepline/internal/errors";
import type { Redis } from "ioredis";

/** The key of one function's live runs (score = the run's start, epoch ms). */
export function liveRunsKey(prefix: string, environmentId: string, functionId: string): string {
  return `${prefix}{live:${environmentId}}:${functionId}`;
}

export class LiveRuns {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = "s:",
  ) {}

  /** Adds runs (one pipeline); adding one twice keeps its first start time. */
  async add(runs: Array<{ runId: string; environmentId: string; functionId: string; createdAtMs: number }>) {
    if (runs.length === 0) return;
    const p = this.redis.pipeline();
    for (const r of runs) {
      p.zadd(liveRunsKey(this.prefix, r.environmentId, r.functionId), "NX", r.createdAtMs, r.runId);
    }
    await exec(p);
  }

  async remove(environmentId: string, functionId: string, runId: string): Promise<void> {
    await wrap(() => this.redis.zrem(liveRunsKey(this.prefix, environmentId, functionId), runId));
  }

  /** Up to `limit` live runs started in [fromMs, toMs), oldest first, and whether more remain. */
  async range(
    environmentId: string,
    functionId: string,
    fromMs: number,
    toMs: number,
    limit: number,
  ): Promise<{ runIds: string[]; more: boolean }> {
    const key = liveRunsKey(this.prefix, environmentId, functionId);
    const ids = await wrap(() => this.redis.zrangebyscore(key, fromMs, `(${toMs}`, "LIMIT", 0, limit + 1));
    return { runIds: ids.slice(0, limit), more: ids.length > limit };
  }
}

async function exec(p: ReturnType<Redis["pipeline"]>): Promise<void> {
  const res = await wrap(() => p.exec());
  for (const [err] of res ?? []) if (err) throw new UnavailableError(`redis: ${err.message}`);
}

async function wrap<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof UnavailableError) throw err;
    throw new UnavailableError(`redis: ${err instanceof Error ? err.message : String(err)}`);
  }
}
