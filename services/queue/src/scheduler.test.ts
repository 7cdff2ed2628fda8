import { createLogger } from "@stepline/internal/log";
import { waitFor } from "@stepline/internal/testing";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { FunctionLimits } from "./limits.js";
import { LimitsCache, staticLimitsSource } from "./limits.js";
import { Queue } from "./queue.js";
import type { WorkSink } from "./scheduler.js";
import { Scheduler } from "./scheduler.js";
import { Scripts } from "./scripts.js";
import type { DueChange, ItemInput, LeasedItem } from "./store.js";
import { acquireOwner, ENQUEUED } from "./store.js";
import { newlyReadyPartition } from "./store-enqueue.js";
import { dropNamespace, testNamespace, testRedis } from "./testing/redis.js";

const log = createLogger("queue-test", "silent");
const TOKEN = "sched-test";

/** Stands in for the executor streams: holds credits and records what it was handed. */
class RecordingSink implements WorkSink {
  credits = 0;
  readonly got: Array<LeasedItem & { at: number }> = [];
  available() {
    return this.credits;
  }
  deliver(items: LeasedItem[]) {
    const n = Math.min(this.credits, items.length);
    this.credits -= n;
    for (const i of items.slice(0, n)) this.got.push({ ...i, at: Date.now() });
    return items.slice(n);
  }
}

function item(id: string, accountId: string, functionId = "fn", over: Partial<ItemInput> = {}): ItemInput {
  return {
    id,
    runId: `r-${id}`,
    accountId,
    environmentId: "env",
    functionId,
    kind: 1,
    delayMs: 0,
    runAtMs: 0,
    attempt: 0,
    payload: "{}",
    ...over,
  };
}

let redis: Redis;
const namespaces: string[] = [];
const running: Scheduler[] = [];

beforeAll(() => {
  redis = testRedis();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
  await Promise.all(namespaces.splice(0).map((ns) => dropNamespace(redis, ns)));
});
afterAll(async () => {
  await redis.quit();
});

/** A scheduler owning every shard of a fresh namespace. */
async function setup(
  opts: {
    shards?: number;
    leaseMs?: number;
    sweepMs?: number;
    claimBatch?: number;
    limits?: Record<string, FunctionLimits>;
  } = {},
) {
  const ns = testNamespace();
  namespaces.push(ns);
  const scripts = new Scripts(redis, { assertSlots: true });
  const leaseMs = opts.leaseMs ?? 30_000;
  const sink = new RecordingSink();
  let scheduler: Scheduler | undefined;
  const queue = new Queue(
    scripts,
    { namespace: ns, leaseMs, maxDeliveries: 20, seenTtlMs: 60_000, shards: opts.shards ?? 1 },
    (c) => {
      if (c.afterMs >= 0) scheduler?.noteDue(c.shard, c.afterMs, c.ready);
    },
  );
  scheduler = new Scheduler(
    queue,
    sink,
    { token: TOKEN, claimBatch: opts.claimBatch ?? 16, sweepMs: opts.sweepMs ?? 60_000, leaseMs },
    log,
    new LimitsCache(staticLimitsSource(opts.limits), 0),
  );
  for (let s = 0; s < queue.shards; s++) {
    await acquireOwner(scripts, queue.keys(s), TOKEN, 60_000);
    scheduler.adopt(s);
  }
  running.push(scheduler);
  return { queue, sink, scheduler, scripts };
}

/** Grants `n` credits and waits until they are used. */
async function grant(sink: RecordingSink, scheduler: Scheduler, n: number) {
  const want = sink.got.length + n;
  sink.credits += n;
  scheduler.wake();
  await waitFor(`${want} deliveries`, () => (sink.got.length >= want ? true : undefined));
}

describe("Scheduler", () => {
  it("does not let an account with 100,000 items starve one with a single item", async () => {
    const { queue, sink, scheduler } = await setup();
    const flood = Array.from({ length: 100_000 }, (_, i) => item(`big-${i}`, "big"));
    for (let i = 0; i < flood.length; i += 10_000) await queue.enqueue(flood.slice(i, i + 10_000));
    await queue.enqueue([item("small-0", "small")]);
    scheduler.start();
    await grant(sink, scheduler, 16);
    await grant(sink, scheduler, 16);
    const at = sink.got.findIndex((g) => g.accountId === "small");
    expect(at).toBeGreaterThanOrEqual(0);
    expect(at).toBeLessThan(32);
  });

  it("does not let a function with 10,000 items starve another function of the same account", async () => {
    const { queue, sink, scheduler } = await setup();
    await queue.enqueue(Array.from({ length: 10_000 }, (_, i) => item(`a-${i}`, "acct", "fn-flood")));
    await queue.enqueue([item("b-0", "acct", "fn-trickle")]);
    scheduler.start();
    await grant(sink, scheduler, 16);
    expect(sink.got.slice(0, 16).some((g) => g.functionId === "fn-trickle")).toBe(true);
  });

  it("does not let a function at its concurrency limit hold back another function of the account", async () => {
    const limited = { concurrency: [{ scope: "f" as const, keyed: false, limit: 2 }], throttle: null };
    const { queue, sink, scheduler } = await setup({ limits: { "fn-limited": limited } });
    const flow = {
      concurrency: [{ scope: 1, keyHash: "" }],
      throttled: false,
      throttleKeyHash: "",
      priorityS: 0,
    };
    await queue.enqueue(Array.from({ length: 50 }, (_, i) => item(`l-${i}`, "acct", "fn-limited", { flow })));
    await queue.enqueue(Array.from({ length: 10 }, (_, i) => item(`o-${i}`, "acct", "fn-other")));
    scheduler.start();
    await grant(sink, scheduler, 12);
    // Two of the limited function (its limit), and every item of the other.
    expect(sink.got.filter((g) => g.functionId === "fn-limited")).toHaveLength(2);
    expect(sink.got.filter((g) => g.functionId === "fn-other")).toHaveLength(10);
  });

  it("shares credits evenly between two busy accounts", async () => {
    const { queue, sink, scheduler } = await setup();
    await queue.enqueue(Array.from({ length: 300 }, (_, i) => item(`x-${i}`, "x")));
    await queue.enqueue(Array.from({ length: 300 }, (_, i) => item(`y-${i}`, "y")));
    scheduler.start();
    for (let i = 0; i < 20; i++) await grant(sink, scheduler, 10);
    const x = sink.got.filter((g) => g.accountId === "x").length;
    expect(Math.abs(x - (sink.got.length - x))).toBeLessThanOrEqual(32);
  });

  it("claims nothing without credits and never more than the credits granted", async () => {
    const { queue, sink, scheduler } = await setup();
    await queue.enqueue(Array.from({ length: 20 }, (_, i) => item(`i-${i}`, "a")));
    scheduler.start();
    await grant(sink, scheduler, 5);
    const keys = queue.keys(0);
    expect(await redis.zcard(keys.leased)).toBe(5);
    expect(sink.got).toHaveLength(5);
  });

  it("does not hand out a delayed item before it is due, and hands it out when due without a sweep", async () => {
    const { queue, sink, scheduler } = await setup({ sweepMs: 60_000 });
    scheduler.start();
    sink.credits = 1;
    await queue.enqueue([item("later", "a", "fn", { delayMs: 300 })]);
    const got = await waitFor("the delayed item", () => sink.got[0], { timeoutMs: 5_000 });
    expect(got.at).toBeGreaterThanOrEqual(got.dueMs - 5);
  });

  it("hands an item out again once its lease expired, with a higher generation", async () => {
    const { queue, sink, scheduler } = await setup({ leaseMs: 200, sweepMs: 60_000 });
    await queue.enqueue([item("i", "a")]);
    scheduler.start();
    await grant(sink, scheduler, 1);
    sink.credits = 1;
    const again = await waitFor("redelivery", () => sink.got[1], { timeoutMs: 5_000 });
    expect(again.id).toBe("i");
    expect(again.generation).toBe(3);
    expect(again.at - (sink.got[0]?.at ?? 0)).toBeGreaterThanOrEqual(150);
  });

  it("delivers what a round leased even when another claim of that round finds it deposed", async () => {
    const { queue, sink, scheduler } = await setup({ claimBatch: 1 });
    await queue.enqueue([item("a-0", "a"), item("b-0", "b")]);
    const claim = queue.claim.bind(queue);
    let claims = 0;
    queue.claim = async (...args: Parameters<Queue["claim"]>) => {
      // The second claim of the round runs after another replica took the shard over.
      if (++claims === 2) await redis.set(queue.keys(0).owner, "usurper");
      return claim(...args);
    };
    sink.credits = 2;
    scheduler.start();
    const got = await waitFor("the first claim's item", () => sink.got[0]);
    expect(claims).toBe(2);
    expect(await redis.zrange(queue.keys(0).leased, 0, "-1")).toEqual([got.id]);
    expect(scheduler.owned()).toEqual([]);
  });

  it("claims what an enqueue made due on an idle shard at once, without reading the shard first", async () => {
    const { queue, sink, scheduler } = await setup();
    const reads = countCalls(queue, ["accountHeads", "readyPartitions"]);
    const claims = countCalls(queue, ["claim"]);
    const sweeps = countCalls(queue, ["heads"]);
    sink.credits = 2;
    scheduler.start();
    // The first sweep reads every shard; the loop then sleeps, as nothing is due.
    await waitFor("the first sweep", () => (sweeps.count >= 1 ? true : undefined));
    await redis.ping();
    const before = { reads: reads.count, claims: claims.count };
    await queue.enqueue([item("fast-1", "a")]);
    await waitFor("the delivery", () => (sink.got.length === 1 ? true : undefined));
    expect(sink.got[0]?.id).toBe("fast-1");
    expect(reads.count).toBe(before.reads);
    expect(claims.count).toBe(before.claims + 1);
  });

  it("takes a full round when a second partition became due before the round ran", async () => {
    const { queue, sink, scheduler } = await setup();
    const reads = countCalls(queue, ["accountHeads", "readyPartitions"]);
    const sweeps = countCalls(queue, ["heads"]);
    scheduler.start();
    await waitFor("the first sweep", () => (sweeps.count >= 1 ? true : undefined));
    await redis.ping();
    const before = reads.count;
    // No credits yet: both enqueues are noted before any round runs.
    await queue.enqueue([item("p-1", "a", "fn-1")]);
    await queue.enqueue([item("p-2", "b", "fn-2")]);
    await grant(sink, scheduler, 2);
    expect(sink.got.map((g) => g.id).sort()).toEqual(["p-1", "p-2"]);
    expect(reads.count).toBeGreaterThan(before);
  });

  it("stays idle between sweeps when there is nothing to do (no polling of shards)", async () => {
    const { queue, sink, scheduler } = await setup({ shards: 256, sweepMs: 60_000 });
    let reads = 0;
    for (const m of ["accountHeads", "expired", "heads", "claim", "readyPartitions"] as const) {
      const orig = queue[m].bind(queue) as (...a: unknown[]) => unknown;
      (queue as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
        reads++;
        return orig(...a);
      };
    }
    sink.credits = 100;
    // The scheduler's timers are faked from its start, so its clock moves only when the test says.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
    try {
      scheduler.start();
      // Its first sweep and reclaim pass (a read per shard) run on Redis answers: wait until three
      // Redis round trips in a row (each after 1 ms of its clock) see no new read.
      let stable = 0;
      let seen = -1;
      for (let i = 0; i < 1_000 && stable < 3; i++) {
        await vi.advanceTimersByTimeAsync(1);
        await redis.ping();
        stable = reads === seen ? stable + 1 : 0;
        seen = reads;
      }
      expect(reads).toBeGreaterThanOrEqual(257);
      // Then 50 s of its clock pass: a polling loop would read on every tick; an idle scheduler
      // reads nothing before its next sweep (a minute).
      const before = reads;
      await vi.advanceTimersByTimeAsync(50_000);
      await redis.ping();
      expect(reads).toBe(before);
    } finally {
      vi.useRealTimers();
    }
  });
});

/** Counts calls of some of the queue's methods (the scheduler's Redis round trips). */
function countCalls(queue: Queue, methods: Array<"accountHeads" | "readyPartitions" | "claim" | "heads">) {
  const counter = { count: 0 };
  for (const m of methods) {
    const orig = queue[m].bind(queue) as (...a: unknown[]) => unknown;
    (queue as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
      counter.count++;
      return orig(...a);
    };
  }
  return counter;
}

describe("newlyReadyPartition (the enqueue fast path's partition)", () => {
  const due = (beforeMs: number, afterMs: number): DueChange => ({
    shard: 0,
    nowMs: 1_000,
    beforeMs,
    afterMs,
  });
  const a1 = item("a1", "a");
  const a2 = item("a2", "a");
  const b1 = item("b1", "b");
  const pidOf = (i: ItemInput) => newlyReadyPartition(due(-1, 1_000), [i], [ENQUEUED])?.pid;

  it("names the one partition made due on a shard with nothing due before", () => {
    expect(newlyReadyPartition(due(-1, 1_000), [a1, a2], [ENQUEUED, ENQUEUED])).toEqual({
      accountId: "a",
      pid: pidOf(a1),
    });
    // Something due only later counts as nothing due now.
    expect(newlyReadyPartition(due(5_000, 1_000), [a1], [ENQUEUED])?.accountId).toBe("a");
  });

  it("names none when something was due already, or two partitions became due", () => {
    expect(newlyReadyPartition(due(900, 900), [a1], [ENQUEUED])).toBeUndefined();
    expect(newlyReadyPartition(due(-1, 1_000), [a1, b1], [ENQUEUED, ENQUEUED])).toBeUndefined();
  });

  it("leaves out items that existed already or are due later", () => {
    const later = item("later", "b", "fn", { delayMs: 60_000 });
    expect(newlyReadyPartition(due(-1, 1_000), [b1, a1], [0, ENQUEUED])?.accountId).toBe("a");
    expect(newlyReadyPartition(due(-1, 1_000), [later, a1], [ENQUEUED, ENQUEUED])?.accountId).toBe("a");
    expect(newlyReadyPartition(due(-1, 61_000), [later], [ENQUEUED])).toBeUndefined();
  });
});
