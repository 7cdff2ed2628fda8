// The Work stream client against a small in-test QueueService peer over real gRPC, which grants
// leases against credits and answers ops; the queue's own logic is tested in services/queue.
// One stream here (so every slot is its credit); slot sharing across streams: work-pool.test.ts.
import { systemClock } from "@stepline/internal/clock";
import { createLogger } from "@stepline/internal/log";
import { waitFor } from "@stepline/internal/testing";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { OpStatus } from "@stepline/proto/stepline/queue/v1/queue_service";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { FakeQueue } from "./fake-queue.fixture.js";
import { item, serveFakeQueue } from "./fake-queue.fixture.js";
import { HandOffStates } from "./hand-off-states.js";
import type { RunState } from "./state.js";
import type { ItemContext, ItemHandler } from "./work-loop.js";
import { LEASE_LOST, SHUTDOWN } from "./work-loop.js";
import { OPS_PER_MESSAGE } from "./work-ops.js";
import { WorkPool } from "./work-pool.js";

const log = createLogger("executor-test", "silent");
const RELEASE_BACKOFF = { baseMs: 1_000, maxMs: 60_000 };
let fake: FakeQueue;
let served: Awaited<ReturnType<typeof serveFakeQueue>>;
let loop: WorkPool | undefined;

beforeEach(async () => {
  served = await serveFakeQueue();
  fake = served.fake;
});

afterEach(async () => {
  await loop?.stop(0, 500);
  loop = undefined;
  await served.close();
});

function start(
  handler: ItemHandler,
  concurrency = 4,
  opTimeoutMs = 5_000,
  handOff = true,
  states?: HandOffStates,
): WorkPool {
  const client = served.client;
  loop = new WorkPool(
    [() => client.work()],
    handler,
    // random 0: a release waits exactly half its backoff step (base·2^releases / 2).
    { concurrency, opTimeoutMs, handOff, releaseBackoff: RELEASE_BACKOFF, random: () => 0, states },
    log,
    systemClock,
  );
  loop.start();
  return loop;
}

describe("the Work stream", () => {
  it("grants credits for its free slots, runs leased items and completes them with their next item", async () => {
    const outcomes: string[] = [];
    start(async (it, ctx) => {
      outcomes.push(await ctx.complete(it.id.endsWith(":start") ? [item(`${it.runId}:c1`)] : []));
    }, 4);
    await waitFor("initial credits", () => fake.creditsGranted === 4);
    fake.offer(item("r1:start"), item("r2:start"));
    // Each start's next call is due now: handed off, so it runs with no credit granted for it.
    await waitFor("four completions", () => outcomes.length === 4);
    expect(outcomes).toEqual(["ok", "ok", "ok", "ok"]);
    const completed = fake.of("complete").flatMap((c) => c.items);
    expect(completed.map((c) => [c.lease?.itemId, c.handOff, c.next.map((n) => n.id)]).sort()).toEqual([
      ["r1:c1", false, []],
      ["r1:start", true, ["r1:c1"]],
      ["r2:c1", false, []],
      ["r2:start", true, ["r2:c1"]],
    ]);
    expect(fake.handOffs).toBe(2);
    // The hand-offs kept their slots; the two last completions give theirs back as credits.
    await waitFor("credits returned", () => fake.creditsGranted === 6);
    expect(loop?.inFlight()).toBe(0);
  });

  it("gives a hand-off's slot back when the queue hands nothing off (an older replica, say)", async () => {
    fake.handOver = false;
    const outcomes: string[] = [];
    start(async (it, ctx) => {
      outcomes.push(await ctx.complete([item(`${it.runId}:c1`)]));
    }, 2);
    await waitFor("initial credits", () => fake.creditsGranted === 2);
    fake.offer(item("r1:start"));
    await waitFor("the completion", () => outcomes.length === 1);
    expect(fake.of("complete").flatMap((c) => c.items.map((i) => i.handOff))).toEqual([true]);
    // Counted as a credit while unanswered; answered without an item, the slot is granted again.
    await waitFor("the slot back as a credit", () => fake.creditsGranted === 3);
  });

  it("asks for no hand-off when the run's next call is not due now, and grants the slot back instead", async () => {
    start(async (it, ctx) => {
      await ctx.complete(
        it.id.endsWith(":start") ? [{ ...item(`${it.runId}:s1`), runAtMs: Date.now() + 60_000 }] : [],
      );
    }, 2);
    await waitFor("initial credits", () => fake.creditsGranted === 2);
    fake.offer(item("r1:start"));
    await waitFor("the slot back as a credit", () => fake.creditsGranted === 3);
    expect(fake.of("complete").flatMap((c) => c.items.map((i) => i.handOff))).toEqual([false]);
    expect(fake.handOffs).toBe(0);
  });

  it("asks for no hand-off when hand-offs are off (STEPLINE_EXECUTOR_HAND_OFF=0)", async () => {
    start(async (it, ctx) => void (await ctx.complete([item(`${it.runId}:c1`)])), 2, 5_000, false);
    await waitFor("initial credits", () => fake.creditsGranted === 2);
    fake.offer(item("r1:start"));
    await waitFor("the slot back as a credit", () => fake.creditsGranted === 3);
    expect(fake.of("complete").flatMap((c) => c.items.map((i) => i.handOff))).toEqual([false]);
  });

  it("enqueues a new run's start on a stream holding credits, and runs it at once when the queue hands it off", async () => {
    const ran: Array<[string, boolean | undefined]> = [];
    const states = new HandOffStates(systemClock);
    const pool = start(
      async (it, ctx) => {
        ran.push([it.id, ctx.handedOff]);
        await ctx.complete([]);
      },
      2,
      5_000,
      true,
      states,
    );
    await waitFor("initial credits", () => fake.creditsGranted === 2);
    const elsewhere: string[] = [];
    const fallback = async (items: NewItem[]) => void elsewhere.push(...items.map((i) => i.id));
    // Only what HandOffStates weighs: the pool passes states through untouched.
    const state = (runId: string) => ({ runId, eventsJson: "[]", steps: new Map() }) as unknown as RunState;
    const starts = ["n1", "n2", "n3"].map((r) => ({ item: item(`${r}:start`), state: state(r) }));
    await pool.enqueueStarts(starts, fallback);
    // Two credits: two handed off and run at once; the third answered OK and queued for a round.
    expect(fake.of("start").flatMap((b) => b.items.map((i) => i.id))).toEqual([
      "n1:start",
      "n2:start",
      "n3:start",
    ]);
    await waitFor("the hand-offs ran", () => ran.length === 2);
    expect(ran).toEqual([
      ["n1:start", true],
      ["n2:start", true],
    ]);
    expect(elsewhere).toEqual([]);
    expect(fake.waiting.map((w) => w.item?.id)).toEqual(["n3:start"]);
    // Each state waits for its start's hand-off; the third's is dropped, as it will come unmarked.
    expect(states.size()).toBe(2);
    expect(states.take("n3:start")).toBeUndefined();
    expect(states.take("n1:start")).toBe(starts[0]?.state);
    // Their slots come back as credits, which bring the third.
    await waitFor("the third ran", () => ran.length === 3);
    expect(ran[2]).toEqual(["n3:start", false]);
  });

  it("splits a flush of more starts than one message may carry into several messages", async () => {
    const ran: string[] = [];
    const pool = start(async (it, ctx) => {
      ran.push(it.id);
      await ctx.complete([]);
    }, 1);
    await waitFor("initial credits", () => fake.creditsGranted === 1);
    const elsewhere: string[] = [];
    const n = 2 * OPS_PER_MESSAGE + 7;
    const starts = Array.from({ length: n }, (_, i) => ({ item: item(`big${i}:start`) }));
    await pool.enqueueStarts(starts, async (items) => void elsewhere.push(...items.map((i) => i.id)));
    expect(fake.of("start").map((b) => b.items.length)).toEqual([OPS_PER_MESSAGE, OPS_PER_MESSAGE, 7]);
    expect(fake.of("start").flatMap((b) => b.items.map((i) => i.id))).toEqual(starts.map((s) => s.item.id));
    // Every start answered on the stream: one handed off with the credit, the rest queued.
    expect(elsewhere).toEqual([]);
    await waitFor("the hand-off ran", () => ran.length >= 1);
    expect(ran[0]).toBe("big0:start");
  });

  it("enqueues starts elsewhere with hand-offs off, with no credit, or when the stream breaks first", async () => {
    const elsewhere: string[] = [];
    const fallback = async (items: NewItem[]) => void elsewhere.push(...items.map((i) => i.id));
    let gate: (() => void) | undefined;
    const pool = start(
      async (_it, ctx) => {
        await new Promise<void>((r) => {
          gate = r;
        });
        await ctx.complete([]);
      },
      1,
      5_000,
      false,
    );
    await waitFor("initial credits", () => fake.creditsGranted === 1);
    await pool.enqueueStarts([{ item: item("off:start") }], fallback);
    expect(elsewhere).toEqual(["off:start"]);
    expect(fake.of("start")).toEqual([]);
    await pool.stop(0, 100);

    const pool2 = start(async (_it, ctx) => {
      await new Promise<void>((r) => {
        gate = r;
      });
      await ctx.complete([]);
    }, 1);
    await waitFor("a credit", () => fake.creditsGranted === 2);
    fake.offer(item("busy:start"));
    await waitFor("the slot taken", () => gate !== undefined && pool2.credits() === 0);
    await pool2.enqueueStarts([{ item: item("full:start") }], fallback);
    expect(elsewhere).toEqual(["off:start", "full:start"]);
    gate?.();

    await waitFor("the credit back", () => pool2.credits() === 1);
    fake.answerOps = false;
    const pending = pool2.enqueueStarts([{ item: item("lost:start") }], fallback);
    await waitFor("the start sent", () => fake.of("start").length === 1);
    fake.breakStream();
    await pending;
    expect(elsewhere).toEqual(["off:start", "full:start", "lost:start"]);
  });

  it("never holds more items than its concurrency", async () => {
    let running = 0;
    let peak = 0;
    const gates: Array<() => void> = [];
    start(async (_it, ctx) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise<void>((r) => gates.push(r));
      running--;
      await ctx.complete([]);
    }, 2);
    fake.offer(...["a", "b", "c", "d", "e"].map((id) => item(id)));
    await waitFor("two running", () => running === 2);
    expect(fake.creditsGranted).toBe(2);
    while (fake.of("complete").length < 5) {
      gates.shift()?.();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(peak).toBe(2);
  });

  it("extends a held lease every third of its length and aborts the work when the lease is lost", async () => {
    fake.leaseMs = 150;
    let signal: AbortSignal | undefined;
    start(async (_it, ctx) => {
      signal = ctx.signal;
      await new Promise((r) => ctx.signal.addEventListener("abort", r));
    });
    fake.offer(item("slow:start"));
    await waitFor("two extensions", () => fake.of("extend").length >= 2);
    expect(signal?.aborted).toBe(false);
    fake.extendStatus = OpStatus.OP_STATUS_STALE;
    await waitFor("abort on stale extension", () => signal?.aborted === true);
    expect(signal?.reason).toBe(LEASE_LOST);
    expect(fake.of("complete")).toEqual([]);
  });

  it("reconnects after the stream breaks, grants credits again and resends an unanswered completion", async () => {
    fake.answerOps = false;
    let outcome: string | undefined;
    start(async (_it, ctx) => {
      outcome = await ctx.complete([]);
    }, 3);
    fake.offer(item("r:start"));
    await waitFor("first completion", () => fake.of("complete").length === 1);
    fake.answerOps = true;
    fake.breakStream();
    await waitFor("reconnect", () => fake.connections === 2, { timeoutMs: 10_000 });
    await waitFor("completion answered after reconnect", () => outcome !== undefined);
    expect(outcome).toBe("ok");
    expect(fake.of("complete").length).toBe(2);
    const afterReconnect = fake.of("credits").at(-1)?.count;
    expect(afterReconnect).toBeGreaterThan(0);
  });

  it("counts a completion the queue never answers as stale once its deadline passes", async () => {
    fake.answerOps = false;
    let outcome: string | undefined;
    start(
      async (_it, ctx) => {
        outcome = await ctx.complete([]);
      },
      1,
      300,
    );
    fake.offer(item("r:start"));
    await waitFor("stale outcome", () => outcome !== undefined, { timeoutMs: 5_000 });
    expect(outcome).toBe("stale");
  });

  it("releases an item whose handler throws at once, keeping its attempt, instead of waiting out its lease", async () => {
    start(async () => {
      throw new Error("a bug in the handler");
    }, 2);
    const before = Date.now();
    fake.offer(item("boom", 3));
    await waitFor("the release", () => (fake.of("retry").length > 0 ? true : undefined));
    const [release] = fake.of("retry").flatMap((r) => r.items);
    expect(release?.lease?.itemId).toBe("boom");
    expect(release?.attempt).toBe(3);
    // Half of the first backoff step (random 0), from about now: not the lease's 30 s.
    expect(release?.runAtMs).toBeGreaterThanOrEqual(before + 500);
    expect(release?.runAtMs).toBeLessThan(Date.now() + 600);
  });

  it("backs a release off further with each release in a row, up to the cap", async () => {
    start(async (_it, ctx) => {
      await ctx.release();
    }, 4);
    const t0 = Date.now();
    fake.offerReleased(0, item("r0"));
    fake.offerReleased(3, item("r3"));
    fake.offerReleased(20, item("r20"));
    const releases = () => fake.of("retry").flatMap((b) => b.items);
    await waitFor("three releases", () => (releases().length >= 3 ? true : undefined));
    const byId = new Map(releases().map((r) => [r.lease?.itemId, r]));
    const delay = (id: string) => (byId.get(id)?.runAtMs ?? 0) - t0;
    expect(delay("r0")).toBeGreaterThanOrEqual(500);
    expect(delay("r0")).toBeLessThan(1_500);
    expect(delay("r3")).toBeGreaterThanOrEqual(4_000);
    expect(delay("r3")).toBeLessThan(5_000);
    // base·2^20 is past the cap: half the cap.
    expect(delay("r20")).toBeGreaterThanOrEqual(30_000);
    expect(delay("r20")).toBeLessThan(31_000);
    expect(byId.get("r3")?.attempt).toBe(0);
  });

  it("on stop asks for no more work, lets quick items finish and releases slow ones with their attempt", async () => {
    const ctxs: ItemContext[] = [];
    const w = start(async (it, ctx) => {
      ctxs.push(ctx);
      if (it.id === "quick") {
        await new Promise((r) => setTimeout(r, 50));
        await ctx.complete([]);
        return;
      }
      await new Promise((r) => ctx.signal.addEventListener("abort", r));
      if (ctx.signal.reason === SHUTDOWN) await ctx.retry(0, it.attempt);
    }, 4);
    fake.offer(item("quick"), item("slow", 2));
    await waitFor("both running", () => ctxs.length === 2);
    const granted = fake.creditsGranted;
    await w.stop(200, 2_000);
    loop = undefined;
    expect(fake.of("complete").flatMap((c) => c.items.map((i) => i.lease?.itemId))).toEqual(["quick"]);
    expect(fake.of("retry").flatMap((r) => r.items)).toEqual([
      {
        lease: { itemId: "slow", accountId: "acct", generation: 1, partitionId: "fn:env:fn" },
        runAtMs: 0,
        attempt: 2,
      },
    ]);
    expect(fake.creditsGranted).toBe(granted);
  });
});
