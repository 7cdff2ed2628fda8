// The setup the script tests share (store, store-invariants, store-enqueue and flow tests):
// items, a claim with the usual arguments, and a shard whose scripts read a clock the test moves.
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, expect } from "vitest";
import type { ShardKeys } from "../keys.js";
import { partitionId, shardKeys } from "../keys.js";
import type { ScriptName } from "../scripts.js";
import { Scripts } from "../scripts.js";
import type { ItemInput } from "../store.js";
import { ACQUIRED, acquireOwner, claimItems } from "../store.js";
import { shardProblems } from "./invariants.js";
import { dropNamespace, testNamespace, testRedis } from "./redis.js";

export const T0 = 1_700_000_000_000;
export const LEASE = 30_000;
export const TOKEN = "owner-1";

/** Every script call a test's Scripts made, for the slot checks. */
export type ScriptCalls = Array<{ name: ScriptName; keys: readonly string[] }>;

/** Where an item made by `item()` lives: completions and extensions name it. */
export const FN_A = { accountId: "acct-1", pid: partitionId("env", "fn-a") };

/** An item of account acct-1, function fn-a, due now. */
export function item(id: string, over: Partial<ItemInput> = {}): ItemInput {
  return {
    id,
    runId: `run-${id}`,
    accountId: "acct-1",
    environmentId: "env",
    functionId: "fn-a",
    kind: 2,
    delayMs: 0,
    runAtMs: 0,
    attempt: 0,
    payload: JSON.stringify({ stepId: id }),
    ...over,
  };
}

/** A claim by the owner TOKEN over `pids`, up to `max` items (each partition capped at `max`). */
export function claimWith(
  s: Scripts,
  keys: ShardKeys,
  max = 10,
  accountId = "acct-1",
  pids = [partitionId("env", "fn-a")],
  token = TOKEN,
) {
  return claimItems(s, keys, {
    token,
    leaseMs: LEASE,
    maxDeliveries: 3,
    accountId,
    partitions: pids.map((pid) => ({ pid, cap: max })),
    maxItems: max,
  });
}

/** Fails the test when the shard breaks an invariant (each item in one place, exact pointers). */
export async function expectConsistentShard(redis: Redis, keys: ShardKeys): Promise<void> {
  expect(await shardProblems(redis, keys)).toEqual([]);
}

/** What a script test works on: set afresh before each test by `useScriptShard`. */
export interface ScriptShard {
  redis: Redis;
  /** The test's namespace (its keys' prefix). */
  ns: string;
  keys: ShardKeys;
  s: Scripts;
  /** The scripts' clock (epoch ms): starts at T0, and the test moves it. */
  now: number;
}

/**
 * Registers a script test's hooks: one shard (`shard`) of a fresh namespace per test, owned by
 * TOKEN, its scripts checking slots and reading `now` (and, given `calls`, recording each call
 * there); the namespace is dropped after the test.
 */
export function useScriptShard(
  shard: number,
  opts: { ownerLeaseMs?: number; calls?: ScriptCalls } = {},
): ScriptShard {
  const { ownerLeaseMs = 600_000, calls } = opts;
  const t = { now: T0, ns: "" } as ScriptShard;
  beforeAll(() => {
    t.redis = testRedis();
  });
  afterAll(async () => {
    await t.redis.quit();
  });
  beforeEach(async () => {
    t.ns = testNamespace();
    t.keys = shardKeys(t.ns, shard);
    t.now = T0;
    t.s = new Scripts(t.redis, {
      assertSlots: true,
      nowMs: () => t.now,
      ...(calls ? { onCall: (name: ScriptName, k: readonly string[]) => calls.push({ name, keys: k }) } : {}),
    });
    expect(await acquireOwner(t.s, t.keys, TOKEN, ownerLeaseMs)).toBe(ACQUIRED);
  });
  afterEach(async () => {
    await dropNamespace(t.redis, t.ns);
  });
  return t;
}
