// `singleton` locks: at most one running run per (function, key). The lock names the run that
// holds it; a run takes it when it is scheduled and gives it back when it ends (finalize.ts). A
// lock whose holder is no longer running (its end was never finalized) is stale and taken over,
// so a crash never wedges a key. The locks live in their own hash tag per environment.

import type { Redis, Result } from "ioredis";

declare module "ioredis" {
  interface RedisCommander<Context> {
    steplineSingletonTake(lock: string, runId: string): Result<string, Context>;
    steplineSingletonSwap(lock: string, holder: string, runId: string): Result<number, Context>;
    steplineSingletonRelease(lock: string, runId: string): Result<number, Context>;
  }
}

// KEYS[1] lock; ARGV[1] run id. Returns "" when the run holds the lock now, else the holder.
const TAKE_LUA = `local h = redis.call('GET', KEYS[1])
if not h or h == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) return '' end
return h`;
// KEYS[1] lock; ARGV[1] expected holder, ARGV[2] new holder. Returns 1 when swapped.
const SWAP_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0`;
// KEYS[1] lock; ARGV[1] run id. Deletes the lock if the run holds it.
const RELEASE_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** A run's singleton: its function and the hash of its evaluated key. */
export interface SingletonRef {
  environmentId: string;
  functionId: string;
  keyHash: string;
}

export class SingletonLocks {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = "s:",
  ) {
    redis.defineCommand("steplineSingletonTake", { numberOfKeys: 1, lua: TAKE_LUA });
    redis.defineCommand("steplineSingletonSwap", { numberOfKeys: 1, lua: SWAP_LUA });
    redis.defineCommand("steplineSingletonRelease", { numberOfKeys: 1, lua: RELEASE_LUA });
  }

  /** Takes the lock for `runId` unless another run holds it; returns that holder, or null. */
  async take(ref: SingletonRef, runId: string): Promise<string | null> {
    const holder = await this.redis.steplineSingletonTake(this.key(ref), runId);
    return holder === "" ? null : holder;
  }

  /** Moves the lock from `holder` to `runId`; false when `holder` no longer holds it. */
  async swap(ref: SingletonRef, holder: string, runId: string): Promise<boolean> {
    return (await this.redis.steplineSingletonSwap(this.key(ref), holder, runId)) === 1;
  }

  /** Gives the lock back if `runId` holds it. */
  async release(ref: SingletonRef, runId: string): Promise<void> {
    await this.redis.steplineSingletonRelease(this.key(ref), runId);
  }

  private key(ref: SingletonRef): string {
    return `${this.prefix}{sg:${ref.environmentId}}:${encodeURIComponent(ref.functionId)}:${ref.keyHash}`;
  }
}
