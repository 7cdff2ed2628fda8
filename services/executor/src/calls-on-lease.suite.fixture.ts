// Shared test suite, continued: a run in plain sequential progress makes its next calls on the
// lease it holds (STEPLINE_EXECUTOR_CALLS_PER_LEASE; services/executor/README.md "Calls on one
// lease"), against a real SDK app, on the harness of execute.suite.fixture.ts.

import { StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { describe, expect, it } from "vitest";
import type { AppCall, AppClient } from "./app-client.js";
import { createItemHandler } from "./execute.js";
import type { ExecuteHarness, QueueOp } from "./execute-durable.suite.fixture.js";
import { recordingCtx } from "./queue-driver.fixture.js";
import { EVENTS } from "./sdk-app.fixture.js";
import type { CallOutcome } from "./steps.js";
import { LEASE_LOST } from "./work-loop.js";

/** What the app was asked, per call: the send token and the attempt in the body. */
interface SeenCall {
  token: string;
  attempt: number;
}

export function describeCallsOnLease(h: ExecuteHarness): void {
  const { deps, schedule, drive, steps } = h;
  const counts = () => ["a", "b", "c"].map((k) => h.app.counts.get(k) ?? 0);
  const ran = (before: number[]) => counts().map((n, i) => n - (before[i] ?? 0));

  /** The harness's app client, recording each call; `fail(n)` may turn call n (1-based) into an outcome or a throw. */
  function recordingApp(
    fail: (n: number, c: AppCall) => CallOutcome | "throw" | undefined = () => undefined,
  ) {
    const seen: SeenCall[] = [];
    const inner = deps().app;
    const app = {
      call: async (c: AppCall): Promise<CallOutcome> => {
        const body = JSON.parse(c.body) as { ctx: { attempt: number } };
        seen.push({ token: c.sendToken ?? "", attempt: body.ctx.attempt });
        const instead = fail(seen.length, c);
        if (instead === "throw") throw new Error("aborted");
        return instead ?? inner.call(c);
      },
    } as AppClient;
    return { app, seen };
  }

  describe("calls on one lease", () => {
    it("makes a sequential run's calls on one lease: one completion, each step once, a send token per step", async () => {
      const before = counts();
      const start = await schedule(h.app, "three", { name: EVENTS.three, data: { n: 1 } });
      const { app, seen } = recordingApp();
      const ops = await drive(createItemHandler(deps({ app, callsPerLease: 8 })), start);
      expect(ops.map((o) => [o.op, o.item.id, o.next?.map((n) => n.id)])).toEqual([
        ["complete", start.id, []],
      ]);
      expect(ran(before)).toEqual([1, 1, 1]);
      // Every call is what a redelivery of the start item would make at that point.
      expect(seen).toEqual([0, 1, 2, 3].map((n) => ({ token: `${start.id}:${n}`, attempt: 0 })));
      const s = await h.store.load(start.runId);
      expect(s?.status).toBe("completed");
      expect(JSON.parse(s?.output ?? "")).toEqual({ a: 2, b: 4, c: "4!" });
      expect(steps(start.runId).map((r) => [r.name, r.status])).toEqual([
        ["a", StepStatus.STEP_STATUS_COMPLETED],
        ["b", StepStatus.STEP_STATUS_COMPLETED],
        ["c", StepStatus.STEP_STATUS_COMPLETED],
      ]);
    });

    it("completes through the queue after callsPerLease calls, and the handed-off item goes on", async () => {
      const before = counts();
      const start = await schedule(h.app, "three", { name: EVENTS.three, data: { n: 2 } });
      const ops = await drive(createItemHandler(deps({ callsPerLease: 2 })), start);
      expect(ops.map((o) => [o.item.id, o.next?.map((n) => n.id)])).toEqual([
        [start.id, [`${start.runId}:c2`]],
        [`${start.runId}:c2`, []],
      ]);
      expect(ran(before)).toEqual([1, 1, 1]);
      expect((await h.store.load(start.runId))?.status).toBe("completed");
    });

    it("hands the same item back with attempt 1 when a call in the row fails, and a retried item makes one call", async () => {
      const before = counts();
      const start = await schedule(h.app, "three", { name: EVENTS.three, data: { n: 3 } });
      const failure: CallOutcome = { kind: "failure", message: "connection reset", retriable: true };
      const { app, seen } = recordingApp((n) => (n === 2 ? failure : undefined));
      const ops = await drive(createItemHandler(deps({ app, callsPerLease: 8 })), start);
      const c2 = `${start.runId}:c2`;
      expect(ops.map((o) => [o.op, o.item.id, o.attempt ?? o.next?.map((n) => n.id)])).toEqual([
        ["retry", start.id, 1],
        ["complete", start.id, [c2]],
        ["complete", c2, []],
      ]);
      expect(seen).toEqual([
        { token: `${start.id}:0`, attempt: 0 },
        { token: `${start.id}:1`, attempt: 0 },
        { token: `${start.id}:1`, attempt: 1 },
        { token: `${c2}:2`, attempt: 0 },
        { token: `${c2}:3`, attempt: 0 },
      ]);
      expect(ran(before)).toEqual([1, 1, 1]);
      expect((await h.store.load(start.runId))?.status).toBe("completed");
    });

    it("leaves the item to its lease when the lease is lost mid-row; its redelivery never runs a saved step again", async () => {
      const before = counts();
      const start = await schedule(h.app, "three", { name: EVENTS.three, data: { n: 4 } });
      const controller = new AbortController();
      const { app } = recordingApp((n) => {
        if (n !== 2) return undefined;
        controller.abort(LEASE_LOST);
        return "throw";
      });
      const ops: QueueOp[] = [];
      await createItemHandler(deps({ app, callsPerLease: 8 }))(
        start,
        recordingCtx(start, ops, controller.signal),
      );
      expect(ops).toEqual([]);
      expect((await h.store.load(start.runId))?.stack).toHaveLength(1);
      // The queue hands the item out again once the lease expires.
      const again = await drive(createItemHandler(deps({ callsPerLease: 8 })), start);
      expect(again.map((o) => [o.item.id, o.next?.map((n) => n.id)])).toEqual([[start.id, []]]);
      expect(ran(before)).toEqual([1, 1, 1]);
      expect(JSON.parse((await h.store.load(start.runId))?.output ?? "")).toEqual({ a: 5, b: 10, c: "10!" });
    });

    it("goes through the queue for parallel steps, as before", async () => {
      const start = await schedule(h.app, "parallel", { name: EVENTS.parallel, data: {} });
      const ops = await drive(createItemHandler(deps({ callsPerLease: 8 })), start);
      expect(ops[0]?.next?.map((n) => n.id.split(":")[1])).toEqual(["p", "p"]);
      expect(JSON.parse((await h.store.load(start.runId))?.output ?? "")).toBe(3);
    });
  });
}
