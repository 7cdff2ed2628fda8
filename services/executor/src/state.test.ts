import { ConflictError, NotFoundError } from "@stepline/internal/errors";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import calculateSlot from "cluster-key-slot";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NewRun } from "./state.js";
import { createdRunState, RunLimitError, RunStore, runKeys } from "./state.js";

const url = requiredEnv("STEPLINE_TEST_REDIS_URL");

const prefix = `test-${uniqueTag()}:s:`;
const TTL = 60_000;
let redis: Redis;
let store: RunStore;
let n = 0;

function newRun(over: Partial<NewRun> = {}): NewRun {
  n++;
  return {
    runId: `run-${n}`,
    accountId: "acct",
    environmentId: "env",
    appId: "app",
    functionId: "app-fn",
    functionVersion: "3",
    url: "http://127.0.0.1:1/api/inngest?fnId=app-fn&stepId=step",
    maxAttempts: 4,
    eventsJson: '[{"data":{},"id":"e1","name":"x"}]',
    createdAtMs: 1_000 + n,
    cancelOn: [],
    startTimeoutMs: 0,
    finishTimeoutMs: 0,
    traceParent: "",
    ...over,
  };
}

beforeAll(() => {
  redis = new Redis(url);
  store = new RunStore(redis, TTL, prefix);
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("run state in Redis", () => {
  it("keeps every key of a run in one cluster slot", () => {
    const k = runKeys("s:", "01HZY0000000000000000000AB");
    expect(k.meta).toBe("s:{01HZY0000000000000000000AB}:m");
    expect(new Set([calculateSlot(k.meta), calculateSlot(k.steps), calculateSlot(k.stack)]).size).toBe(1);
  });

  it("creates a run once; a second create leaves it as it is and reports it", async () => {
    const run = newRun();
    expect(await store.create(run)).toEqual({
      created: true,
      status: "running",
      calls: 0,
      version: 1,
      createdAtMs: run.createdAtMs,
    });
    await store.advance(run.runId, { saves: [] });
    const again = await store.create({ ...run, url: "http://elsewhere/", createdAtMs: 9 });
    expect(again).toEqual({
      created: false,
      status: "running",
      calls: 1,
      version: 1,
      createdAtMs: run.createdAtMs,
    });
    const loaded = await store.load(run.runId);
    expect(loaded?.url).toBe(run.url);
    expect(loaded?.createdAtMs).toBe(run.createdAtMs);
  });

  it("loads what was created, with an empty memo, and null for an unknown run", async () => {
    const traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const run = newRun({ firstEventLength: 33, traceParent });
    await store.create(run);
    const s = await store.load(run.runId);
    expect(s).toMatchObject({ ...run, status: "running", version: 1, calls: 0, reqVersion: -1, stack: [] });
    expect(s?.steps.size).toBe(0);
    expect(await store.load("no-such-run")).toBeNull();
    // What older runs lack reads as absent.
    const bare = newRun();
    await store.create(bare);
    expect(await store.load(bare.runId)).toMatchObject({ firstEventLength: undefined, traceParent: "" });
  });

  it("knows a run it just created as load reads it back, flow control, singleton and limits included", async () => {
    const run = newRun({
      firstEventLength: 33,
      cancelOn: [{ event: "x/cancel", expression: "event.data.id == async.data.id", timeoutMs: 5_000 }],
      startTimeoutMs: 1_000,
      finishTimeoutMs: 60_000,
      flow: {
        concurrency: [{ scope: 1, keyHash: "ab" }],
        throttled: true,
        throttleKeyHash: "cd",
        priorityS: -30,
      },
      singletonKey: "ef",
      traceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    });
    const created = await store.create(run);
    expect(created.created).toBe(true);
    expect(createdRunState(run, created)).toEqual(await store.load(run.runId));
    const plain = newRun();
    expect(createdRunState(plain, await store.create(plain))).toEqual(await store.load(plain.runId));
  });

  it("keeps the first result saved for a step and pushes each step on the stack once, in order", async () => {
    const run = newRun();
    await store.create(run);
    const first = await store.advance(run.runId, {
      saves: [{ stepId: "a", memoJson: '{"data":1}' }],
      reqVersion: 2,
    });
    expect(first).toEqual({ callNumber: 1, stackLength: 1, resolution: "none", saved: [true], planned: [] });
    const second = await store.advance(run.runId, {
      saves: [
        { stepId: "a", memoJson: '{"data":"changed"}' },
        { stepId: "b", memoJson: '{"error":{"message":"x"}}' },
      ],
    });
    expect(second).toEqual({
      callNumber: 2,
      stackLength: 2,
      resolution: "none",
      saved: [false, true],
      planned: [],
    });
    const s = await store.load(run.runId);
    expect(Object.fromEntries(s?.steps ?? [])).toEqual({ a: '{"data":1}', b: '{"error":{"message":"x"}}' });
    expect(s?.stack).toEqual(["a", "b"]);
    expect(s?.calls).toBe(2);
    expect(s?.reqVersion).toBe(2);
  });

  it("numbers calls uniquely even when several writers race on one run", async () => {
    const run = newRun();
    await store.create(run);
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        store.advance(run.runId, { saves: [{ stepId: "s", memoJson: '{"data":0}' }] }),
      ),
    );
    expect(new Set(results.map((r) => r.callNumber)).size).toBe(20);
    expect(results.filter((r) => r.saved[0]).length).toBe(1);
    expect((await store.load(run.runId))?.stack).toEqual(["s"]);
  });

  it("ends a run once, keeps the first outcome, and only then starts its expiry", async () => {
    const run = newRun();
    await store.create(run);
    await store.advance(run.runId, {
      saves: [{ stepId: "a", memoJson: '{"data":1}' }],
      plans: [{ opId: "p", race: false }],
      resolve: { opId: "q", resolver: "item" },
    });
    const k = runKeys(prefix, run.runId);
    expect(await redis.pttl(k.meta)).toBe(-1);
    expect(await redis.pttl(k.steps)).toBe(-1);

    const fin = await store.finish(run.runId, "completed", { output: '{"ok":true}' }, 5_000);
    expect(fin).toEqual({
      endedNow: true,
      status: "completed",
      version: 2,
      endedAtMs: 5_000,
      output: '{"ok":true}',
      error: "",
    });
    const late = await store.finish(run.runId, "failed", { error: '{"message":"late"}' }, 6_000);
    expect(late).toEqual({ ...fin, endedNow: false });
    for (const key of [k.meta, k.steps, k.stack, k.pending, k.resolved]) {
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(TTL);
    }
    const s = await store.load(run.runId);
    expect(s).toMatchObject({ status: "completed", version: 2, endedAtMs: 5_000, output: '{"ok":true}' });
  });

  it("refuses to save steps of an ended run, and of an unknown one", async () => {
    const run = newRun();
    await store.create(run);
    await store.finish(run.runId, "failed", { error: "{}" }, 1);
    await expect(
      store.advance(run.runId, { saves: [{ stepId: "a", memoJson: '{"data":1}' }] }),
    ).rejects.toBeInstanceOf(ConflictError);
    expect((await store.load(run.runId))?.steps.size).toBe(0);
    await expect(store.advance("nope", { saves: [] })).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.finish("nope", "failed", {}, 1)).rejects.toBeInstanceOf(NotFoundError);
  });

  it("tracks planned ops, and plans nothing that is saved already", async () => {
    const run = newRun();
    await store.create(run);
    await store.advance(run.runId, { saves: [{ stepId: "done", memoJson: '{"data":1}' }] });
    const plans = [
      { opId: "p1", race: false },
      { opId: "done", race: false },
      { opId: "p2", race: true },
      { opId: "w", race: false, waitEvent: "a|b" },
    ];
    const adv = await store.advance(run.runId, {
      saves: [],
      disableImmediate: true,
      planner: "item-1",
      plans,
    });
    expect(adv.planned).toEqual(["start", "none", "start", "start"]);
    expect(await redis.hgetall(runKeys(prefix, run.runId).pending)).toEqual({
      p1: "item-1|",
      p2: "item-1|race",
      w: "item-1|w:a|b",
    });
    const s = await store.load(run.runId);
    expect(s?.disableImmediate).toBe(true);
    expect(Object.fromEntries(s?.pending ?? [])).toEqual({ p1: "", p2: "race", w: "w:a|b" });
    // The planner's redelivery starts them again (a crash may have cut that short); another call
    // that reports the same ops (SDK request version 1 does) only schedules them.
    const again = await store.advance(run.runId, { saves: [], planner: "item-1", plans });
    expect(again.planned).toEqual(["start", "none", "start", "start"]);
    const other = await store.advance(run.runId, { saves: [], planner: "item-2", plans });
    expect(other.planned).toEqual(["schedule", "none", "schedule", "schedule"]);
  });

  it("with request version 2, discovers once every pending op resolved, and turns immediate execution back on", async () => {
    const run = newRun();
    await store.create(run);
    const plans = [
      { opId: "p1", race: false },
      { opId: "p2", race: false },
    ];
    await store.advance(run.runId, { saves: [], reqVersion: 2, disableImmediate: true, plans });
    const one = await store.advance(run.runId, {
      saves: [{ stepId: "p1", memoJson: '{"data":1}' }],
      resolve: { opId: "p1", resolver: "item-p1" },
    });
    expect(one.resolution).toBe("quiet");
    const two = await store.advance(run.runId, {
      saves: [{ stepId: "p2", memoJson: '{"data":2}' }],
      resolve: { opId: "p2", resolver: "item-p2" },
    });
    expect(two.resolution).toBe("discover");
    expect((await store.load(run.runId))?.disableImmediate).toBe(false);
    // A redelivered resolver gets its first answer again, whatever happened since.
    const again = await store.advance(run.runId, { saves: [], resolve: { opId: "p1", resolver: "item-p1" } });
    expect(again.resolution).toBe("quiet");
  });

  it("with request version 1 or a race, discovers after every resolution", async () => {
    const run = newRun();
    await store.create(run);
    await store.advance(run.runId, {
      saves: [],
      reqVersion: 1,
      disableImmediate: true,
      plans: [
        { opId: "p1", race: false },
        { opId: "p2", race: false },
      ],
    });
    const one = await store.advance(run.runId, { saves: [], resolve: { opId: "p1", resolver: "i1" } });
    expect(one.resolution).toBe("discover");
    expect((await store.load(run.runId))?.disableImmediate).toBe(true);

    const race = newRun();
    await store.create(race);
    await store.advance(race.runId, {
      saves: [],
      reqVersion: 2,
      plans: [
        { opId: "r1", race: true },
        { opId: "r2", race: true },
      ],
    });
    const first = await store.advance(race.runId, { saves: [], resolve: { opId: "r1", resolver: "i1" } });
    expect(first.resolution).toBe("discover");
  });

  it("lets exactly one of two racing resolvers resolve an op, with its memo", async () => {
    for (let i = 0; i < 20; i++) {
      const run = newRun();
      await store.create(run);
      await store.advance(run.runId, { saves: [], reqVersion: 2, plans: [{ opId: "w", race: false }] });
      const [a, b] = await Promise.all([
        store.advance(run.runId, {
          saves: [],
          resolve: { opId: "w", resolver: "e:1", memoJson: '{"data":"ev"}' },
        }),
        store.advance(run.runId, {
          saves: [],
          resolve: { opId: "w", resolver: "timeout", memoJson: '{"data":null}' },
        }),
      ]);
      const outcomes = [a?.resolution, b?.resolution].sort();
      expect(outcomes).toEqual(["discover", "lost"]);
      const s = await store.load(run.runId);
      expect(s?.steps.get("w")).toBe(a?.resolution === "discover" ? '{"data":"ev"}' : '{"data":null}');
      expect(s?.stack).toEqual(["w"]);
    }
  });

  it("remembers the request version without creating state for an unknown run", async () => {
    const run = newRun();
    await store.create(run);
    await store.setRequestVersion(run.runId, 1);
    expect((await store.load(run.runId))?.reqVersion).toBe(1);
    await store.setRequestVersion("ghost", 2);
    expect(await redis.exists(runKeys(prefix, "ghost").meta)).toBe(0);
  });
});

describe("run limits", () => {
  const limited = () =>
    new RunStore(redis, TTL, prefix, { maxSteps: 3, maxStateBytes: 100, maxStepBytes: 40, maxCalls: 5 });
  const save = (stepId: string, bytes: number) => ({
    stepId,
    memoJson: `{"data":"${"x".repeat(bytes - 11)}"}`,
  });

  it("refuses a call that would pass a limit, naming it, and writes nothing of it", async () => {
    const s = limited();
    const run = newRun();
    await s.create(run);
    await s.advance(run.runId, { saves: [save("a", 20), save("b", 20)] });
    // A fourth step.
    await expect(s.advance(run.runId, { saves: [save("c", 20), save("d", 20)] })).rejects.toThrow(
      "the run reached its limit of 3 steps (STEPLINE_EXECUTOR_MAX_STEPS_PER_RUN)",
    );
    // One result of 41 bytes.
    const big = s.advance(run.runId, { saves: [save("c", 41)] });
    await expect(big).rejects.toBeInstanceOf(RunLimitError);
    await expect(big).rejects.toThrow("a step result is larger than the limit of 40 bytes");
    // A result of exactly 40 bytes is fine.
    await s.advance(run.runId, { saves: [save("c", 40)] });
    const loaded = await s.load(run.runId);
    expect([...(loaded?.steps.keys() ?? [])]).toEqual(["a", "b", "c"]);
    expect(loaded?.calls).toBe(2);
    const state = limited();
    const other = newRun();
    await state.create(other);
    await state.advance(other.runId, { saves: [save("a", 40), save("b", 40)] });
    await expect(state.advance(other.runId, { saves: [save("c", 21)] })).rejects.toThrow(
      "the run's saved step results reached their limit of 100 bytes",
    );
    // A result saved already costs nothing again (a redelivered call).
    await expect(state.advance(other.runId, { saves: [save("a", 40)] })).resolves.toMatchObject({
      saved: [false],
    });
  });

  it("fails a run that loops: past its calls, every further call is refused", async () => {
    const s = limited();
    const run = newRun();
    await s.create(run);
    for (let i = 0; i < 5; i++) await s.advance(run.runId, { saves: [] });
    const err = await s.advance(run.runId, { saves: [] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunLimitError);
    expect((err as RunLimitError).limit).toBe("calls");
    expect((err as Error).message).toContain("limit of 5 calls without finishing, which points to a loop");
  });

  it("never refuses a resume (a sleep's end, an event, an invoke's result): the next call fails instead", async () => {
    const s = limited();
    const run = newRun();
    await s.create(run);
    await s.advance(run.runId, {
      saves: [save("a", 20), save("b", 20)],
      planner: "i1",
      plans: [{ opId: "w", race: false, waitEvent: "e" }],
    });
    await s.advance(run.runId, { saves: [save("c", 20)] });
    const resumed = await s.advance(run.runId, {
      saves: [],
      resolve: { opId: "w", resolver: "e:1", memoJson: `{"data":"${"y".repeat(60)}"}` },
      limits: false,
    });
    expect(resumed.resolution).toBe("discover");
    await expect(s.advance(run.runId, { saves: [] })).rejects.toThrow("limit of 3 steps");
  });
});
