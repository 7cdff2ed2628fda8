// enqueue.lua's start hand-off against a real Redis with a clock the test moves: a new run's start
// item leased at once to the holder that enqueued it, and every case where it is enqueued instead.
import { describe, expect, it } from "vitest";
import type { ItemInput } from "./store.js";
import { completeItems, ENQUEUED, EXISTS, expiredLeases, HANDED_OFF, OK, reclaimLeases } from "./store.js";
import { enqueueItems, mayHandOff } from "./store-enqueue.js";
import { pauseFunction } from "./store-pauses.js";
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

const t = useScriptShard(23);

/** A start item of acct-1's fn-a (kind START), due now. */
const start = (id: string, over: Partial<ItemInput> = {}) =>
  item(id, { kind: 1, runStartedAtMs: T0, ...over });
/** Enqueues `items`, asking to hand off the ones at `indexes`. */
const enqueue = (items: ItemInput[], indexes: number[]) =>
  enqueueItems(t.s, t.keys, items, { indexes, leaseMs: LEASE });

describe("enqueue.lua's start hand-off", () => {
  it("leases a start at once on a shard with nothing due, outside the ready sets", async () => {
    const r = await enqueue([start("s1")], [0]);
    expect(r.codes).toEqual([HANDED_OFF]);
    expect(r.handedOff.get(0)).toMatchObject({
      id: "s1",
      runId: "run-s1",
      kind: 1,
      generation: 1,
      leaseExpiresAtMs: t.now + LEASE,
      partitionId: FN_A.pid,
      releases: 0,
    });
    expect(await t.redis.zscore(t.keys.leased, "s1")).toBe(String(t.now + LEASE));
    expect(await t.redis.zcard(t.keys.partition("acct-1", FN_A.pid))).toBe(0);
    // Nothing became due: the scheduler has nothing to do for it.
    expect(r.due).toMatchObject({ beforeMs: -1, afterMs: -1 });
    expect((await claimWith(t.s, t.keys)).leased).toEqual([]);
    await expectConsistentShard(t.redis, t.keys);
    // It is a lease like any other: completed by its generation.
    const done = await completeItems(t.s, t.keys, 60_000, LEASE, [
      { itemId: "s1", generation: 1, ...FN_A, next: [] },
    ]);
    expect(done.codes).toEqual([OK]);
    await expectConsistentShard(t.redis, t.keys);
  });

  it("enqueues instead when the shard has work due, the item is not due now, paused or known", async () => {
    // Work due in the shard goes first: a start asked after it in the same call waits its turn.
    const r = await enqueue([item("older"), start("s2")], [1]);
    expect(r.codes).toEqual([ENQUEUED, ENQUEUED]);
    expect((await claimWith(t.s, t.keys)).leased.map((l) => l.id)).toEqual(["older", "s2"]);

    // The shard is idle again (both are leased); each case below leaves it idle.
    const cases: Array<{ why: string; item: ItemInput; code: number; before?: () => Promise<unknown> }> = [
      { why: "delayed", item: start("s3", { delayMs: 5_000 }), code: ENQUEUED },
      { why: "run at a time", item: start("s4", { runAtMs: T0 + 60_000 }), code: ENQUEUED },
      { why: "known (leased)", item: start("s2"), code: EXISTS },
    ];
    for (const c of cases) {
      const got = await enqueue([c.item], [0]);
      expect(got.codes, c.why).toEqual([c.code]);
      expect(got.handedOff.size, c.why).toBe(0);
    }
    await expectConsistentShard(t.redis, t.keys);

    await pauseFunction(t.s, t.keys, { accountId: "acct-1", environmentId: "env", functionId: "fn-b" });
    const paused = await enqueue([start("s5", { functionId: "fn-b" })], [0]);
    expect(paused.codes).toEqual([ENQUEUED]);
    expect(await t.redis.zscore(t.keys.leased, "s5")).toBeNull();
    await expectConsistentShard(t.redis, t.keys);
  });

  it("puts a handed-off start whose lease expires back in line, like any lease", async () => {
    await enqueue([start("s6")], [0]);
    t.now += LEASE + 1;
    const exp = await expiredLeases(t.s, t.keys, 10);
    expect(exp.leases).toEqual([{ itemId: "s6", ...FN_A }]);
    await reclaimLeases(t.s, t.keys, TOKEN, exp.leases);
    const again = await claimWith(t.s, t.keys);
    // Fenced like any reclaimed lease: reclaim and claim each moved its generation on.
    expect(again.leased.map((l) => [l.id, l.generation])).toEqual([["s6", 3]]);
    await expectConsistentShard(t.redis, t.keys);
  });

  it("is asked only for items due now in a partition without flow control", () => {
    const limit = {
      concurrency: [{ scope: 1, keyHash: "" }],
      throttled: false,
      throttleKeyHash: "",
      priorityS: 0,
    };
    const throttle = { concurrency: [], throttled: true, throttleKeyHash: "ab", priorityS: 0 };
    expect(mayHandOff(start("a"))).toBe(true);
    expect(mayHandOff(start("b", { flow: { ...throttle, throttled: false, priorityS: 30 } }))).toBe(true);
    expect(mayHandOff(start("c", { flow: limit }))).toBe(false);
    expect(mayHandOff(start("d", { flow: throttle }))).toBe(false);
    expect(mayHandOff(start("e", { delayMs: 1 }))).toBe(false);
    expect(mayHandOff(start("f", { runAtMs: T0 }))).toBe(false);
    // A throttle applies to start items only: a step of a throttled function has none.
    expect(mayHandOff(item("g", { flow: throttle }))).toBe(true);
  });
});
