// The durable suite's second group: invokes, onFailure and function.finished, step.sendEvent ids, crons.
import { waitFor } from "@stepline/internal/testing";
import { describe, expect, it } from "vitest";
import { eventRuns, waitForEndedRuns } from "./api.js";
import type { DurableContext } from "./durable-suite.js";
import { makeClient, serveAndSync } from "./sdk-app.js";

/** Registers this group's tests on the suite's cluster (`ctx`), for `ctx.sdk`. */
export function callTests(ctx: DurableContext): void {
  const { sdk, trace, tag, send } = ctx;
  describe(`invokes, internal events, sent events and crons with the official SDK ${sdk}`, () => {
    it("invokes a function of the same app as a child run and resumes with its output", async () => {
      const t = tag();
      const eventId = await send("invoker", { tag: t, n: 21 });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toEqual({ ok: { doubled: 42, invoker: "invoked" } });
      expect(trace.count.get(`${t}:child`)).toBe(1);
    });

    it("invokes a function of another app of the environment", async () => {
      const eventId = await send("invoke-remote", { tag: tag(), n: 5 });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.output).toEqual({ ok: "remote got 5" });
    });

    it("hands the child's error to the parent as a thrown error", async () => {
      const t = tag();
      const eventId = await send("invoker", { tag: t, n: 1, fail: true });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(JSON.stringify(run?.output)).toContain(`child of ${t} broke`);
    });

    it("throws a timeout error in the parent when the child does not finish in time", async () => {
      const t = tag();
      const eventId = await send("invoker", { tag: t, n: 1, nap: "30s", timeout: "2s" });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(JSON.stringify(run?.output)).toContain("Timed out waiting for invoked function to complete");
    });

    it("throws a clear error in the parent when the invoked function does not exist", async () => {
      const eventId = await send("invoke-missing", { tag: tag(), n: 1 });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(JSON.stringify(run?.output)).toContain(`no function with that id is synced`);
    });

    it("runs onFailure handlers with the error, and functions triggered by inngest/function.finished", async () => {
      const t = tag();
      const failed = await send("fragile", { tag: t });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, failed);
      expect(run?.status).toBe("Failed");
      const seen = await waitFor("the onFailure handler", () => trace.failures.get(t), { timeoutMs: 20_000 });
      expect(seen).toBe(`fragile broke @ durable-${sdk}-fragile`);

      const c = tag();
      await send("child", { tag: c, n: 4 });
      const finished = await waitFor("the function.finished trigger", () => trace.finished.get(c), {
        timeoutMs: 20_000,
      });
      expect(finished).toMatchObject({
        function_id: `durable-${sdk}-child`,
        result: { doubled: 8, invoker: "event" },
        _inngest: { status: "Completed" },
      });
    });

    it("gives a step.sendEvent's events ids from the run and step, so a retried step sends nothing twice", async () => {
      const id = `durable-${sdk}-sender`;
      const t = tag();
      const heard: string[] = [];
      let lost = 0;
      // Every answer to the first five sends is lost after Kafka took the events: the SDK's own
      // retries fail, the step fails, and the executor retries the step, which sends again.
      const lossy: typeof fetch = async (input, init) => {
        const res = await fetch(input, init);
        if (String(input).includes("/e/") && String(init?.body).includes(t) && lost < 5) {
          lost++;
          throw new Error("connection reset after the send");
        }
        return res;
      };
      const c = makeClient({ sdk, id, baseUrl: ctx.cluster.apiUrl, fetch: lossy });
      const on = (fnId: string, event: string, handler: (ctx: any) => Promise<unknown>) =>
        sdk === "v4"
          ? c.createFunction({ id: fnId, retries: 3, triggers: [{ event }] }, handler)
          : c.createFunction({ id: fnId, retries: 3 }, { event }, handler);
      const sender = await serveAndSync({ sdk, id, baseUrl: ctx.cluster.apiUrl }, c, [
        on("announcer", `${sdk}/announce`, async ({ event, step }) =>
          step.sendEvent("announce", [
            { name: `${sdk}/announced`, data: { tag: event.data.tag, n: 1 } },
            { name: `${sdk}/announced`, data: { tag: event.data.tag, n: 2 } },
          ]),
        ),
        on("listener", `${sdk}/announced`, async ({ event }) => {
          if (event.data.tag === t) heard.push(event.id);
        }),
      ]);
      try {
        const eventId = await send("announce", { tag: t });
        const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
        expect(run?.status).toBe("Completed");
        expect(lost).toBe(5);
        const ids = (run?.output as { ids?: string[] } | undefined)?.ids ?? [];
        expect(ids).toHaveLength(2);
        // Both events reached the listener once each, under the ids the step returned.
        await waitFor("both announcements", () => heard.length >= 2, { timeoutMs: 20_000 });
        const later = await send("announce", { tag: `${t}-later` });
        await waitFor(
          "a later announcer run",
          async () => (await eventRuns(ctx.cluster.apiUrl, later)).length > 0,
        );
        expect([...heard].sort()).toEqual([...ids].sort());
      } finally {
        await sender.close();
      }
    });

    it("runs a cron function once per tick (the cron is removed again afterwards)", async () => {
      const id = `durable-${sdk}-cron`;
      const seen = new Map<number, number>();
      const serve = async (withCron: boolean) => {
        const c = makeClient({ sdk, id, baseUrl: ctx.cluster.apiUrl });
        const handler = async ({ event }: any) => {
          seen.set(event.ts, (seen.get(event.ts) ?? 0) + 1);
          return event.data.cron;
        };
        const fnDef =
          sdk === "v4"
            ? c.createFunction(
                { id: "tick", triggers: [withCron ? { cron: "* * * * * *" } : { event: "x/never" }] },
                handler,
              )
            : c.createFunction(
                { id: "tick" },
                withCron ? { cron: "* * * * * *" } : { event: "x/never" },
                handler,
              );
        return serveAndSync({ sdk, id, baseUrl: ctx.cluster.apiUrl }, c, [fnDef]);
      };
      const ticking = await serve(true);
      try {
        await waitFor("three ticks", () => seen.size >= 3, { timeoutMs: 20_000 });
      } finally {
        await ticking.close();
      }
      const quiet = await serve(false);
      await quiet.close();
      const ticks = [...seen.keys()].sort((x, y) => x - y);
      expect([...seen.values()].every((count) => count === 1)).toBe(true);
      ticks.slice(1).forEach((t, i) => {
        expect(t - (ticks[i] ?? 0)).toBe(1_000);
      });
    });
  });
}
