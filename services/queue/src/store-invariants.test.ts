// Invariants across the queue scripts, against a real Redis: every call in one cluster slot, FIFO
// beyond 1,024 items a millisecond, Redis time, fencing of deposed owners, and a seeded random mix
// of every script after which no item is lost and every pointer is exact.
import { generateMulti } from "cluster-key-slot";
import type { Redis } from "ioredis";
import { beforeEach, describe, expect, it } from "vitest";
import type { ShardKeys } from "./keys.js";
import { partitionId } from "./keys.js";
import { NotOwnerError, Scripts } from "./scripts.js";
import { itemPartitions } from "./shard-reads.js";
import {
  acquireOwner,
  claimItems,
  completeItems,
  EXPIRED,
  expiredLeases,
  extendLeases,
  OK,
  reclaimLeases,
  releaseOwner,
  removeItems,
  retryItems,
} from "./store.js";
import { enqueueItems } from "./store-enqueue.js";
import { shardProblems } from "./testing/invariants.js";
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

describe("key layout", () => {
  it("puts every key of every script call in one cluster slot", async () => {
    calls.length = 0;
    await enqueueItems(s, keys, [item("i1"), item("i2", { accountId: "other", functionId: "x{y}" })]);
    await claim();
    await claim(10, "other", [partitionId("env", "x{y}")]);
    await extendLeases(s, keys, LEASE, [{ itemId: "i1", generation: 1, ...FN_A }]);
    await completeItems(s, keys, 1_000, 30_000, [
      { itemId: "i1", generation: 1, ...FN_A, next: [item("n1", { accountId: "a{b" })] },
    ]);
    await retryItems(s, keys, [
      {
        itemId: "i2",
        generation: 1,
        accountId: "other",
        pid: partitionId("env", "x{y}"),
        runAtMs: 0,
        attempt: 1,
      },
    ]);
    await expiredLeases(s, keys, 10);
    await reclaimLeases(s, keys, TOKEN, [{ itemId: "zz", accountId: "", pid: "" }]);
    await removeItems(s, keys, 1_000, [{ itemId: "n1", accountId: "a{b", pid: partitionId("env", "fn-a") }]);
    await acquireOwner(s, keys, TOKEN, 60_000);
    await releaseOwner(s, keys, TOKEN);
    const names = new Set(calls.map((c) => c.name));
    expect(names.size).toBe(10);
    for (const c of calls) {
      expect(generateMulti([...c.keys]), `${c.name}: ${c.keys.join(" ")}`).not.toBe(-1);
      expect(c.keys.every((k) => k.startsWith(`q:{${shard.ns}s17}:`))).toBe(true);
    }
  });
});

describe("invariants not covered above", () => {
  it("keeps equal due times FIFO across calls even when one call adds more than 1024 items in a millisecond", async () => {
    await enqueueItems(s, keys, [item("s1")]);
    await claim();
    // One completion fanning out to 1,100 next items: the sequence passes 1023 within T0.
    const fan = Array.from({ length: 1_100 }, (_, i) => item(`n${String(i).padStart(4, "0")}`));
    expect(
      (await completeItems(s, keys, 60_000, 30_000, [{ itemId: "s1", generation: 1, ...FN_A, next: fan }]))
        .codes,
    ).toEqual([OK]);
    shard.now = T0 + 1;
    await enqueueItems(s, keys, [item("later")]);
    shard.now = T0 + 10;
    const got = (await claim(2_000)).leased.map((i) => i.id);
    expect(got).toEqual([...fan.map((f) => f.id), "later"]);
    await expectConsistent();
  });

  it("completes a lease that expired but was not reclaimed yet (nobody else holds it)", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    await claim();
    shard.now = T0 + LEASE + 5_000;
    expect((await extendLeases(s, keys, LEASE, [{ itemId: "i1", generation: 1, ...FN_A }])).results).toEqual([
      EXPIRED,
    ]);
    expect(
      (await completeItems(s, keys, 60_000, 30_000, [{ itemId: "i1", generation: 1, ...FN_A, next: [] }]))
        .codes,
    ).toEqual([OK]);
    expect((await expiredLeases(s, keys, 10)).leases).toEqual([]);
    await expectConsistent();
  });

  it("never dead-letters for releases: a release takes its claim's delivery back and counts itself", async () => {
    const pid = partitionId("env", "fn-a");
    await enqueueItems(s, keys, [item("i1")]);
    const handBack = async (attempt: number) => {
      const [l] = (await claim()).leased;
      expect(l?.id).toBe("i1");
      const r = await retryItems(s, keys, [
        { itemId: "i1", generation: l?.generation ?? 0, accountId: "acct-1", pid, runAtMs: 0, attempt },
      ]);
      expect(r.codes).toEqual([OK]);
      return l;
    };
    // maxDeliveries is 3: ten releases in a row (an outage of the engine's own dependencies) ...
    const releases: number[] = [];
    for (let i = 0; i < 10; i++) releases.push((await handBack(0))?.releases ?? -1);
    // ... each lease reporting how many came before it, so the holder backs off further.
    expect(releases).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // A counted retry (attempt grows) resets the count.
    expect((await handBack(1))?.releases).toBe(10);
    const [l] = (await claim()).leased;
    expect([l?.id, l?.attempt, l?.releases]).toEqual(["i1", 1, 0]);
    await expectConsistent();
  });

  it("reads a record written before the release count existed (7 header fields) as 0 releases", async () => {
    await enqueueItems(s, keys, [item("i1")]);
    const raw = (await redis.hget(keys.items, "i1")) ?? "";
    const old = raw.replace(/^(\w(?::\d+){6}):\d+\|/, "$1|");
    expect(old).not.toBe(raw);
    await redis.hset(keys.items, "i1", old);
    const [l] = (await claim()).leased;
    expect([l?.id, l?.releases, l?.generation]).toEqual(["i1", 0, 1]);
    await expectConsistent();
  });

  it("reads Redis TIME when no clock override is given (no replica's clock decides a lease)", async () => {
    const real = new Scripts(redis, { assertSlots: true });
    await enqueueItems(real, keys, [item("i1")]);
    const [sec, micro] = await redis.time();
    const redisNow = Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
    const r = await claimItems(real, keys, {
      token: TOKEN,
      leaseMs: LEASE,
      maxDeliveries: 3,
      accountId: "acct-1",
      partitions: [{ pid: partitionId("env", "fn-a"), cap: 1 }],
      maxItems: 1,
    });
    expect(Math.abs(r.nowMs - redisNow)).toBeLessThan(1_000);
    expect(r.leased[0]?.leaseExpiresAtMs).toBe(r.nowMs + LEASE);
  });

  it("lets a deposed owner's claim and reclaim change nothing", async () => {
    await enqueueItems(s, keys, [item("i1"), item("i2")]);
    await claim(1);
    shard.now = T0 + LEASE;
    const exp = await expiredLeases(s, keys, 10);
    await redis.set(keys.owner, "new-owner");
    const before = await redis.hgetall(keys.items);
    await expect(claim()).rejects.toBeInstanceOf(NotOwnerError);
    await expect(reclaimLeases(s, keys, TOKEN, exp.leases)).rejects.toBeInstanceOf(NotOwnerError);
    expect(await redis.hgetall(keys.items)).toEqual(before);
    expect(await redis.zrange(keys.leased, 0, "-1")).toEqual(["i1"]);
    await expectConsistent();
  });

  it("never loses an item or lets pointers drift under a random mix of every script", async () => {
    // A seeded generator, so a failure replays.
    let seed = 12345;
    const rnd = (n: number) => {
      // mulberry32
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
    };
    const accounts = ["a1", "a2", "a3"];
    const fns = ["f1", "f2"];
    const held = new Map<string, { gen: number; acct: string; fn: string }>();
    const live = new Set<string>();
    const done = new Set<string>();
    let next = 0;
    let handedOff = 0;
    const newItem = () => {
      const id = `r${next++}`;
      const over = { accountId: accounts[rnd(3)] as string, functionId: fns[rnd(2)] as string };
      return item(id, { ...over, delayMs: [0, 0, 50, 2_000][rnd(4)] as number });
    };
    for (let step = 0; step < 400; step++) {
      const op = rnd(9);
      if (op === 0) {
        const batch = Array.from({ length: 1 + rnd(5) }, newItem);
        await enqueueItems(s, keys, batch);
        for (const b of batch) live.add(b.id);
      } else if (op === 1 || op === 2) {
        const acct = accounts[rnd(3)] as string;
        const r = await claimItems(s, keys, {
          token: TOKEN,
          leaseMs: LEASE,
          maxDeliveries: 3,
          accountId: acct,
          partitions: fns.map((f) => ({ pid: partitionId("env", f), cap: 1 + rnd(3) })),
          maxItems: 1 + rnd(6),
        });
        for (const l of r.leased) held.set(l.id, { gen: l.generation, acct, fn: l.functionId });
        for (const d of r.deadLettered) live.delete(d);
      } else if ((op === 3 || op === 4) && held.size > 0) {
        const ids = [...held.keys()];
        const id = ids[rnd(ids.length)] as string;
        const h = held.get(id) as { gen: number; acct: string; fn: string };
        const stale = rnd(5) === 0;
        const kids = Array.from({ length: rnd(3) }, () => ({ ...newItem(), accountId: h.acct }));
        const r = await completeItems(s, keys, 60_000, LEASE, [
          {
            itemId: id,
            generation: stale ? h.gen - 1 : h.gen,
            accountId: h.acct,
            pid: partitionId("env", h.fn),
            next: kids,
            handOff: rnd(2) === 0,
          },
        ]);
        if (r.codes[0] === OK) {
          held.delete(id);
          live.delete(id);
          done.add(id);
          for (const k of kids) live.add(k.id);
          const handed = r.handedOff.get(0);
          if (handed) {
            handedOff++;
            held.set(handed.id, { gen: handed.generation, acct: h.acct, fn: handed.functionId });
          }
        } else {
          expect(r.handedOff.size).toBe(0);
        }
      } else if (op === 5 && held.size > 0) {
        const ids = [...held.keys()];
        const id = ids[rnd(ids.length)] as string;
        const h = held.get(id) as { gen: number; acct: string; fn: string };
        const r = await retryItems(s, keys, [
          {
            itemId: id,
            generation: h.gen,
            accountId: h.acct,
            pid: partitionId("env", h.fn),
            runAtMs: [-1, 0, shard.now + 500][rnd(3)] as number,
            attempt: rnd(3),
          },
        ]);
        if (r.codes[0] === OK) held.delete(id);
      } else if (op === 7 && live.size > held.size) {
        const queued = [...live].filter((id) => !held.has(id));
        const id = queued[rnd(queued.length)] as string;
        const raw = (await itemPartitions(s.redis, keys, [id]))[0];
        if (raw) {
          const r = await removeItems(s, keys, 60_000, [{ itemId: id, ...raw }]);
          if (r.codes[0] === 1) live.delete(id);
        }
      } else if (op === 6 && held.size > 0) {
        await extendLeases(
          s,
          keys,
          LEASE,
          [...held].map(([itemId, h]) => ({
            itemId,
            generation: h.gen,
            accountId: h.acct,
            pid: partitionId("env", h.fn),
          })),
        );
      } else {
        shard.now += rnd(3) === 0 ? LEASE : rnd(200);
        const exp = await expiredLeases(s, keys, 100);
        await reclaimLeases(s, keys, TOKEN, exp.leases);
      }
      const problems = await shardProblems(redis, keys);
      expect(problems, `after step ${step} (op ${op})`).toEqual([]);
      // Every live item is still stored; every completed one is gone.
      const stored = await redis.hmget(keys.items, ...live, ...done, "-");
      const lost = [...live].filter((_, i) => stored[i] === null);
      expect(lost, `lost after step ${step}`).toEqual([]);
      expect(stored.slice(live.size, live.size + done.size).filter((v) => v !== null)).toEqual([]);
    }
    expect(done.size).toBeGreaterThan(10);
    expect(handedOff).toBeGreaterThan(0);
  });
});
