// Slot sharing between the Work streams of one executor (one stream per queue replica): the credit
// policy on its own, then against two in-test queue replicas over real gRPC.
import { systemClock } from "@stepline/internal/clock";
import { createLogger } from "@stepline/internal/log";
import { waitFor } from "@stepline/internal/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { item, serveFakeQueue } from "./fake-queue.fixture.js";
import type { ItemHandler } from "./work-loop.js";
import type { StreamCredits } from "./work-pool.js";
import { shareCredits, standingCredit, WorkPool } from "./work-pool.js";

describe("the credit policy", () => {
  it("keeps a single stream's credit at every free slot, and several streams' at a quarter split between them", () => {
    expect(standingCredit(64, 1)).toBe(64);
    expect(standingCredit(64, 2)).toBe(8);
    expect(standingCredit(64, 4)).toBe(4);
    expect(standingCredit(3, 2)).toBe(1);
  });

  it("never grants more than the free slots, counting the credits every open stream still holds", () => {
    // A seeded walk over many states, so a failure reproduces.
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 5_000; round++) {
      const concurrency = 1 + rand(40);
      const n = 1 + rand(Math.min(4, concurrency));
      const standing = standingCredit(concurrency, n);
      const held = rand(concurrency + 1);
      let room = concurrency - held;
      const streams: StreamCredits[] = Array.from({ length: n }, () => {
        const credits = rand(Math.max(0, Math.min(room, standing)) + 1);
        room -= credits;
        return { connected: rand(4) > 0, credits };
      });
      const grants = shareCredits(concurrency, standing, held, streams, rand(n));
      const open = streams.reduce((sum, s) => sum + (s.connected ? s.credits : 0), 0);
      const granted = grants.reduce((a, b) => a + b, 0);
      expect(held + open + granted).toBeLessThanOrEqual(concurrency);
      grants.forEach((g, i) => {
        const s = streams[i] as StreamCredits;
        expect(g).toBeGreaterThanOrEqual(0);
        if (!s.connected) expect(g).toBe(0);
        // No stream is ever granted past its standing credit.
        expect(s.credits + g).toBeLessThanOrEqual(Math.max(standing, s.credits));
      });
      // And no free slot is kept back from a stream below its standing credit.
      const free = concurrency - held - open - granted;
      if (free > 0) {
        streams.forEach((s, i) => {
          if (s.connected) expect(s.credits + (grants[i] ?? 0)).toBeGreaterThanOrEqual(standing);
        });
      }
    }
  });

  it("tops streams up to their standing credit, starting from a rotating stream when slots are scarce", () => {
    const streams = [
      { connected: true, credits: 0 },
      { connected: true, credits: 0 },
      { connected: false, credits: 0 },
    ];
    expect(shareCredits(64, 8, 0, streams)).toEqual([8, 8, 0]);
    expect(shareCredits(64, 8, 60, streams, 0)).toEqual([4, 0, 0]);
    expect(shareCredits(64, 8, 60, streams, 1)).toEqual([0, 4, 0]);
    // A stream that used its credit is topped up; one that did not gets nothing more.
    expect(
      shareCredits(64, 8, 20, [
        { connected: true, credits: 8 },
        { connected: true, credits: 3 },
      ]),
    ).toEqual([0, 5]);
  });
});

describe("two queue replicas sharing one executor's slots", () => {
  const log = createLogger("executor-test", "silent");
  let replicas: Array<Awaited<ReturnType<typeof serveFakeQueue>>>;
  let pool: WorkPool | undefined;
  let running = 0;
  let peak = 0;
  let gates: Array<() => void> = [];

  /** Holds every item until `openGates`; completes it then. */
  const gated: ItemHandler = async (_it, ctx) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise<void>((r) => gates.push(r));
    running--;
    await ctx.complete([]);
  };
  const openGates = () => {
    for (const g of gates.splice(0)) g();
  };

  beforeEach(async () => {
    replicas = [await serveFakeQueue(), await serveFakeQueue()];
    running = 0;
    peak = 0;
    gates = [];
  });

  afterEach(async () => {
    openGates();
    await pool?.stop(0, 500);
    pool = undefined;
    await Promise.all(replicas.map((r) => r.close()));
  });

  function start(handler: ItemHandler, concurrency: number): WorkPool {
    pool = new WorkPool(
      replicas.map((r) => () => r.client.work()),
      handler,
      { concurrency, opTimeoutMs: 5_000, handOff: true, releaseBackoff: { baseMs: 1_000, maxMs: 60_000 } },
      log,
      systemClock,
    );
    pool.start();
    return pool;
  }

  it("gives a busy replica every slot an idle replica is not using, and the idle one its standing credit", async () => {
    const [busy, idle] = replicas.map((r) => r.fake);
    if (!busy || !idle) throw new Error("two replicas expected");
    start(gated, 8);
    await waitFor("standing credits", () => busy.creditsGranted === 1 && idle.creditsGranted === 1);
    busy.offer(...Array.from({ length: 20 }, (_, i) => item(`busy${i}:start`)));
    // 8 slots, 1 standing at the idle replica: the busy one runs the other 7.
    await waitFor("the busy replica to fill the slots the idle one does not use", () => running === 7);
    expect(idle.creditsGranted).toBe(1);
    // The idle replica's standing credit is not lost: work arriving there starts at once.
    idle.offer(item("idle0:start"));
    await waitFor("the idle replica's item to start", () => running === 8);
    expect(busy.creditsGranted + idle.creditsGranted).toBe(8);
    // As items finish, the slots go back to whichever replica delivers.
    while (busy.of("complete").flatMap((c) => c.items).length < 20) {
      openGates();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(peak).toBe(8);
  });

  it("never lets held items and credits across both streams exceed the concurrency", async () => {
    const concurrency = 6;
    let violations = 0;
    const check = () => {
      const atQueues = replicas.reduce((sum, r) => sum + r.fake.credits, 0);
      if (running + atQueues > concurrency) violations++;
      if (pool && pool.inFlight() + pool.credits() > concurrency) violations++;
    };
    const done: string[] = [];
    start(async (it, ctx) => {
      running++;
      check();
      // Items take different times, so slots free up in a mixed order across the replicas.
      await new Promise((r) => setTimeout(r, (Number(it.id.replace(/\D/g, "")) % 4) * 3));
      running--;
      await ctx.complete([]);
      done.push(it.id);
      check();
    }, concurrency);
    const sampler = setInterval(check, 1);
    try {
      replicas[0]?.fake.offer(...Array.from({ length: 60 }, (_, i) => item(`a${i}:start`)));
      replicas[1]?.fake.offer(...Array.from({ length: 25 }, (_, i) => item(`b${i}:start`)));
      await waitFor("every item of both replicas", () => done.length === 85, { timeoutMs: 20_000 });
    } finally {
      clearInterval(sampler);
    }
    expect(violations).toBe(0);
    expect(pool?.inFlight()).toBe(0);
  });

  it("hands a broken stream's credits to the stream still open", async () => {
    const [busy, broken] = replicas.map((r) => r.fake);
    if (!busy || !broken) throw new Error("two replicas expected");
    start(gated, 8);
    await waitFor("standing credit", () => broken.creditsGranted === 1);
    busy.offer(...Array.from({ length: 20 }, (_, i) => item(`busy${i}:start`)));
    await waitFor("seven running", () => running === 7);
    broken.breakStream();
    await waitFor("the freed slot to reach the busy replica", () => running === 8);
  });
});
