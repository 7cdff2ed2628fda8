// The durable suite's first group: sleeps, parallel steps and waits for events.
import { waitFor } from "@stepline/internal/testing";
import { describe, expect, it } from "vitest";
import { getRun, sendEvents, waitForEndedRuns } from "./api.js";
import type { DurableContext } from "./durable-suite.js";

/** Registers this group's tests on the suite's cluster (`ctx`), for `ctx.sdk`. */
export function stepTests(ctx: DurableContext): void {
  const { sdk, trace, tag, send, listPauses, waitForPauses } = ctx;
  describe(`sleeps, parallel steps and waits with the official SDK ${sdk}`, () => {
    it("sleeps: the run is Running with no end while it sleeps, and resumes once the time has passed", async () => {
      const t = tag();
      const eventId = await send("sleeper", { tag: t, duration: "3s" });
      await waitFor("the step before the sleep", () => trace.count.get(`${t}:before`) === 1, {
        timeoutMs: 20_000,
      });
      const runId = await waitFor("the run id", () => trace.runIds.get(t));
      const sleeping = await waitFor(
        "the sleeping run in history",
        async () => {
          const r = await getRun(ctx.cluster.apiUrl, runId).catch(() => undefined);
          return r?.status === "Running" ? r : undefined;
        },
        { timeoutMs: 10_000 },
      );
      expect(sleeping.ended_at).toBeNull();
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      const { before, after } = (run?.output ?? {}) as { before: number; after: number };
      const late = after - before - 3_000;
      expect(late).toBeGreaterThanOrEqual(0);
      // Resumed by its own wake-up, not by a periodic sweep (STEPLINE_QUEUE_SWEEP_MS is 5 s).
      expect(late).toBeLessThan(2_000);
      expect([trace.count.get(`${t}:before`), trace.count.get(`${t}:after`)]).toEqual([1, 1]);
    });

    it("sleeps until a date", async () => {
      const t = tag();
      const at = Date.now() + 2_000;
      const eventId = await send("sleep-until", { tag: t, at: new Date(at).toISOString() });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output as number).toBeGreaterThanOrEqual(at);
    });

    it("runs parallel steps at the same time, each once, and continues when both are done", async () => {
      const t = tag();
      const eventId = await send("parallel", { tag: t });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toBe(3);
      expect([`${t}:p1`, `${t}:p2`, `${t}:sum`].map((k) => trace.count.get(k))).toEqual([1, 1, 1]);
      const [p1] = trace.spans.get(`${t}:p1`) ?? [];
      const [p2] = trace.spans.get(`${t}:p2`) ?? [];
      const [sum] = trace.spans.get(`${t}:sum`) ?? [];
      // Overlapping spans: the second began before the first ended.
      expect(Math.max(p1?.start ?? 0, p2?.start ?? 0)).toBeLessThan(Math.min(p1?.end ?? 0, p2?.end ?? 0));
      expect(sum?.start).toBeGreaterThanOrEqual(Math.max(p1?.end ?? 0, p2?.end ?? 0));
    });

    it("runs a step and a sleep in parallel and goes on once both are done", async () => {
      const t = tag();
      const sentAt = Date.now();
      const eventId = await send("parallel-mixed", { tag: t });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toBe("worked and slept");
      expect([trace.count.get(`${t}:work`), trace.count.get(`${t}:after`)]).toEqual([1, 1]);
      expect(trace.spans.get(`${t}:after`)?.[0]?.start).toBeGreaterThanOrEqual(sentAt + 1_000);
    });

    it("retries a failing parallel step alone", async () => {
      const t = tag();
      const eventId = await send("parallel-flaky", { tag: t });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toEqual(["steady", "shaky"]);
      expect([trace.count.get(`${t}:steady`), trace.count.get(`${t}:shaky`)]).toEqual([1, 2]);
    });

    it("waits for an event: resumes with the first one whose `if` matches, received after the wait began", async () => {
      const t = tag();
      const order = `${t}-order`;
      // Sent before the run exists, so before its wait began: it must not count.
      await sendEvents(ctx.cluster.apiUrl, "any-key", { name: `${sdk}/paid`, data: { order } });
      const eventId = await send("waiter", { tag: t, order });
      await waitFor("the wait to be armed", () => trace.count.get(`${t}:armed`) === 1, { timeoutMs: 20_000 });
      await waitForPauses(1, (p) => p.triggerEventJson.includes(order));
      await sendEvents(ctx.cluster.apiUrl, "any-key", {
        name: `${sdk}/paid`,
        data: { order: `${order}-other` },
      });
      await sendEvents(ctx.cluster.apiUrl, "any-key", { name: `${sdk}/paid`, data: { order } });
      const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, eventId);
      expect(run?.status).toBe("Completed");
      expect(run?.output).toEqual({ order, name: `${sdk}/paid` });
      expect(trace.count.get(`${t}:after`)).toBe(1);
    });

    it("waits with `match`, and resumes with null at the timeout when nothing matches", async () => {
      const matched = tag();
      const matchedId = await send("waiter", { tag: matched, order: matched, match: true });
      const timedOut = tag();
      const timedOutId = await send("waiter", { tag: timedOut, order: timedOut, timeout: "2s" });
      await waitFor(
        "both waits to be armed",
        () => trace.count.get(`${timedOut}:armed`) === 1 && trace.count.get(`${matched}:armed`) === 1,
        { timeoutMs: 20_000 },
      );
      await waitForPauses(1, (p) => p.triggerEventJson.includes(matched));
      await waitForPauses(1, (p) => p.triggerEventJson.includes(timedOut));
      await sendEvents(ctx.cluster.apiUrl, "any-key", { name: `${sdk}/paid`, data: { order: matched } });
      const [m] = await waitForEndedRuns(ctx.cluster.apiUrl, matchedId);
      expect(m?.output).toEqual({ order: matched, name: `${sdk}/paid` });
      const [t] = await waitForEndedRuns(ctx.cluster.apiUrl, timedOutId);
      expect(t?.status).toBe("Completed");
      expect(t?.output).toBeNull();
      expect([trace.count.get(`${matched}:after`), trace.count.get(`${timedOut}:after`)]).toEqual([1, 1]);
    });

    it("resumes each wait exactly once when its event and its timeout arrive together", async () => {
      // Each run's event is sent within ±200 ms of its wait's 2 s timeout; whichever wins, the
      // code after the wait runs once and the result is the event or null, never both.
      const tags = Array.from({ length: 8 }, () => tag());
      const ids = await Promise.all(tags.map((t) => send("waiter", { tag: t, order: t, timeout: "2s" })));
      await Promise.all(
        tags.map(async (t, i) => {
          const armedAt = await waitFor(`${t} armed`, () => trace.spans.get(`${t}:armed`)?.[0]?.end, {
            timeoutMs: 20_000,
          });
          const at = armedAt + 2_000 + (i % 2 === 0 ? -1 : 1) * 25 * i;
          await new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));
          await sendEvents(ctx.cluster.apiUrl, "any-key", { name: `${sdk}/paid`, data: { order: t } });
        }),
      );
      for (const [i, t] of tags.entries()) {
        const [run] = await waitForEndedRuns(ctx.cluster.apiUrl, ids[i] as string);
        expect(run?.status).toBe("Completed");
        expect([null, JSON.stringify({ order: t, name: `${sdk}/paid` })]).toContain(
          run?.output === null ? null : JSON.stringify(run?.output),
        );
        expect(trace.count.get(`${t}:after`)).toBe(1);
      }
    });

    it("with 1,000 runs waiting on one event name, one event resumes exactly the 10 whose `if` it matches", async () => {
      const base = tag();
      const groups = Array.from({ length: 1_000 }, (_, i) => i % 100);
      const sent = await sendEvents(
        ctx.cluster.apiUrl,
        "any-key",
        groups.map((group, i) => ({ name: `${sdk}/crowd`, data: { tag: `${base}-${i}`, group } })),
      );
      expect(sent.status).toBe(200);
      await waitForPauses(1_000, (p) => p.eventName === `${sdk}/go`, 120_000);
      await sendEvents(ctx.cluster.apiUrl, "any-key", { name: `${sdk}/go`, data: { group: 7 } });
      // A later event on the same partition (one account) proves the first was fully handled.
      const sentinel = tag();
      const sentinelId = await send("crowd", { tag: sentinel, group: 1_000 });
      await waitForPauses(1, (p) => p.eventName === `${sdk}/go` && p.triggerEventJson.includes(sentinel));
      await sendEvents(ctx.cluster.apiUrl, "any-key", { name: `${sdk}/go`, data: { group: 1_000 } });
      await waitForEndedRuns(ctx.cluster.apiUrl, sentinelId);
      const resumed = groups.flatMap((group, i) => (trace.count.get(`${base}-${i}:after`) ? [group] : []));
      expect(resumed).toEqual(Array.from({ length: 10 }, () => 7));
      expect((await listPauses()).filter((p) => p.eventName === `${sdk}/go`)).toHaveLength(990);
    }, 180_000);
  });
}
