// Flow control in the scripts, against a real Redis with a clock the test moves: concurrency
// (function, environment and keyed limits, slots freed by complete, retry and lease expiry),
// throttle (GCRA on first deliveries of start items), priority, and pause/resume. Every step
// checks the shard's invariants.
import type { Redis } from "ioredis";
import { beforeEach, describe, expect, it } from "vitest";
import type { ShardKeys } from "./keys.js";
import type { FunctionLimits } from "./limits.js";
import type { FlowInput } from "./partitions.js";
import { concurrencySetId, parsePartition, partitionOf } from "./partitions.js";
import type { Scripts } from "./scripts.js";
import type { ItemInput } from "./store.js";
import {
  claimItems,
  completeItems,
  expiredLeases,
  extendLeases,
  OK,
  reclaimLeases,
  retryItems,
} from "./store.js";
import { enqueueItems } from "./store-enqueue.js";
import { pausedFunctions, pauseFunction, resumeFunction } from "./store-pauses.js";
import { expectConsistentShard, item, LEASE, T0, TOKEN, useScriptShard } from "./testing/script-fixture.js";

const shard = useScriptShard(5);
let redis: Redis;
let keys: ShardKeys;
let s: Scripts;

// The shard's handles, taken from useScriptShard before each test.
beforeEach(() => {
  ({ redis, keys, s } = shard);
});

const FN_LIMIT: FlowInput = {
  concurrency: [{ scope: 1, keyHash: "" }],
  throttled: false,
  throttleKeyHash: "",
  priorityS: 0,
};

function flowItem(id: string, flow: FlowInput, over: Partial<ItemInput> = {}): ItemInput {
  return item(id, { flow, ...over });
}

function pidOf(i: ItemInput): string {
  return partitionOf(i.environmentId, i.functionId, i.flow, i.kind === 1);
}

/** Claims up to `max` items of acct-1 from the partitions of `samples`, each with `limits`. */
async function claimFrom(samples: ItemInput[], limits: FunctionLimits | null, max = 10) {
  const pids = [...new Set(samples.map(pidOf))];
  return claimItems(s, keys, {
    token: TOKEN,
    leaseMs: LEASE,
    maxDeliveries: 5,
    accountId: "acct-1",
    partitions: pids.map((pid) => ({ pid, cap: max, limits })),
    maxItems: max,
  });
}

/** The partitions of acct-1 that claim would look at now. */
async function readyPids(): Promise<string[]> {
  return redis.zrangebyscore(keys.account("acct-1"), "-inf", shard.now * 1024 + 1023);
}

function done(i: ItemInput, generation: number) {
  return { itemId: i.id, generation, accountId: i.accountId, pid: pidOf(i), next: [] };
}

const limit = (n: number, scope: "f" | "e" | "a" = "f", keyed = false): FunctionLimits => ({
  concurrency: [{ scope, keyed, limit: n }],
  throttle: null,
});

describe("concurrency", () => {
  it("leases no more than the limit, blocks the partition, and wakes it when a slot frees", async () => {
    const items = ["a", "b", "c", "d"].map((id) => flowItem(id, FN_LIMIT));
    await enqueueItems(s, keys, items);
    const first = await claimFrom(items, limit(2));
    expect(first.leased.map((l) => l.id)).toEqual(["a", "b"]);
    // Blocked until the earliest lease of the limit expires: not ready now, so no busy claims.
    expect(await readyPids()).toEqual([]);
    expect(first.dueMs).toBe(T0 + LEASE);
    await expectConsistentShard(redis, keys);

    shard.now += 100;
    expect((await completeItems(s, keys, 60_000, 30_000, [done(items[0] as ItemInput, 1)])).codes).toEqual([
      OK,
    ]);
    expect(await readyPids()).toEqual([pidOf(items[0] as ItemInput)]);
    const second = await claimFrom(items, limit(2));
    expect(second.leased.map((l) => l.id)).toEqual(["c"]);
    await expectConsistentShard(redis, keys);

    // A retry (backoff) frees its slot too.
    const retried = await retryItems(s, keys, [
      {
        itemId: "b",
        generation: 1,
        accountId: "acct-1",
        pid: pidOf(items[1] as ItemInput),
        runAtMs: shard.now + 60_000,
        attempt: 1,
      },
    ]);
    expect(retried.codes).toEqual([OK]);
    expect((await claimFrom(items, limit(2))).leased.map((l) => l.id)).toEqual(["d"]);
    await expectConsistentShard(redis, keys);
  });

  it("frees the slot of a lease that expired, and extend keeps a live lease's slot", async () => {
    const items = ["a", "b", "c"].map((id) => flowItem(id, FN_LIMIT));
    await enqueueItems(s, keys, items);
    expect((await claimFrom(items, limit(1))).leased.map((l) => l.id)).toEqual(["a"]);
    shard.now += LEASE / 2;
    const ext = await extendLeases(s, keys, LEASE, [
      { itemId: "a", generation: 1, accountId: "acct-1", pid: pidOf(items[0] as ItemInput) },
    ]);
    expect(ext.results).toEqual([shard.now + LEASE]);
    await expectConsistentShard(redis, keys);
    // The old expiry passes: the extended lease still holds the only slot.
    shard.now = T0 + LEASE + 1;
    expect((await claimFrom(items, limit(1))).leased).toEqual([]);
    // Its new expiry passes without a word from the holder: the slot is free again.
    shard.now = T0 + LEASE / 2 + LEASE + 1;
    const exp = await expiredLeases(s, keys, 10);
    await reclaimLeases(s, keys, TOKEN, exp.leases);
    const again = await claimFrom(items, limit(1));
    expect(again.leased.map((l) => l.id)).toEqual(["a"]);
    await expectConsistentShard(redis, keys);
  });

  it("gives each key value its own limit, so one busy key never holds another back", async () => {
    const k1: FlowInput = { ...FN_LIMIT, concurrency: [{ scope: 1, keyHash: "aa11" }] };
    const k2: FlowInput = { ...FN_LIMIT, concurrency: [{ scope: 1, keyHash: "bb22" }] };
    const items = [
      flowItem("x1", k1),
      flowItem("x2", k1),
      flowItem("x3", k1),
      flowItem("y1", k2),
      flowItem("y2", k2),
    ];
    await enqueueItems(s, keys, items);
    const got = await claimFrom(items, limit(1, "f", true));
    expect(got.leased.map((l) => l.id).sort()).toEqual(["x1", "y1"]);
    // x's partition is blocked; y's completes and its next item goes at once.
    await completeItems(s, keys, 60_000, 30_000, [done(items[3] as ItemInput, 1)]);
    expect((await claimFrom(items, limit(1, "f", true))).leased.map((l) => l.id)).toEqual(["y2"]);
    await expectConsistentShard(redis, keys);
  });

  it("shares an environment-scoped limit between functions, while a function-scoped one stays its own", async () => {
    const shared: FlowInput = { ...FN_LIMIT, concurrency: [{ scope: 2, keyHash: "cc33" }] };
    const a = [flowItem("a1", shared), flowItem("a2", shared)];
    const b = [
      flowItem("b1", shared, { functionId: "fn-b" }),
      flowItem("b2", shared, { functionId: "fn-b" }),
    ];
    const c = [
      flowItem("c1", FN_LIMIT, { functionId: "fn-c" }),
      flowItem("c2", FN_LIMIT, { functionId: "fn-c" }),
    ];
    await enqueueItems(s, keys, [...a, ...b, ...c]);
    const envLimit = limit(1, "e", true);
    const got = await claimItems(s, keys, {
      token: TOKEN,
      leaseMs: LEASE,
      maxDeliveries: 5,
      accountId: "acct-1",
      partitions: [
        { pid: pidOf(a[0] as ItemInput), cap: 10, limits: envLimit },
        { pid: pidOf(b[0] as ItemInput), cap: 10, limits: envLimit },
        { pid: pidOf(c[0] as ItemInput), cap: 10, limits: limit(2) },
      ],
      maxItems: 10,
    });
    // One of the two functions sharing the limit, and both of the third function's items: a
    // function at its limit does not hold back another in the same claim.
    expect(got.leased.map((l) => l.id)).toEqual(["a1", "c1", "c2"]);
    await expectConsistentShard(redis, keys);
  });

  it("shares an account-scoped limit across the account's environments and functions", async () => {
    const acct: FlowInput = { ...FN_LIMIT, concurrency: [{ scope: 3, keyHash: "ee55" }] };
    const a = flowItem("a1", acct, { environmentId: "prod" });
    const b = flowItem("b1", acct, { environmentId: "staging", functionId: "fn-b" });
    await enqueueItems(s, keys, [a, b]);
    const accountLimit = limit(1, "a", true);
    const claimBoth = () =>
      claimItems(s, keys, {
        token: TOKEN,
        leaseMs: LEASE,
        maxDeliveries: 5,
        accountId: "acct-1",
        partitions: [
          { pid: pidOf(a), cap: 10, limits: accountLimit },
          { pid: pidOf(b), cap: 10, limits: accountLimit },
        ],
        maxItems: 10,
      });
    expect((await claimBoth()).leased.map((l) => l.id)).toEqual(["a1"]);
    await completeItems(s, keys, 60_000, 30_000, [done(a, 1)]);
    expect((await claimBoth()).leased.map((l) => l.id)).toEqual(["b1"]);
    await expectConsistentShard(redis, keys);
  });

  it("applies the limits passed in, not ones remembered from an earlier claim", async () => {
    const items = ["a", "b", "c"].map((id) => flowItem(id, FN_LIMIT));
    await enqueueItems(s, keys, items);
    expect((await claimFrom(items, limit(1))).leased).toHaveLength(1);
    // A re-sync raised the limit; the partition is blocked on the old one until woken or expired.
    shard.now = T0 + LEASE + 1;
    const exp = await expiredLeases(s, keys, 10);
    await reclaimLeases(s, keys, TOKEN, exp.leases);
    expect((await claimFrom(items, limit(3))).leased).toHaveLength(3);
    await expectConsistentShard(redis, keys);
  });
});

describe("throttle", () => {
  const THROTTLED: FlowInput = { concurrency: [], throttled: true, throttleKeyHash: "", priorityS: 0 };
  const throttle = (lim: number, periodMs: number, burst: number): FunctionLimits => ({
    concurrency: [],
    throttle: { limit: lim, periodMs, burst },
  });

  it("starts limit + burst at once, then one per period / limit, keeping the rest queued", async () => {
    const starts = Array.from({ length: 6 }, (_, i) => flowItem(`r${i}`, THROTTLED, { kind: 1 }));
    await enqueueItems(s, keys, starts);
    const t = throttle(2, 6_000, 1);
    expect((await claimFrom(starts, t)).leased.map((l) => l.id)).toEqual(["r0", "r1", "r2"]);
    // The partition waits for exactly the next start's moment.
    expect(await readyPids()).toEqual([]);
    expect((await claimFrom(starts, t)).dueMs).toBe(T0 + 3_000);
    shard.now = T0 + 2_999;
    expect((await claimFrom(starts, t)).leased).toEqual([]);
    shard.now = T0 + 3_000;
    expect((await claimFrom(starts, t)).leased.map((l) => l.id)).toEqual(["r3"]);
    shard.now = T0 + 6_000;
    expect((await claimFrom(starts, t)).leased.map((l) => l.id)).toEqual(["r4"]);
    await expectConsistentShard(redis, keys);
  });

  it("throttles only a start's first delivery, and never a run's later steps", async () => {
    const start = flowItem("s0", THROTTLED, { kind: 1 });
    const other = flowItem("s1", THROTTLED, { kind: 1 });
    const step = flowItem("p1", THROTTLED, { kind: 2 });
    await enqueueItems(s, keys, [start, other, step]);
    const t = throttle(1, 60_000, 0);
    const got = await claimItems(s, keys, {
      token: TOKEN,
      leaseMs: LEASE,
      maxDeliveries: 5,
      accountId: "acct-1",
      partitions: [
        { pid: pidOf(start), cap: 10, limits: t },
        { pid: pidOf(step), cap: 10, limits: t },
      ],
      maxItems: 10,
    });
    expect(got.leased.map((l) => l.id)).toEqual(["s0", "p1"]);
    // The first start's lease is lost; handed out again, it is not throttled a second time.
    shard.now = T0 + LEASE + 1;
    await reclaimLeases(s, keys, TOKEN, (await expiredLeases(s, keys, 10)).leases);
    expect((await claimFrom([start], t)).leased.map((l) => l.id)).toEqual(["s0"]);
    await expectConsistentShard(redis, keys);
  });
});

describe("priority", () => {
  const pri = (priorityS: number): FlowInput => ({
    concurrency: [],
    throttled: false,
    throttleKeyHash: "",
    priorityS,
  });

  it("hands a start with a higher priority out ahead of older ones, and delays a negative one", async () => {
    await enqueueItems(s, keys, [flowItem("old", pri(0), { kind: 1 })]);
    shard.now += 10_000;
    await enqueueItems(s, keys, [
      flowItem("urgent", pri(60), { kind: 1 }),
      flowItem("later", pri(-30), { kind: 1 }),
      flowItem("plain", pri(0), { kind: 1 }),
    ]);
    const sample = [flowItem("x", pri(0), { kind: 1 })];
    expect((await claimFrom(sample, null)).leased.map((l) => l.id)).toEqual(["urgent", "old", "plain"]);
    shard.now += 29_999;
    expect((await claimFrom(sample, null)).leased).toEqual([]);
    shard.now += 1;
    expect((await claimFrom(sample, null)).leased.map((l) => l.id)).toEqual(["later"]);
    await expectConsistentShard(redis, keys);
  });
});

describe("run start order", () => {
  it("hands a started run's next step out ahead of newer runs' first calls", async () => {
    const startOf = (id: string, runStartedAtMs: number) => item(id, { kind: 1, runStartedAtMs });
    // Two new runs queue up while an older run (started 5 s ago) is between steps.
    await enqueueItems(s, keys, [startOf("new-1", shard.now), startOf("new-2", shard.now)]);
    shard.now += 100;
    await enqueueItems(s, keys, [item("old-step", { kind: 2, runStartedAtMs: T0 - 5_000 })]);
    // A future item (a sleep's end) keeps its due time whatever its run's start.
    await enqueueItems(s, keys, [
      item("old-sleep", { kind: 2, runStartedAtMs: T0 - 5_000, delayMs: 60_000 }),
    ]);
    const got = await claimFrom([item("x")], null);
    expect(got.leased.map((l) => l.id)).toEqual(["old-step", "new-1", "new-2"]);
    await expectConsistentShard(redis, keys);
  });
});

describe("pause and resume", () => {
  const fn = { accountId: "acct-1", environmentId: "env", functionId: "fn-a" };

  it("keeps a paused function's items queued in order, and hands them out at once on resume", async () => {
    const items = ["a", "b"].map((id) => item(id));
    await enqueueItems(s, keys, items);
    expect(await pauseFunction(s, keys, fn)).toBe(true);
    expect(await pauseFunction(s, keys, fn)).toBe(false);
    expect(await pausedFunctions(s, keys, [fn, { ...fn, functionId: "fn-b" }])).toEqual([true, false]);
    const other = item("o1", { functionId: "fn-b" });
    await enqueueItems(s, keys, [other]);
    expect((await claimFrom([...items, other], null)).leased.map((l) => l.id)).toEqual(["o1"]);
    shard.now += 1_000;
    await enqueueItems(s, keys, [item("c")]);
    expect((await claimFrom(items, null)).leased).toEqual([]);
    expect(await readyPids()).toEqual([]);
    await expectConsistentShard(redis, keys);

    shard.now += 1_000;
    expect((await resumeFunction(s, keys, fn)).changed).toBe(true);
    expect((await resumeFunction(s, keys, fn)).changed).toBe(false);
    expect((await claimFrom(items, null)).leased.map((l) => l.id)).toEqual(["a", "b", "c"]);
    await expectConsistentShard(redis, keys);
  });
});

describe("hand-off", () => {
  const FN_A_REF = { accountId: "acct-1", environmentId: "env", functionId: "fn-a" };
  /** A completion of `i` (leased with `generation`) whose next items are `next`, asking for a hand-off. */
  const handOff = (i: ItemInput, generation: number, next: ItemInput[]) => ({
    ...done(i, generation),
    next,
    handOff: true,
  });

  it("leases the run's next item to the completing holder at once, in the completed item's slot", async () => {
    // A limit of 1, full with "a"; "b" of another run waits behind it, blocked.
    const a = flowItem("a", FN_LIMIT, { runId: "run-a" });
    const b = flowItem("b", FN_LIMIT, { runId: "run-b" });
    await enqueueItems(s, keys, [a, b]);
    expect((await claimFrom([a], limit(1))).leased.map((l) => l.id)).toEqual(["a"]);
    expect(await readyPids()).toEqual([]);

    shard.now += 10;
    const a2 = flowItem("a:c1", FN_LIMIT, { runId: "run-a" });
    const r = await completeItems(s, keys, 60_000, LEASE, [handOff(a, 1, [a2])]);
    expect(r.codes).toEqual([OK]);
    const handed = r.handedOff.get(0);
    expect(handed).toMatchObject({
      id: "a:c1",
      runId: "run-a",
      generation: 1,
      leaseExpiresAtMs: shard.now + LEASE,
    });
    // It took "a"'s slot: the set still holds one lease, "b" stays blocked, nothing is ready.
    const spec = parsePartition(pidOf(a));
    const group = spec?.groups[0];
    if (!spec || !group) throw new Error("no concurrency group");
    const set = keys.concurrency("acct-1", concurrencySetId(spec, group));
    expect(await redis.zrange(set, "0", "-1")).toEqual(["a:c1"]);
    expect(await readyPids()).toEqual([]);
    await expectConsistentShard(redis, keys);

    // It behaves as any lease: extended, then completed without a hand-off, which frees the slot.
    expect((await extendLeases(s, keys, LEASE, [done(a2, 1)])).results).toEqual([shard.now + LEASE]);
    expect((await completeItems(s, keys, 60_000, LEASE, [done(a2, 1)])).codes).toEqual([OK]);
    expect(await readyPids()).toEqual([pidOf(b)]);
    expect((await claimFrom([b], limit(1))).leased.map((l) => l.id)).toEqual(["b"]);
    await expectConsistentShard(redis, keys);
  });

  it("enqueues instead when the next item is not due now, of another partition, paused, or known", async () => {
    const cases: Array<{ why: string; next: ItemInput; before?: () => Promise<unknown> }> = [
      { why: "delayed", next: flowItem("n1", FN_LIMIT, { delayMs: 5_000 }) },
      { why: "run at a time", next: flowItem("n2", FN_LIMIT, { runAtMs: T0 + 60_000 }) },
      { why: "another function", next: flowItem("n3", FN_LIMIT, { functionId: "fn-b" }) },
      {
        why: "paused",
        next: flowItem("n4", FN_LIMIT),
        before: () => pauseFunction(s, keys, FN_A_REF),
      },
    ];
    for (const [n, c] of cases.entries()) {
      const cur = flowItem(`cur${n}`, FN_LIMIT);
      await enqueueItems(s, keys, [cur]);
      const leased = (await claimFrom([cur], null)).leased;
      expect(
        leased.map((l) => l.id),
        c.why,
      ).toEqual([cur.id]);
      await c.before?.();
      const r = await completeItems(s, keys, 60_000, LEASE, [handOff(cur, 1, [c.next])]);
      expect(r.codes, c.why).toEqual([OK]);
      expect(r.handedOff.size, c.why).toBe(0);
      // Enqueued as usual.
      expect(await redis.hexists(keys.items, c.next.id), c.why).toBe(1);
      expect(await redis.zscore(keys.leased, c.next.id), c.why).toBeNull();
      await expectConsistentShard(redis, keys);
    }

    // A next item whose id is known (a repeated decision) is neither handed off nor enqueued twice;
    // a stale completion hands nothing off.
    await resumeFunction(s, keys, FN_A_REF);
    const cur = flowItem("cur-x", FN_LIMIT, { functionId: "fn-c" });
    const known = flowItem("known", FN_LIMIT, { functionId: "fn-c" });
    await enqueueItems(s, keys, [cur, known]);
    const leased = await claimFrom([cur], null, 1);
    expect(leased.leased.map((l) => l.id)).toEqual(["cur-x"]);
    const x2 = flowItem("x2", FN_LIMIT, { functionId: "fn-c" });
    const stale = await completeItems(s, keys, 60_000, LEASE, [handOff(cur, 7, [x2])]);
    expect(stale.codes).toEqual([-1]);
    expect(stale.handedOff.size).toBe(0);
    const r = await completeItems(s, keys, 60_000, LEASE, [handOff(cur, 1, [known])]);
    expect(r.codes).toEqual([OK]);
    expect(r.handedOff.size).toBe(0);
    expect(await redis.zscore(keys.leased, "known")).toBeNull();
    await expectConsistentShard(redis, keys);
  });

  it("returns a handed-off item whose lease expires to the queue, like any lease", async () => {
    const a = flowItem("ha", FN_LIMIT);
    await enqueueItems(s, keys, [a]);
    await claimFrom([a], limit(1));
    const a2 = flowItem("ha:c1", FN_LIMIT);
    const r = await completeItems(s, keys, 60_000, LEASE, [handOff(a, 1, [a2])]);
    expect(r.handedOff.get(0)?.id).toBe("ha:c1");
    shard.now += LEASE + 1;
    const exp = await expiredLeases(s, keys, 10);
    expect(exp.leases.map((l) => l.itemId)).toEqual(["ha:c1"]);
    await reclaimLeases(s, keys, TOKEN, exp.leases);
    const again = await claimFrom([a2], limit(1));
    // Fenced like any reclaimed lease: a new generation.
    expect(again.leased.map((l) => l.id)).toEqual(["ha:c1"]);
    expect(again.leased[0]?.generation).toBeGreaterThan(1);
    await expectConsistentShard(redis, keys);
  });
});
