// Each queue script against a real Redis: every return code in its header and the behaviours that
// matter. Invariants across scripts (slots, FIFO, a random mix) are in store-invariants.test.ts.
import type { Redis } from "ioredis";
import { beforeEach, describe, expect, it } from "vitest";
import type { ShardKeys } from "./keys.js";
import { partitionId, shardKeys } from "./keys.js";
import { NotOwnerError, Scripts } from "./scripts.js";
import { itemPartitions } from "./shard-reads.js";
import {
  ACQUIRED,
  ALREADY,
  acquireOwner,
  acquireOwners,
  claimItems,
  completeItems,
  ENQUEUED,
  EXISTS,
  EXPIRED,
  expiredLeases,
  extendLeases,
  HELD,
  OK,
  RECLAIMED,
  RENEWED,
  reclaimLeases,
  releaseOwner,
  releaseOwners,
  removeItems,
  retryItems,
  SKIPPED,
  STALE,
  WRONG_PARTITION,
} from "./store.js";
import { enqueueItems } from "./store-enqueue.js";
import { countSocketWrites, testRedis } from "./testing/redis.js";
import type { ScriptCalls } from "./testing/script-fixture.js";
import {
  claimWith,
  expectConsistentShard,
  FN_A,
  item,
  LEASE,
  T0,
  TOKEN,
  useScriptShard,
} from "./testing/script-fixture.js";

const calls: ScriptCalls = [];
const shard = useScriptShard(17, { ownerLeaseMs: 60_000, calls });
let redis: Redis;
let keys: ShardKeys;
let s: Scripts;

const claim = (...args: Parameters<typeof claimWith> extends [unknown, unknown, ...infer R] ? R : never) =>
  claimWith(s, keys, ...args);
const expectConsistent = () => expectConsistentShard(redis, keys);

// The shard's handles, taken from useScriptShard before each test.
beforeEach(() => {
  ({ redis, keys, s } = shard);
});

describe("enqueue.lua", () => {
  it("adds a new item and reports an id it already holds as existing", async () => {
    const first = await enqueueItems(s, keys, [item("i1"), item("i2"), item("i1")]);
    expect(first.codes).toEqual([ENQUEUED, ENQUEUED, EXISTS]);
    expect(first.due).toEqual({ shard: 17, nowMs: T0, beforeMs: -1, afterMs: T0 });
    const again = await enqueueItems(s, keys, [item("i2")]);
    expect(again.codes).toEqual([EXISTS]);
    await expectConsistent();
  });

  it("refuses an id whose completion tombstone is still alive", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    const c = await claim();
    expect(
      (await completeItems(s, keys, 60_000, 30_000, [{ itemId: "i1", generation: 1, ...FN_A, next: [] }]))
        .codes,
    ).toEqual([OK]);
    expect(c.leased).toHaveLength(1);
    expect((await enqueueItems(s, keys, [item("i1")])).codes).toEqual([EXISTS]);
  });

  it("reports that the shard's earliest due time moved earlier", async () => {
    await enqueueItems(s, keys, [item("late", { delayMs: 5_000 })]);
    const r = await enqueueItems(s, keys, [item("early", { delayMs: 1_000 })]);
    expect(r.due).toMatchObject({ beforeMs: T0 + 5_000, afterMs: T0 + 1_000 });
  });
});

describe("claim.lua", () => {
  it("refuses a token that does not own the shard (NOT_OWNER)", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    await expect(claim(10, "acct-1", [partitionId("env", "fn-a")], "intruder")).rejects.toBeInstanceOf(
      NotOwnerError,
    );
    await redis.del(keys.owner);
    await expect(claim()).rejects.toBeInstanceOf(NotOwnerError);
  });

  it("leases due items with generation 1 and an expiry of now + lease, and reports the next due time", async () => {
    await enqueueItems(s, keys, [item("i1"), item("i2"), item("later", { delayMs: 2_000 })]);
    const r = await claim(10);
    expect(r.leased.map((i) => [i.id, i.generation, i.leaseExpiresAtMs])).toEqual([
      ["i1", 1, T0 + LEASE],
      ["i2", 1, T0 + LEASE],
    ]);
    expect(r.leased[0]).toMatchObject({
      runId: "run-i1",
      accountId: "acct-1",
      functionId: "fn-a",
      attempt: 0,
    });
    expect(r.leased[0]?.payload).toBe(JSON.stringify({ stepId: "i1" }));
    expect(r.dueMs).toBe(T0 + 2_000);
    await expectConsistent();
  });

  it("does not hand out a delayed item before it is due", async () => {
    await enqueueItems(s, keys, [item("d1", { delayMs: 1_000 }), item("d2", { runAtMs: T0 + 500 })]);
    expect((await claim()).leased).toEqual([]);
    shard.now = T0 + 499;
    expect((await claim()).leased).toEqual([]);
    shard.now = T0 + 500;
    expect((await claim()).leased.map((i) => i.id)).toEqual(["d2"]);
    shard.now = T0 + 1_000;
    expect((await claim()).leased.map((i) => i.id)).toEqual(["d1"]);
    await expectConsistent();
  });

  it("hands out items of equal due time in enqueue order (FIFO within a partition)", async () => {
    const ids = Array.from({ length: 60 }, (_, i) => `f${String(i).padStart(2, "0")}`);
    // Reverse-sorted ids in separate calls within one millisecond: order must not come from ids.
    const reversed = [...ids].reverse();
    for (let i = 0; i < reversed.length; i += 7)
      await enqueueItems(
        s,
        keys,
        reversed.slice(i, i + 7).map((id) => item(id)),
      );
    const got: string[] = [];
    for (let round = 0; round < 10; round++) got.push(...(await claim(7)).leased.map((i) => i.id));
    expect(got).toEqual(reversed);
  });

  it("takes from every listed partition before filling from one (first pass capped, second fills)", async () => {
    const a = partitionId("env", "fn-a");
    const b = partitionId("env", "fn-b");
    await enqueueItems(s, keys, [
      ...Array.from({ length: 10 }, (_, i) => item(`a${i}`)),
      item("b0", { functionId: "fn-b" }),
    ]);
    const r = await claimItems(s, keys, {
      token: TOKEN,
      leaseMs: LEASE,
      maxDeliveries: 3,
      accountId: "acct-1",
      partitions: [
        { pid: a, cap: 3 },
        { pid: b, cap: 3 },
      ],
      maxItems: 6,
    });
    expect(r.leased.map((i) => i.id)).toEqual(["a0", "a1", "a2", "b0", "a3", "a4"]);
    await expectConsistent();
  });

  it("dead-letters an item delivered more than the maximum number of times", async () => {
    await enqueueItems(s, keys, [item("poison")]);
    for (let d = 1; d <= 3; d++) {
      const r = await claim();
      expect(r.leased.map((i) => [i.id, i.generation])).toEqual([["poison", 2 * d - 1]]);
      shard.now += LEASE;
      const exp = await expiredLeases(s, keys, 100);
      expect((await reclaimLeases(s, keys, TOKEN, exp.leases)).codes).toEqual([RECLAIMED]);
    }
    const last = await claim();
    expect(last.leased).toEqual([]);
    expect(last.deadLettered).toEqual(["poison"]);
    expect(await redis.zscore(keys.dlq, "poison")).toBe(String(shard.now));
    expect((await enqueueItems(s, keys, [item("poison")])).codes).toEqual([EXISTS]);
    // A run's item leaves a notice in its place (where it stood in line), which an executor
    // takes to fail the run.
    expect(last.dueMs).toBe(T0);
    const [notice] = (await claim()).leased;
    expect(notice).toMatchObject({
      id: "poison~dead",
      runId: "run-poison",
      kind: 6,
      payload: JSON.stringify({ stepId: "poison" }),
      partitionId: FN_A.pid,
    });
    const done = await completeItems(s, keys, 60_000, LEASE, [
      { itemId: "poison~dead", generation: notice?.generation ?? 0, ...FN_A, next: [] },
    ]);
    expect(done.codes).toEqual([OK]);
    expect(done.due.afterMs).toBe(-1);
    await expectConsistent();
  });

  it("leaves no notice for a dead-lettered item that belongs to no run (a cron tick)", async () => {
    await enqueueItems(s, keys, [item("tick", { kind: 3, runId: "" })]);
    for (let d = 1; d <= 3; d++) {
      await claim();
      shard.now += LEASE;
      await reclaimLeases(s, keys, TOKEN, (await expiredLeases(s, keys, 100)).leases);
    }
    const last = await claim();
    expect(last.deadLettered).toEqual(["tick"]);
    expect(last.dueMs).toBe(-1);
    expect(await redis.hexists(keys.items, "tick~dead")).toBe(0);
    await expectConsistent();
  });

  it("drops the pointers of an account whose items are all leased", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    await claim();
    expect(await redis.zcard(keys.accounts)).toBe(0);
    expect(await redis.zcard(keys.account("acct-1"))).toBe(0);
  });
});

describe("extend.lua", () => {
  it("moves a live lease's expiry forward and refuses stale, unknown and expired leases", async () => {
    await enqueueItems(s, keys, [item("i1"), item("i2")]);
    await claim();
    shard.now = T0 + 10_000;
    const r = await extendLeases(s, keys, LEASE, [
      { itemId: "i1", generation: 1, ...FN_A },
      { itemId: "i2", generation: 7, ...FN_A },
      { itemId: "nope", generation: 1, ...FN_A },
    ]);
    expect(r.results).toEqual([T0 + 10_000 + LEASE, STALE, STALE]);
    expect(Number(await redis.zscore(keys.leased, "i1"))).toBe(T0 + 10_000 + LEASE);
    shard.now = T0 + LEASE;
    expect((await extendLeases(s, keys, LEASE, [{ itemId: "i2", generation: 1, ...FN_A }])).results).toEqual([
      EXPIRED,
    ]);
    await expectConsistent();
  });
});

describe("complete.lua", () => {
  it("completes a leased item, answers a repeat with ALREADY and a wrong generation with STALE", async () => {
    await enqueueItems(s, keys, [item("i1"), item("i2")]);
    await claim();
    const r = await completeItems(s, keys, 60_000, 30_000, [
      { itemId: "i1", generation: 1, ...FN_A, next: [] },
      { itemId: "i2", generation: 5, ...FN_A, next: [] },
    ]);
    expect(r.codes).toEqual([OK, STALE]);
    const again = await completeItems(s, keys, 60_000, 30_000, [
      { itemId: "i1", generation: 1, ...FN_A, next: [] },
      { itemId: "i1", generation: 2, ...FN_A, next: [] },
      { itemId: "never", generation: 1, ...FN_A, next: [] },
    ]);
    expect(again.codes).toEqual([ALREADY, STALE, STALE]);
    expect(await redis.pttl(keys.seen("i1"))).toBeGreaterThan(50_000);
    expect(await redis.hexists(keys.items, "i1")).toBe(0);
    await expectConsistent();
  });

  it("refuses a complete with a stale generation after the item was re-leased", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    const first = await claim();
    shard.now += LEASE + 1;
    await reclaimLeases(s, keys, TOKEN, (await expiredLeases(s, keys, 10)).leases);
    const second = await claim();
    expect(second.leased[0]?.generation).toBe(3);
    const late = await completeItems(s, keys, 60_000, 30_000, [
      { itemId: "i1", generation: first.leased[0]?.generation ?? 0, ...FN_A, next: [item("n1")] },
    ]);
    expect(late.codes).toEqual([STALE]);
    expect(await redis.hexists(keys.items, "n1")).toBe(0);
    const ok = await completeItems(s, keys, 60_000, 30_000, [
      { itemId: "i1", generation: 3, ...FN_A, next: [] },
    ]);
    expect(ok.codes).toEqual([OK]);
    await expectConsistent();
  });

  it("enqueues the next items in the same atomic step as the completion", async () => {
    await enqueueItems(s, keys, [item("s1")]);
    await claim();
    const r = await completeItems(s, keys, 60_000, 30_000, [
      { itemId: "s1", generation: 1, ...FN_A, next: [item("s2"), item("s3", { delayMs: 1_000 })] },
    ]);
    expect(r.codes).toEqual([OK]);
    expect(r.due).toMatchObject({ beforeMs: -1, afterMs: T0 });
    expect((await claim()).leased.map((i) => i.id)).toEqual(["s2"]);
    shard.now += 1_000;
    expect((await claim()).leased.map((i) => i.id)).toEqual(["s3"]);
    await expectConsistent();
  });

  it("refuses to complete an item that was never leased", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    expect(
      (await completeItems(s, keys, 60_000, 30_000, [{ itemId: "i1", generation: 0, ...FN_A, next: [] }]))
        .codes,
    ).toEqual([STALE]);
  });
});

describe("retry.lua", () => {
  it("puts a leased item back at max(now, runAt) with the new attempt and a new generation", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    await claim();
    const pid = partitionId("env", "fn-a");
    const r = await retryItems(s, keys, [
      { itemId: "i1", generation: 1, accountId: "acct-1", pid, runAtMs: T0 + 3_000, attempt: 1 },
    ]);
    expect(r.codes).toEqual([OK]);
    expect(r.due.afterMs).toBe(T0 + 3_000);
    expect((await claim()).leased).toEqual([]);
    shard.now = T0 + 3_000;
    const again = await claim();
    expect(again.leased.map((i) => [i.id, i.attempt, i.generation])).toEqual([["i1", 1, 3]]);
    await expectConsistent();
  });

  it("refuses a stale generation (STALE) and a wrong partition (WRONG_PARTITION)", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    await claim();
    const pid = partitionId("env", "fn-a");
    const r = await retryItems(s, keys, [
      { itemId: "i1", generation: 9, accountId: "acct-1", pid, runAtMs: 0, attempt: 1 },
      {
        itemId: "i1",
        generation: 1,
        accountId: "acct-1",
        pid: partitionId("env", "other"),
        runAtMs: 0,
        attempt: 1,
      },
      { itemId: "gone", generation: 1, accountId: "acct-1", pid, runAtMs: 0, attempt: 1 },
    ]);
    expect(r.codes).toEqual([STALE, WRONG_PARTITION, STALE]);
    await expectConsistent();
  });

  it("releases an item back to its original place when runAt is -1", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    await claim(1);
    await enqueueItems(s, keys, [item("i2")]);
    const pid = partitionId("env", "fn-a");
    const r = await retryItems(s, keys, [
      { itemId: "i1", generation: 1, accountId: "acct-1", pid, runAtMs: -1, attempt: 0 },
    ]);
    expect(r.codes).toEqual([OK]);
    expect((await claim()).leased.map((i) => i.id)).toEqual(["i1", "i2"]);
  });

  it("finds an item's partition from its stored record", async () => {
    await enqueueItems(s, keys, [item("i1", { functionId: "fn/x y" })]);
    expect(await itemPartitions(s.redis, keys, ["i1", "nope"])).toEqual([
      { accountId: "acct-1", pid: partitionId("env", "fn/x y") },
      null,
    ]);
  });
});

describe("remove.lua", () => {
  it("removes a queued item (delayed or due) with its pointers, tombstones it, and leaves leased ones", async () => {
    const pid = partitionId("env", "fn-a");
    await enqueueItems(s, keys, [item("due"), item("later", { delayMs: 60_000 }), item("held")]);
    await claimItems(s, keys, {
      token: TOKEN,
      leaseMs: LEASE,
      maxDeliveries: 3,
      accountId: "acct-1",
      partitions: [{ pid, cap: 1 }],
      maxItems: 1,
    });
    const r = await removeItems(s, keys, 60_000, [
      { itemId: "later", accountId: "acct-1", pid },
      { itemId: "due", accountId: "acct-1", pid },
      { itemId: "held", accountId: "acct-1", pid },
      { itemId: "nope", accountId: "acct-1", pid },
    ]);
    // "due" was leased by the claim (first in line); "held" and "later" were queued.
    expect(r.codes).toEqual([1, -1, 1, 0]);
    await expectConsistent();
    expect((await enqueueItems(s, keys, [item("later")])).codes).toEqual([EXISTS]);
    expect(await redis.exists(keys.account("acct-1"))).toBe(0);
    expect(await redis.zcard(keys.accounts)).toBe(0);
  });

  it("refuses a wrong partition or account (WRONG_PARTITION) and keeps the item", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    const r = await removeItems(s, keys, 60_000, [
      { itemId: "i1", accountId: "acct-1", pid: partitionId("env", "other") },
      { itemId: "i1", accountId: "acct-2", pid: partitionId("env", "fn-a") },
    ]);
    expect(r.codes).toEqual([WRONG_PARTITION, WRONG_PARTITION]);
    expect((await claim()).leased.map((i) => i.id)).toEqual(["i1"]);
    await expectConsistent();
  });

  it("keeps the pointers exact when it removes a partition's head but not its tail", async () => {
    const pid = partitionId("env", "fn-a");
    await enqueueItems(s, keys, [item("first", { delayMs: 1_000 }), item("second", { delayMs: 5_000 })]);
    const r = await removeItems(s, keys, 60_000, [{ itemId: "first", accountId: "acct-1", pid }]);
    expect(r.codes).toEqual([1]);
    expect(r.due.afterMs).toBe(T0 + 5_000);
    await expectConsistent();
  });
});

describe("expired.lua and reclaim.lua", () => {
  it("makes an item whose lease expired available again, at its original place", async () => {
    await enqueueItems(s, keys, [item("i1"), item("i2")]);
    await claim(1);
    expect((await expiredLeases(s, keys, 10)).leases).toEqual([]);
    shard.now = T0 + LEASE;
    const exp = await expiredLeases(s, keys, 10);
    expect(exp).toEqual({
      nowMs: shard.now,
      nextExpiryMs: -1,
      leases: [{ itemId: "i1", accountId: "acct-1", pid: partitionId("env", "fn-a") }],
    });
    const r = await reclaimLeases(s, keys, TOKEN, exp.leases);
    expect(r.codes).toEqual([RECLAIMED]);
    expect((await claim()).leased.map((i) => [i.id, i.generation])).toEqual([
      ["i1", 3],
      ["i2", 1],
    ]);
    await expectConsistent();
  });

  it("skips a lease extended after it was listed, and removes leftovers", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    await claim();
    shard.now = T0 + LEASE;
    const exp = await expiredLeases(s, keys, 10);
    shard.now = T0 + LEASE - 1;
    await extendLeases(s, keys, LEASE, [{ itemId: "i1", generation: 1, ...FN_A }]);
    shard.now = T0 + LEASE;
    await redis.zadd(keys.leased, T0, "leftover");
    const r = await reclaimLeases(s, keys, TOKEN, [
      ...exp.leases,
      { itemId: "leftover", accountId: "", pid: "" },
    ]);
    expect(r.codes).toEqual([SKIPPED, SKIPPED]);
    expect(await redis.zscore(keys.leased, "leftover")).toBeNull();
    expect((await expiredLeases(s, keys, 10)).nextExpiryMs).toBe(T0 + 2 * LEASE - 1);
    await expectConsistent();
  });

  it("refuses a wrong partition (WRONG_PARTITION) and a stale owner token (NOT_OWNER)", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    await claim();
    shard.now = T0 + LEASE;
    const bad = [{ itemId: "i1", accountId: "acct-1", pid: partitionId("env", "zzz") }];
    expect((await reclaimLeases(s, keys, TOKEN, bad)).codes).toEqual([WRONG_PARTITION]);
    await expect(reclaimLeases(s, keys, "intruder", bad)).rejects.toBeInstanceOf(NotOwnerError);
  });
});

describe("owner-acquire.lua and owner-release.lua", () => {
  it("acquires a free lease, renews its own, and refuses one held by another token", async () => {
    const k = shardKeys(shard.ns, 3);
    expect(await acquireOwner(s, k, "a", 5_000)).toBe(ACQUIRED);
    expect(await acquireOwner(s, k, "a", 9_000)).toBe(RENEWED);
    expect(await redis.pttl(k.owner)).toBeGreaterThan(5_000);
    expect(await acquireOwner(s, k, "b", 5_000)).toBe(HELD);
    expect(await releaseOwner(s, k, "b")).toBe(false);
    expect(await releaseOwner(s, k, "a")).toBe(true);
    expect(await releaseOwner(s, k, "a")).toBe(false);
    expect(await acquireOwner(s, k, "b", 5_000)).toBe(ACQUIRED);
  });

  it("takes and gives back many leases in one write, each shard answered by its own code", async () => {
    const client = testRedis();
    try {
      const scripts = new Scripts(client, { assertSlots: true });
      const ks = [4, 5, 6, 7].map((n) => shardKeys(shard.ns, n));
      await acquireOwner(scripts, ks[1] as ShardKeys, "other", 5_000);
      await acquireOwner(scripts, ks[2] as ShardKeys, "a", 5_000);
      // Redis forgets its scripts when it restarts: a pipeline of them loads them again.
      await client.script("FLUSH");
      expect(await acquireOwners(scripts, ks, "a", 5_000)).toEqual([ACQUIRED, HELD, RENEWED, ACQUIRED]);
      const writes = countSocketWrites(client);
      expect(await acquireOwners(scripts, ks, "a", 5_000)).toEqual([RENEWED, HELD, RENEWED, RENEWED]);
      expect(writes.count).toBe(1);
      await releaseOwners(scripts, ks, "a");
      expect(writes.count).toBe(2);
      expect(await Promise.all(ks.map((k) => client.get(k.owner)))).toEqual([null, "other", null, null]);
    } finally {
      await client.quit();
    }
  });
});
