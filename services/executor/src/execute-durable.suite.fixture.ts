// Shared test suite, continued: the executor's durable primitives (sleeps, parallel steps, the end
// of a run and its internal events, cancellation and time limits) against a real SDK app, on the
// harness of execute.suite.fixture.ts.

import type { Logger } from "@stepline/internal/log";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { RunRecord, StepRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { RunStatus, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { expect, it } from "vitest";
import { Canceller } from "./cancel.js";
import type { ExecuteDeps } from "./execute.js";
import { createItemHandler } from "./execute.js";
import type { RunSpecInput } from "./schedule.js";
import type { FixtureApp, Sdk } from "./sdk-app.fixture.js";
import { EVENTS } from "./sdk-app.fixture.js";
import type { RunStore } from "./state.js";
import type { ItemHandler } from "./work-loop.js";

/** The fields of an internal event the tests read. */
export interface SentEvent {
  name: string;
  id: string;
  data: { run_id?: string; _inngest: { status: string }; error?: { message: string } };
}

/** One thing the in-test queue was told. */
export interface QueueOp {
  op: "complete" | "retry" | "release";
  item: NewItem;
  next?: NewItem[];
  runAtMs?: number;
  attempt?: number;
}

/** What execute.suite.fixture.ts shares with these tests (store and app exist once set up). */
export interface ExecuteHarness {
  sdk: Sdk;
  log: Logger;
  readonly store: RunStore;
  readonly app: FixtureApp;
  deps(over?: Partial<ExecuteDeps>): ExecuteDeps;
  schedule(
    target: FixtureApp,
    fnId: string,
    event: object,
    maxAttempts?: number,
    spec?: Partial<RunSpecInput>,
  ): Promise<NewItem>;
  drive(
    handler: ItemHandler,
    first: NewItem,
    stale?: number | ((item: NewItem) => boolean),
  ): Promise<QueueOp[]>;
  runs(runId: string): RunRecord[];
  steps(runId: string): StepRecord[];
  sent: Array<{ accountId: string; environmentId: string; event: SentEvent }>;
  enqueuedOutside: NewItem[];
  removedItems: string[];
}

/** Registers the durable-primitive tests on `h` (inside the caller's describe). */
export function describeDurableExecution(h: ExecuteHarness): void {
  const { deps, schedule, drive, runs, steps, sent, enqueuedOutside, removedItems, log } = h;
  it("sends inngest/function.finished, and function.failed for a failure, before the last ack", async () => {
    const ok = await schedule(h.app, "three", { name: EVENTS.three, data: { n: 1 } });
    await drive(createItemHandler(deps()), ok);
    const bad = await schedule(h.app, "doomed", { name: EVENTS.doomed, data: {} });
    await drive(createItemHandler(deps()), bad);
    const of = (runId: string) => sent.filter((s) => s.event.data?.run_id === runId).map((s) => s.event);
    expect(of(ok.runId)).toEqual([
      {
        name: "inngest/function.finished",
        id: `${ok.runId}.finished`,
        ts: expect.any(Number),
        data: {
          function_id: `${h.app.appId}-three`,
          run_id: ok.runId,
          event: expect.objectContaining({ name: EVENTS.three }),
          events: [expect.objectContaining({ name: EVENTS.three })],
          result: { a: 2, b: 4, c: "4!" },
          _inngest: { status: "Completed" },
        },
      },
    ]);
    const failed = of(bad.runId);
    expect(failed.map((e) => [e.name, e.id, e.data._inngest.status])).toEqual([
      ["inngest/function.finished", `${bad.runId}.finished`, "Failed"],
      ["inngest/function.failed", `${bad.runId}.failed`, "Failed"],
    ]);
    expect(failed[1]?.data.error?.message).toContain("this cannot work");
    expect(sent.every((s) => s.accountId === "acct" && s.environmentId === "env-1")).toBe(true);
  });

  it("fails a run whose item the queue dead-lettered (the notice), without calling the app", async () => {
    const start = await schedule(h.app, "three", { name: EVENTS.three, data: { n: 1 } });
    const calls = () => [...h.app.counts.values()].reduce((a, b) => a + b, 0);
    const before = calls();
    const notice: NewItem = { ...start, id: `${start.id}~dead`, kind: ItemKind.ITEM_KIND_DEAD_LETTER };
    expect(await drive(createItemHandler(deps()), notice)).toEqual([
      { op: "complete", item: notice, next: [] },
    ]);
    const s = await h.store.load(start.runId);
    expect(s?.status).toBe("failed");
    expect(s?.error).toContain(`its queue item ${start.id} was delivered too many times`);
    expect(runs(start.runId).at(-1)?.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const failed = sent.find((e) => e.event.id === `${start.runId}.failed`);
    expect(failed?.event.data.error?.message).toContain("STEPLINE_QUEUE_MAX_DELIVERIES");
    // The dead item itself, should it be redriven now, is acked without a call.
    expect(await drive(createItemHandler(deps()), start)).toEqual([
      { op: "complete", item: start, next: [] },
    ]);
    expect(calls()).toBe(before);
  });

  it("drops a cancelled run's sleep item without calling the app, and makes no further call", async () => {
    const start = await schedule(h.app, "sleeper", { name: EVENTS.sleeper, data: {} });
    const handler = createItemHandler(deps());
    const pending: NewItem[] = [];
    await handler(start, {
      lease: { itemId: start.id, accountId: "acct", generation: 1, partitionId: "" },
      signal: new AbortController().signal,
      complete: async (next) => {
        pending.push(...next);
        return "ok";
      },
      retry: async () => "ok",
      release: async () => "ok",
    });
    const wake = pending[0] as NewItem;
    expect(wake.id).toContain(":s:");
    await new Canceller({ ...deps(), log }).cancel(start.runId, { reason: "test" });
    expect(removedItems).toContain(wake.id);
    // Were the queue to hand the wake item out anyway (it was leased as we removed it), it is
    // acked without a call: the run stays cancelled and the code after the sleep never runs.
    const ops = await drive(handler, wake);
    expect(ops.map((o) => [o.op, o.next?.length ?? 0])).toEqual([["complete", 0]]);
    expect((await h.store.load(start.runId))?.status).toBe("cancelled");
    expect(runs(start.runId).at(-1)?.status).toBe(RunStatus.RUN_STATUS_CANCELLED);
  });

  it("cancels a run whose start item comes too late for timeouts.start, without calling the app", async () => {
    const before = h.app.counts.get("a") ?? 0;
    const start = await schedule(h.app, "three", { name: EVENTS.three, data: { n: 1 } }, 3, {
      startTimeoutMs: 1,
    });
    await new Promise((r) => setTimeout(r, 5));
    await drive(createItemHandler(deps()), start);
    const s = await h.store.load(start.runId);
    expect(s?.status).toBe("cancelled");
    expect(s?.error).toContain("timeouts.start");
    expect((h.app.counts.get("a") ?? 0) - before).toBe(0);
  });

  it("does not apply timeouts.start to a start item retried after its call ran", async () => {
    const start = await schedule(h.app, "three", { name: EVENTS.three, data: { n: 1 } }, 3, {
      startTimeoutMs: 1,
    });
    await new Promise((r) => setTimeout(r, 5));
    // The call ran once already (it answered a step error): this is its retry.
    await drive(createItemHandler(deps()), { ...start, attempt: 1 });
    expect((await h.store.load(start.runId))?.status).toBe("completed");
  });

  it("enqueues a timeouts.finish deadline at the first call, which cancels a run still running then", async () => {
    const start = await schedule(h.app, "sleeper", { name: EVENTS.sleeper, data: {} }, 3, {
      finishTimeoutMs: 60_000,
    });
    const t0 = Date.now();
    const handler = createItemHandler(deps());
    await handler(start, {
      lease: { itemId: start.id, accountId: "acct", generation: 1, partitionId: "" },
      signal: new AbortController().signal,
      complete: async () => "ok",
      retry: async () => "ok",
      release: async () => "ok",
    });
    const deadline = enqueuedOutside.find((i) => i.id === `${start.runId}:deadline`) as NewItem;
    expect(deadline.runAtMs).toBeGreaterThanOrEqual(t0 + 60_000);
    await drive(handler, deadline);
    const s = await h.store.load(start.runId);
    expect(s?.status).toBe("cancelled");
    expect(s?.error).toContain("timeouts.finish");
  });

  it("fails the run on NonRetriableError with the error in state and history", async () => {
    const start = await schedule(h.app, "doomed", { name: EVENTS.doomed, data: {} });
    await drive(createItemHandler(deps()), start);
    const s = await h.store.load(start.runId);
    expect(s?.status).toBe("failed");
    expect(s?.error).toContain("this cannot work");
    const last = runs(start.runId).at(-1);
    expect(last?.status).toBe(RunStatus.RUN_STATUS_FAILED);
    expect(last?.errorJson).toContain("this cannot work");
    expect(last?.endedAtMs).toBeGreaterThan(0);
  });

  it("turns step.sleep into a resume item due at the sleep's end, then finishes the run", async () => {
    const start = await schedule(h.app, "sleeper", { name: EVENTS.sleeper, data: {} });
    const t0 = Date.now();
    const ops = await drive(createItemHandler(deps()), start);
    const wake = ops[0]?.next?.[0];
    expect(wake?.id).toMatch(new RegExp(`^${start.runId}:s:[0-9a-f]{40}$`));
    expect(wake?.runAtMs).toBeGreaterThanOrEqual(t0 + 3_600_000);
    expect(wake?.runAtMs).toBeLessThanOrEqual(Date.now() + 3_600_000);
    const s = await h.store.load(start.runId);
    expect(s?.status).toBe("completed");
    expect(s?.output).toBe('"woke"');
    expect(steps(start.runId).map((r) => r.status)).toEqual([
      StepStatus.STEP_STATUS_SLEEPING,
      StepStatus.STEP_STATUS_COMPLETED,
    ]);
  });

  it("runs parallel steps as separate items and makes one discovery call once all are saved", async () => {
    const before = ["p1", "p2", "sum"].map((k) => h.app.counts.get(k) ?? 0);
    const start = await schedule(h.app, "parallel", { name: EVENTS.parallel, data: {} });
    const ops = await drive(createItemHandler(deps()), start);
    const planned = ops[0]?.next ?? [];
    expect(planned.map((n) => JSON.parse(n.payload).stepId)).toHaveLength(2);
    expect(planned.every((n) => n.id.includes(":p:"))).toBe(true);
    const discoveries = ops.flatMap((o) => o.next ?? []).filter((n) => n.id.includes(":d:"));
    // v4 answers with request version 2 (one discovery once both are saved); v3 with 1, which
    // discovers after every resolution and plans each later step before running it.
    expect(discoveries).toHaveLength(h.sdk === "v4" ? 1 : 3);
    expect((await h.store.load(start.runId))?.output).toBe("3");
    expect(["p1", "p2", "sum"].map((k, i) => (h.app.counts.get(k) ?? 0) - (before[i] ?? 0))).toEqual([
      1, 1, 1,
    ]);
  });
}
