// ExecutorService over gRPC (server.fixture.ts): singleton keys at scheduling, SDK checkpoints,
// and cancelling runs (one, or a function's in bulk, or by a cancelOn event).
import { status } from "@grpc/grpc-js";
import { fromGrpcError, NotFoundError, ValidationError } from "@stepline/internal/errors";
import { callUnary } from "@stepline/internal/grpc";
import { uniqueTag } from "@stepline/internal/testing";
import type {
  CheckpointCall,
  CheckpointResult,
  CheckpointsResponse,
  RunSpec,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import { SingletonMode } from "@stepline/proto/stepline/executor/v1/executor_service";
import { RunStatus, SkipReason } from "@stepline/proto/stepline/stream/v1/history_record";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ExecutorHarness } from "./server.fixture.js";
import { startExecutorHarness } from "./server.fixture.js";

let h: ExecutorHarness;
const schedule = (runs: RunSpec[]) => callUnary(h.client.scheduleRuns.bind(h.client), { runs });

beforeAll(async () => {
  h = await startExecutorHarness();
});
beforeEach(() => h.reset());
afterAll(async () => {
  await h?.stop();
});

describe("ExecutorService.ScheduleRuns with singleton", () => {
  const single = (mode: SingletonMode, keyHash = "ab12") => ({ singleton: { keyHash, mode } });
  const schedule = (runs: RunSpec[]) => callUnary(h.client.scheduleRuns.bind(h.client), { runs });

  it("skips a run whose key has a running run (mode skip), records why, and lets the key go when that run ends", async () => {
    const first = h.spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP), functionId: "app-single" });
    const second = h.spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP), functionId: "app-single" });
    const otherKey = h.spec({
      ...single(SingletonMode.SINGLETON_MODE_SKIP, "cd34"),
      functionId: "app-single",
    });
    expect((await schedule([first])).results).toEqual([{ runId: first.runId, created: true }]);
    h.rec.produced = [];
    expect((await schedule([second, otherKey])).results).toEqual([
      { runId: second.runId, created: false },
      { runId: otherKey.runId, created: true },
    ]);
    expect(h.rec.produced.filter((e) => e.$case === "skip").map((e) => e.value)).toEqual([
      expect.objectContaining({
        functionId: "app-single",
        eventId: "e1",
        reason: SkipReason.SKIP_REASON_SINGLETON,
        detail: `run ${first.runId} with the same singleton key is running`,
      }),
    ]);
    // A repeated call decides the same, even once the key is free.
    await callUnary(h.client.cancelRun.bind(h.client), { environmentId: "env", runId: first.runId });
    expect((await schedule([second])).results).toEqual([{ runId: second.runId, created: false }]);
    const third = h.spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP), functionId: "app-single" });
    expect((await schedule([third])).results).toEqual([{ runId: third.runId, created: true }]);
  });

  it("starts one run of a key when several come in one call, whatever the mode", async () => {
    for (const [mode, key] of [
      [SingletonMode.SINGLETON_MODE_SKIP, "1111"],
      [SingletonMode.SINGLETON_MODE_CANCEL, "2222"],
    ] as const) {
      const a = h.spec({ ...single(mode, key), functionId: "app-single" });
      const b = h.spec({ ...single(mode, key), functionId: "app-single" });
      await schedule([a, b]);
      const statuses = await Promise.all([a, b].map(async (r) => (await h.store.load(r.runId))?.status));
      expect(
        statuses.filter((st) => st === "running"),
        `mode ${mode}`,
      ).toHaveLength(1);
    }
  });

  it("cancels the key's running run and starts the new one (mode cancel)", async () => {
    const old = h.spec({ ...single(SingletonMode.SINGLETON_MODE_CANCEL, "ef56"), functionId: "app-single" });
    const fresh = h.spec({
      ...single(SingletonMode.SINGLETON_MODE_CANCEL, "ef56"),
      functionId: "app-single",
    });
    await schedule([old]);
    expect((await schedule([fresh])).results).toEqual([{ runId: fresh.runId, created: true }]);
    expect((await h.store.load(old.runId))?.status).toBe("cancelled");
    expect((await h.store.load(fresh.runId))?.status).toBe("running");
  });

  it("takes over a key whose holder ended without giving it back", async () => {
    const gone = h.spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP, "0f0f"), functionId: "app-single" });
    await schedule([gone]);
    // Ended in state, but its finalize (which releases the key) never ran.
    await h.store.finish(gone.runId, "completed", { output: "null" }, Date.now());
    const next = h.spec({ ...single(SingletonMode.SINGLETON_MODE_SKIP, "0f0f"), functionId: "app-single" });
    expect((await schedule([next])).results).toEqual([{ runId: next.runId, created: true }]);
  });
});

describe("ExecutorService.Checkpoints", () => {
  const callOf = (id: number, runId: string, steps: unknown, environmentId = "env"): CheckpointCall => ({
    id,
    environmentId,
    runId,
    queueItemId: `${runId}:start`,
    stepsJson: typeof steps === "string" ? steps : JSON.stringify(steps),
  });
  /** Sends one batch on a stream of its own; the results of its one answer. */
  const batch = async (calls: CheckpointCall[]): Promise<CheckpointResult[]> => {
    const stream = h.client.checkpoints();
    const answered = new Promise<CheckpointResult[]>((resolve, reject) => {
      stream.on("data", (res: CheckpointsResponse) => resolve(res.results));
      stream.on("error", reject);
    });
    stream.write({ calls });
    const results = await answered;
    stream.end();
    return results;
  };
  /** One checkpoint: what it saved, or its failure as the closed error set. */
  const checkpoint = async (runId: string, steps: unknown, environmentId = "env") => {
    const [r] = await batch([callOf(1, runId, steps, environmentId)]);
    if (!r) throw new Error("no result");
    if (r.code !== 0) throw fromGrpcError({ code: r.code, details: r.message });
    return { saved: r.saved };
  };

  it("answers each call of a batch by its id with its own outcome, and ends once the caller ends", async () => {
    const run = h.spec();
    await callUnary(h.client.scheduleRuns.bind(h.client), { runs: [run] });
    const stream = h.client.checkpoints();
    const answers: CheckpointResult[][] = [];
    stream.on("data", (res: CheckpointsResponse) => answers.push(res.results));
    const ended = new Promise<void>((resolve) => stream.on("end", () => resolve()));
    stream.write({
      calls: [
        callOf(10, run.runId, [{ id: "x1", op: "StepRun", name: "x", data: 1 }]),
        callOf(11, "no-such-run", [{ id: "x1", op: "StepRun", name: "x", data: 1 }]),
        callOf(12, run.runId, "not json"),
      ],
    });
    stream.end();
    await ended;
    expect(answers).toHaveLength(1);
    expect(answers[0]?.map((r) => [r.id, r.code, r.saved])).toEqual([
      [10, 0, 1],
      [11, status.NOT_FOUND, 0],
      [12, status.INVALID_ARGUMENT, 0],
    ]);
    expect(answers[0]?.[1]?.message).toBe("run no-such-run not found");
  });

  it("saves the steps an SDK ran inside a call, first writer wins, and refuses what it cannot take", async () => {
    const run = h.spec();
    await callUnary(h.client.scheduleRuns.bind(h.client), { runs: [run] });
    const ops = [
      { id: "a1", op: "StepRun", name: "first", data: { n: 1 } },
      { id: "b2", op: "StepPlanned", name: "next" },
    ];
    h.reset();
    expect(await checkpoint(run.runId, ops)).toEqual({ saved: 1 });
    // The step's record names the run's account, which the checkpoint's one script call answered.
    expect(
      h.rec.produced.flatMap((e) => (e.$case === "step" ? [[e.value.stepId, e.value.accountId]] : [])),
    ).toEqual([["a1", "acct"]]);
    expect(await checkpoint(run.runId, [{ id: "a1", op: "StepRun", data: { n: 2 } }])).toEqual({ saved: 0 });
    const state = await h.store.load(run.runId);
    expect(state?.steps.get("a1")).toBe('{"data":{"n":1}}');
    expect(state?.stack).toEqual(["a1"]);
    await expect(checkpoint(run.runId, [{ id: "s", op: "Sleep", name: "1s" }])).rejects.toThrow(
      /cannot carry a Sleep op/,
    );
    await expect(checkpoint(run.runId, "{")).rejects.toBeInstanceOf(ValidationError);
    // Another environment's checkpoint finds no run, and saves nothing in it.
    const foreign = [{ id: "c3", op: "StepRun", name: "foreign", data: 3 }];
    await expect(checkpoint(run.runId, foreign, "other-env")).rejects.toBeInstanceOf(NotFoundError);
    expect((await h.store.load(run.runId))?.steps.has("c3")).toBe(false);
    await callUnary(h.client.cancelRun.bind(h.client), { environmentId: "env", runId: run.runId });
    // The run ended: the SDK's dispatch is stale.
    await expect(checkpoint(run.runId, ops)).rejects.toMatchObject({ name: "ConflictError" });
  });

  it("fails the run when a checkpoint would pass one of its limits, and tells the SDK to stop (409)", async () => {
    const run = h.spec();
    await callUnary(h.client.scheduleRuns.bind(h.client), { runs: [run] });
    h.reset();
    const huge = [{ id: "big", op: "StepRun", name: "big", data: "x".repeat(4 * 1024 * 1024) }];
    const err = await checkpoint(run.runId, huge).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: "ConflictError" });
    expect((err as Error).message).toContain("a step result is larger than the limit of 4194304 bytes");
    const state = await h.store.load(run.runId);
    expect(state?.status).toBe("failed");
    expect(state?.steps.has("big")).toBe(false);
    expect(state?.error).toContain("STEPLINE_EXECUTOR_MAX_STEP_OUTPUT_BYTES");
    expect(h.rec.sent.map((e) => e.name)).toContain("inngest/function.failed");
  });
});

describe("ExecutorService.CancelRun and CancelFunctionRuns", () => {
  const cancel = (runId: string, environmentId = "env") =>
    callUnary(h.client.cancelRun.bind(h.client), { environmentId, runId });

  it("cancels a running run: Cancelled in history, cancelled and finished events, its queued sleep and wait dropped", async () => {
    const s = h.spec();
    await schedule([s]);
    await h.store.advance(s.runId, {
      saves: [],
      plans: [
        { opId: "nap", race: false },
        { opId: "w1", race: false, waitEvent: "shop/paid" },
      ],
    });
    await h.pauses.add({
      runId: s.runId,
      opId: "w1",
      environmentId: "env",
      eventName: "shop/paid",
      expression: "",
      triggerEventJson: "{}",
      createdAtMs: 1,
      timeoutAtMs: 2,
      cancel: false,
    });
    h.rec.produced = [];
    expect(await cancel(s.runId)).toEqual({ cancelled: true, status: "cancelled" });
    expect(h.rec.produced.map((p) => p.$case === "run" && p.value.status)).toEqual([
      RunStatus.RUN_STATUS_CANCELLED,
    ]);
    expect(h.rec.sent.map((e) => [e.name, e.id, e.data._inngest.status])).toEqual([
      ["inngest/function.finished", `${s.runId}.finished`, "Cancelled"],
      ["inngest/function.cancelled", `${s.runId}.cancelled`, "Cancelled"],
    ]);
    expect(h.rec.removed).toEqual(
      expect.arrayContaining([`${s.runId}:s:nap`, `${s.runId}:t:w1`, `${s.runId}:end`]),
    );
    expect(
      (
        await callUnary(h.client.listPauses.bind(h.client), {
          queries: [{ environmentId: "env", eventName: "shop/paid" }],
        })
      ).pauses.map((p) => p.runId),
    ).not.toContain(s.runId);
    // Idempotent: a second cancel reports the same and sends nothing again.
    h.rec.sent = [];
    expect(await cancel(s.runId)).toEqual({ cancelled: true, status: "cancelled" });
    expect(h.rec.sent).toEqual([]);
  });

  it("leaves a run that already ended as it is, and refuses a run of another environment", async () => {
    const s = h.spec();
    await schedule([s]);
    await h.store.finish(s.runId, "completed", { output: "1" }, 5);
    expect(await cancel(s.runId)).toEqual({ cancelled: false, status: "completed" });
    const other = h.spec();
    await schedule([other]);
    await expect(cancel(other.runId, "another-env")).rejects.toBeInstanceOf(NotFoundError);
    await expect(cancel("01J000000000000000000NOPE1")).rejects.toBeInstanceOf(NotFoundError);
    expect((await h.store.load(other.runId))?.status).toBe("running");
  });

  it("cancels a function's live runs started in a range, a page at a time", async () => {
    const fn = `app-bulk-${uniqueTag()}`;
    const runs = [h.spec({ functionId: fn }), h.spec({ functionId: fn }), h.spec({ functionId: fn })];
    for (const r of runs) await schedule([r]);
    const before = (await h.store.load(runs[2]?.runId ?? ""))?.createdAtMs ?? 0;
    const bulk = (limit: number, to = before) =>
      callUnary(h.client.cancelFunctionRuns.bind(h.client), {
        environmentId: "env",
        functionId: fn,
        startedAfterMs: 0,
        startedBeforeMs: to,
        limit,
      });
    // The third run started at `before`, so [0, before) may hold the first two only.
    const first = await bulk(1);
    const second = await bulk(1);
    const rest = await bulk(10);
    const cancelled = [...first.cancelledRunIds, ...second.cancelledRunIds, ...rest.cancelledRunIds];
    expect(cancelled.length).toBeGreaterThanOrEqual(1);
    expect(cancelled).not.toContain(runs[2]?.runId);
    expect(rest.more).toBe(false);
    for (const id of cancelled) expect((await h.store.load(id))?.status).toBe("cancelled");
    expect((await h.store.load(runs[2]?.runId ?? ""))?.status).toBe("running");
    const all = await bulk(10, 0);
    expect(all.cancelledRunIds).toEqual([runs[2]?.runId]);
  });

  it("drops from the live index a run that ended while it was being indexed, at the next bulk cancel", async () => {
    const fn = `app-late-${uniqueTag()}`;
    const s = h.spec({ functionId: fn });
    await schedule([s]);
    // Its end, without the finalization that unindexes it: what an end that beat the indexing leaves.
    await h.store.finish(s.runId, "completed", { output: "1" }, 5);
    const indexed = () => h.live.range("env", fn, 0, Date.now() + 1, 10).then((r) => r.runIds);
    expect(await indexed()).toEqual([s.runId]);
    const res = await callUnary(h.client.cancelFunctionRuns.bind(h.client), {
      environmentId: "env",
      functionId: fn,
      startedAfterMs: 0,
      startedBeforeMs: 0,
      limit: 10,
    });
    expect(res.cancelledRunIds).toEqual([]);
    expect(await indexed()).toEqual([]);
    expect((await h.store.load(s.runId))?.status).toBe("completed");
  });

  it("rejects bad cancel requests with INVALID_ARGUMENT saying what is wrong", async () => {
    await expect(cancel("", "env")).rejects.toThrow(/environment_id and run_id are required/);
    const bulk = (over: Record<string, unknown>) =>
      callUnary(h.client.cancelFunctionRuns.bind(h.client), {
        environmentId: "env",
        functionId: "app-fn",
        startedAfterMs: 0,
        startedBeforeMs: 0,
        limit: 10,
        ...over,
      });
    await expect(bulk({ functionId: "" })).rejects.toThrow(/function_id are required/);
    await expect(bulk({ limit: 5_000 })).rejects.toThrow(/limit must be 0-1000/);
    await expect(bulk({ startedAfterMs: 10, startedBeforeMs: 5 })).rejects.toThrow(/must be after/);
  });

  it("indexes a run's cancelOn entries as waits that cancel it when an event matches", async () => {
    const s = h.spec({
      cancelOn: [{ event: "shop/closed", expression: "async.data.shop == 1", timeoutMs: 0 }],
    });
    await schedule([s]);
    const listed = await callUnary(h.client.listPauses.bind(h.client), {
      queries: [{ environmentId: "env", eventName: "shop/closed" }],
    });
    const mine = listed.pauses.find((p) => p.runId === s.runId);
    expect(mine).toMatchObject({ opId: "cancel0", expression: "async.data.shop == 1", cancel: true });
    const res = await callUnary(h.client.resumePauses.bind(h.client), {
      resumes: [
        {
          runId: s.runId,
          opId: "cancel0",
          environmentId: "env",
          eventName: "shop/closed",
          eventId: "ev-close",
          eventJson: "{}",
          errorJson: "",
          cancel: true,
        },
      ],
    });
    expect(res.results[0]?.resumed).toBe(true);
    expect((await h.store.load(s.runId))?.status).toBe("cancelled");
    const after = await callUnary(h.client.listPauses.bind(h.client), {
      queries: [{ environmentId: "env", eventName: "shop/closed" }],
    });
    expect(after.pauses.map((p) => p.runId)).not.toContain(s.runId);
  });
});
