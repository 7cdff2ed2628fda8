// The durable suite's third group: cancellation, time limits, slots held by sleeping runs, bad input.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { waitFor } from "@stepline/internal/testing";
import { describe, expect, it } from "vitest";
import { eventRuns, sendEvents, waitForEndedRuns } from "./api.js";
import { DEV_ENV } from "./durable-app.js";
import type { DurableContext } from "./durable-suite.js";
import { makeClient, serveAndSync } from "./sdk-app.js";

const execFileP = promisify(execFile);
const CLI = fileURLToPath(new URL("../../services/event-api/dist/cli.js", import.meta.url));

/** Registers this group's tests on the suite's cluster (`ctx`), for `ctx.sdk`. */
export function cancelTests(ctx: DurableContext): void {
  const { sdk, trace, tag, send } = ctx;
  describe(`cancellation, slots and bad input with the official SDK ${sdk}`, () => {
    /** Starts a `cancellable` (or other sleepy) run and waits until it sleeps; returns its ids. */
    const sleepingRun = async (fnId = "cancellable") => {
      const t = tag();
      const eventId = await send(fnId, { tag: t });
      await waitFor(`${t} to sleep`, () => trace.count.get(`${t}:first`) === 1, { timeoutMs: 20_000 });
      const runId = await waitFor(`${t}'s run id`, () => trace.runIds.get(t));
      return { t, eventId, runId };
    };

    it("holds no executor slot while runs sleep: with 4 slots, 8 sleeping runs leave room for a new one", async () => {
      const sleeping = [];
      for (let i = 0; i < 8; i++) sleeping.push(await sleepingRun());
      const quick = await send("child", { tag: tag(), n: 3 });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, quick, { timeoutMs: 10_000 });
      expect(run?.output).toEqual({ doubled: 6, invoker: "event" });
      // History is written in batches: wait until each sleeping run is listed, then it must be Running.
      for (const s of sleeping) {
        const [listed] = await waitFor(`${s.t} in history`, async () => {
          const runs = await eventRuns(ctx.cluster.apiUrl, s.eventId);
          return runs.length > 0 ? runs : undefined;
        });
        expect(listed?.status).toBe("Running");
      }
    });

    it("cancels a run when its cancelOn event matches, sends inngest/function.cancelled, and calls the app no more", async () => {
      const { t, eventId, runId } = await sleepingRun();
      // Another run's cancel event does not touch this one.
      await sendEvents(ctx.cluster.apiUrl, "any-key", { name: `${sdk}/stop`, data: { tag: `${t}-other` } });
      await sendEvents(ctx.cluster.apiUrl, "any-key", { name: `${sdk}/stop`, data: { tag: t } });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Cancelled");
      expect(run?.ended_at).not.toBeNull();
      const seen = await waitFor("the function.cancelled trigger", () => trace.cancelled.get(t), {
        timeoutMs: 20_000,
      });
      expect(seen).toBe(runId);
      expect(trace.count.get(`${t}:never`)).toBeUndefined();
    });

    it("cancels a run with DELETE /v1/runs/:id; a second DELETE is fine, and an ended run answers 409", async () => {
      const { t, eventId, runId } = await sleepingRun();
      const del = () => fetch(`${ctx.cluster.apiUrl}/v1/runs/${runId}`, { method: "DELETE" });
      const first = await del();
      expect(first.status).toBe(200);
      expect(await first.json()).toEqual({ data: { run_id: runId, status: "Cancelled" } });
      expect((await del()).status).toBe(200);
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Cancelled");
      expect(trace.count.get(`${t}:never`)).toBeUndefined();

      const done = await send("child", { tag: tag(), n: 1 });
      const [ended] = await waitForEndedRuns(ctx.cluster.apiUrl, done);
      const late = await fetch(`${ctx.cluster.apiUrl}/v1/runs/${ended?.run_id}`, { method: "DELETE" });
      expect(late.status).toBe(409);
      expect(
        (await fetch(`${ctx.cluster.apiUrl}/v1/runs/01J000000000000000000NOPE9`, { method: "DELETE" }))
          .status,
      ).toBe(404);
    });

    it("cancels a function's running runs in bulk with the CLI", async () => {
      const runs = [await sleepingRun(), await sleepingRun()];
      const { stdout } = await execFileP(process.execPath, [
        CLI,
        "--executor",
        ctx.cluster.executorAddr,
        "runs",
        "cancel-function",
        DEV_ENV,
        `durable-${sdk}-cancellable`,
      ]);
      expect(stdout).toMatch(/^\d+ runs of durable-.*-cancellable cancelled\n$/);
      for (const r of runs) {
        const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, r.eventId);
        expect(run?.status).toBe("Cancelled");
        expect(trace.count.get(`${r.t}:never`)).toBeUndefined();
      }
    });

    it("cancels a run that outlives timeouts.finish", async () => {
      const { t, eventId } = await sleepingRun("bounded");
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Cancelled");
      expect(trace.count.get(`${t}:never`)).toBeUndefined();
    });

    it("refuses a sync with an invalid cron, cancelOn or CEL expression, naming the function and field", async () => {
      const id = `durable-${sdk}-bad`;
      const c = makeClient({ sdk, id, baseUrl: ctx.cluster.apiUrl });
      const cases: Array<[object, string]> = [
        // The answer arrives JSON-encoded, quotes escaped.
        [{ cron: "61 * * * *" }, `function ${id}-bad: triggers[0].cron \\"61 * * * *\\" is not a valid cron`],
        [
          { event: "x/y", if: "event.data ==" },
          `function ${id}-bad: triggers[0].expression is not valid CEL`,
        ],
      ];
      for (const [trigger, message] of cases) {
        const bad =
          sdk === "v4"
            ? c.createFunction({ id: "bad", triggers: [trigger] }, async () => null)
            : c.createFunction({ id: "bad" }, trigger, async () => null);
        await expect(serveAndSync({ sdk, id, baseUrl: ctx.cluster.apiUrl }, c, [bad])).rejects.toThrow(
          message,
        );
      }
      const badCancel =
        sdk === "v4"
          ? c.createFunction(
              { id: "bad", cancelOn: [{ event: "x/z", if: "async.x ==" }], triggers: [{ event: "x/y" }] },
              async () => null,
            )
          : c.createFunction(
              { id: "bad", cancelOn: [{ event: "x/z", if: "async.x ==" }] },
              { event: "x/y" },
              async () => null,
            );
      await expect(serveAndSync({ sdk, id, baseUrl: ctx.cluster.apiUrl }, c, [badCancel])).rejects.toThrow(
        `function ${id}-bad: cancel[0].if is not valid CEL`,
      );
    });

    it("fails a run whose wait has a timeout longer than a year, saying so", async () => {
      const eventId = await send("waiter", { tag: tag(), order: "x", timeout: "400d" });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Failed");
      expect(JSON.stringify(run?.error)).toContain("waitForEvent timeout");
      expect(JSON.stringify(run?.error)).toContain("longer than the maximum of a year");
    });

    it("fails a run whose sleep is longer than a year, saying so", async () => {
      const eventId = await send("oversleep", {});
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Failed");
      expect(JSON.stringify(run?.error)).toContain("longer than the maximum of a year");
    });
  });
}
